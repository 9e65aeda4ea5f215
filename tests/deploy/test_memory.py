"""medvid's malloc settings: ``release_free_heap`` (after each step and run) hands the heap a
process freed back to the operating system; the ``medvid`` command restarts itself with
``MALLOC_TUNABLES``, which glibc then honours; every job has the hooks, and the Docker image and
``dev.sh`` start their processes with the same tunables."""

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medvid.memory import MALLOC_TUNABLES, malloc_tunables_apply, with_malloc_tunables
from medvid_assets.orchestration.jobs import JOBS, STEP_HOOKS

REPO = Path(__file__).resolve().parents[2]

# In a fresh interpreter (its own heap): 192 MiB in 64 KiB blocks (below glibc's mmap
# threshold, so they come from the heap), every other one freed (96 MiB free between live
# blocks: free() trims only the top of the heap), and the resident set read before and after
# release_free_heap().
PROBE = """
import ctypes, ctypes.util
from medvid.memory import release_free_heap
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 // 2**20
blocks = [libc.malloc(64 * 1024) for _ in range(3072)]
for block in blocks:
    ctypes.memset(block, 1, 64 * 1024)
for block in blocks[::2]:
    libc.free(block)
before = rss()
print(release_free_heap(), before - rss())
"""


def test_release_free_heap_returns_the_freed_heap_to_the_os() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    trimmed, returned_mib = done.stdout.split()
    assert trimmed == "True"
    assert int(returned_mib) >= 80


# Re-executed with the tunables, the process keeps its PID; glibc then maps a 9 MiB block on its
# own even after a 16 MiB one was freed (the dynamic threshold would have risen to 16 MiB and
# served it from the heap): mallinfo2().hblkhd counts mapped bytes.
REEXEC_PROBE = """
import ctypes, ctypes.util, os, sys
print(os.getpid(), os.environ.get("GLIBC_TUNABLES", ""), flush=True)
from medvid.memory import reexec_with_malloc_tunables
reexec_with_malloc_tunables()
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
libc.free(libc.malloc(16 << 20))
block = libc.malloc(9 << 20)
print(os.getpid(), os.environ.get("GLIBC_TUNABLES", "-"), libc.mallinfo2().hblkhd >= 9 << 20)
"""


def _environment_without_tunables() -> dict[str, str]:
    drop = ("GLIBC_TUNABLES", "MEDVID_MALLOC_TUNED", "MEDVID_MALLOC_TUNABLES")
    return {name: value for name, value in os.environ.items() if name not in drop}


def _thp_usable() -> bool:
    path = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    return path.is_file() and "[never]" not in path.read_text()


GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@GLIBC
@pytest.mark.skipif(not _thp_usable(), reason="no transparent huge pages: medvid leaves malloc be")
def test_reexec_keeps_the_pid_and_glibc_honours_the_tunables() -> None:
    env = _environment_without_tunables()
    done = subprocess.run(
        [sys.executable, "-c", REEXEC_PROBE], capture_output=True, text=True, check=True, env=env
    )
    # the script runs twice: printing before the restart, then again from the top after it
    first, again, last = done.stdout.splitlines()
    pid_before, *tunables_before = first.split()
    pid_after, tunables_after, mapped = last.split()
    assert again.split() == [pid_before, MALLOC_TUNABLES]
    assert tunables_before == []
    assert (pid_after, tunables_after, mapped) == (pid_before, MALLOC_TUNABLES, "True")


@GLIBC
def test_without_the_tunables_the_threshold_rises_and_the_heap_serves_the_block() -> None:
    # the probe's claim has teeth: with medvid's settings turned off, the 9 MiB block is heap
    env = _environment_without_tunables()
    env["MEDVID_MALLOC_TUNABLES"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", REEXEC_PROBE], capture_output=True, text=True, check=True, env=env
    )
    assert done.stdout.splitlines()[-1].split()[-1] == "False"


def test_the_tunables_join_the_environments_own() -> None:
    assert with_malloc_tunables({})["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    mine = "glibc.malloc.mmap_threshold=65536:glibc.malloc.arena_max=2"
    joined = with_malloc_tunables({"GLIBC_TUNABLES": mine})["GLIBC_TUNABLES"]
    assert joined == mine + ":glibc.malloc.hugetlb=1"  # the user's threshold stays
    assert with_malloc_tunables({"GLIBC_TUNABLES": joined})["GLIBC_TUNABLES"] == joined


def test_no_restart_when_off_done_or_without_huge_pages(tmp_path: Path) -> None:
    madvise, never = tmp_path / "madvise", tmp_path / "never"
    madvise.write_text("always [madvise] never\n")
    never.write_text("always madvise [never]\n")
    if sys.platform.startswith("linux"):
        assert malloc_tunables_apply({}, madvise)
    assert not malloc_tunables_apply({}, never)
    assert not malloc_tunables_apply({}, tmp_path / "missing")
    assert not malloc_tunables_apply({"MEDVID_MALLOC_TUNABLES": "0"}, madvise)
    assert not malloc_tunables_apply({"MEDVID_MALLOC_TUNED": "1"}, madvise)
    assert not malloc_tunables_apply(with_malloc_tunables({}), madvise)


def test_every_job_frees_the_heap_after_each_step() -> None:
    for job in JOBS:
        assert set(job.hooks) >= STEP_HOOKS, job.name


def test_the_image_and_dev_sh_start_processes_with_the_same_tunables() -> None:
    assert "medvid_assets.cli:console" in (REPO / "pyproject.toml").read_text()
    dockerfile = (REPO / "docker" / "code.Dockerfile").read_text()
    assert re.search(rf"GLIBC_TUNABLES={re.escape(MALLOC_TUNABLES)}\s", dockerfile)
    assert f"GLIBC_TUNABLES:-{MALLOC_TUNABLES}}}" in (REPO / "dev.sh").read_text()
