from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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


#: Free memory-backed space the temporary folders need before they go there.
MEMORY_TMP_MIN_FREE = 8 * 2**30
#: The memory-backed folder this session made (removed at the end).
_MEMORY_TMP = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack: starts the deployment topology as processes (opt in with --stack)"
    )
    # The tests' homes live on /dev/shm (tmpfs) unless --basetemp or MEDVID_TEST_TMP=disk says
    # otherwise: Dagster's SQLite storage opens, commits and closes a connection per event, and
    # on this VM's disk a `medvid run` of two short clips spent 12 of its 66 s in those fsyncs.
    # The controller picks the folder; pytest-xdist gives each worker a subfolder of it.
    if (
        config.option.basetemp is None
        and not hasattr(config, "workerinput")
        and os.environ.get("MEDVID_TEST_TMP", "memory") == "memory"
        and os.access("/dev/shm", os.W_OK)
        and shutil.disk_usage("/dev/shm").free >= MEMORY_TMP_MIN_FREE
    ):
        config.option.basetemp = tempfile.mkdtemp(prefix="medvid-pytest-", dir="/dev/shm")
        config.stash[_MEMORY_TMP] = config.option.basetemp


def pytest_unconfigure(config: pytest.Config) -> None:
    # tmpfs is memory: nothing is left behind (MEDVID_KEEP_TEST_TMP=1 keeps it to look into)
    folder = config.stash.get(_MEMORY_TMP, None)
    if folder and os.environ.get("MEDVID_KEEP_TEST_TMP") != "1":
        shutil.rmtree(folder, ignore_errors=True)


#: The files that take medvid end to end (minutes each on two cores), longest first. pytest-xdist
#: (``--dist loadfile``) hands files to its workers in collection order, so these start first
#: and the short files fill in around them, instead of one worker starting a long file when the
#: other has nothing left (about a minute of the quick tier's ten).
LONGEST_FIRST = (
    "tests/stages/test_dicom.py",
    "tests/faults/test_kill.py",
    "tests/cli/test_cli.py",
    "tests/stages/test_predict.py",
    "tests/stages/test_videos.py",
    "tests/cli/test_cli_dicom.py",
    "tests/stages/test_labels.py",
    "tests/stages/test_cleaning.py",
    "tests/faults/test_bad_inputs.py",
    "tests/core/test_predict_evaluate.py",
    "tests/faults/test_concurrency.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
    if config.getoption("--stack") or os.environ.get("MEDVID_STACK_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="deployment stack test: run with --stack (minutes)")
    for item in items:
        if "stack" in item.keywords:
            item.add_marker(skip)
