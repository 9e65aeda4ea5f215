from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDVID_SHARED_DATA", REPO.parent / "shared" / "data"))


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
