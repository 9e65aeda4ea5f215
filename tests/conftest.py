from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """``$MEDVID_SHARED_DATA``, else ``../shared/data`` beside the checkout, else beside the
    checkout this one was cloned from (a CI clone in a temporary folder)."""
    if env := os.environ.get("MEDVID_SHARED_DATA"):
        return Path(env)
    candidates = [REPO.parent / "shared" / "data"]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if origin and Path(origin).is_dir():
        candidates.append(Path(origin).resolve().parent / "shared" / "data")
    return next((c for c in candidates if (c / "MANIFEST.tsv").exists()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real clinical media (``../shared/data``) listed in its MANIFEST.tsv."""
    if not (SHARED_DATA / "MANIFEST.tsv").exists():
        pytest.skip(f"real media folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def videos_dir(shared_data: Path) -> Path:
    return shared_data / "videos"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The small sample clips and sheets bundled in the repo for `medvid demo`."""
    return REPO / "samples"
