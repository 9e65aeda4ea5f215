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


# --- test tiers -------------------------------------------------------------------------------
# The quick tier (the default, what `./dev.sh test` and CI run) stays within 10 minutes on a
# 2-core machine. Tests marked `stack` start the deployment topology as processes (PostgreSQL,
# moto S3, RabbitMQ, code server, daemon, webserver, Celery workers) and take minutes each:
# `./dev.sh test --stack` (or MEDVID_STACK_TESTS=1) runs them too.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stack",
        action="store_true",
        default=False,
        help="also run the tests marked `stack` (the deployment topology as processes; minutes)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack: starts the deployment topology as processes (opt in with --stack)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--stack") or os.environ.get("MEDVID_STACK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="deployment stack test: run with --stack (minutes)")
    for item in items:
        if "stack" in item.keywords:
            item.add_marker(skip)
