"""Keeping the resident set of medvid's processes down (glibc malloc).

glibc's ``malloc`` serves large blocks from their own mappings at first, but raises that
threshold (up to 32 MiB on 64-bit) each time such a block is freed (``mallopt(3)``,
``M_MMAP_THRESHOLD``); from then on onnxruntime's activations (tens of MiB each, about 0.2 GiB
per million detector input pixels) come from the heap and stay resident once freed. Reusing
them within a step is cheap; carrying them into the next step puts that step's peak on top of
them (``benchmarks/pipeline.py``, "Memory per step"). :func:`release_free_heap` hands them back
after each step and run; :data:`MALLOC_TUNABLES` (set at process start by the ``medvid``
command, the Docker images and ``dev.sh``) keeps such blocks out of the heap in the first place.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once among the symbols this process has loaded (no
    ``find_library``, which may start ``ldconfig``); None without glibc."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap() -> bool:
    """Hand the heap memory this process has freed back to the operating system.

    ``malloc_trim(0)`` (glibc, ``malloc.h``) releases the free memory of every arena. It costs
    about a millisecond per hundred MiB freed; the pages are faulted in again when reused.
    Returns False where there is no glibc (musl, macOS): nothing is done there."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


#: glibc malloc settings for medvid's processes (``GLIBC_TUNABLES``, glibc >= 2.35 for
#: ``hugetlb``; unknown tunables are ignored by older ones). ``mmap_threshold`` fixed at 8 MiB:
#: a block of 8 MiB or more (a detector activation, a 4K frame) gets its own mapping and is
#: returned to the system when freed, instead of the dynamic threshold rising to 32 MiB and
#: such blocks piling up in the heap through a step. ``hugetlb=1``: those mappings use
#: transparent huge pages (``madvise``), so mapping them afresh per inference costs no more
#: page faults than reusing the heap (without it the text scan took twice as long;
#: ``benchmarks/README.md``, "Memory per step").
MALLOC_TUNABLES = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=8388608"
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_REEXEC_MARK = "MEDVID_MALLOC_TUNED"


def with_malloc_tunables(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with :data:`MALLOC_TUNABLES` added to ``GLIBC_TUNABLES``; a tunable the
    environment sets already keeps its value."""
    env = dict(environ)
    present = env.get("GLIBC_TUNABLES", "")
    names = {item.split("=", 1)[0] for item in present.split(":") if item}
    extra = [item for item in MALLOC_TUNABLES.split(":") if item.split("=", 1)[0] not in names]
    env["GLIBC_TUNABLES"] = ":".join(([present] if present else []) + extra)
    return env


def malloc_tunables_apply(environ: Mapping[str, str], thp_setting: Path = THP_SETTING) -> bool:
    """Whether a process started with ``environ`` should be started again with
    :data:`MALLOC_TUNABLES`: on Linux with glibc, transparent huge pages not ``never`` (the
    fixed threshold without them is slower), the tunables not all there yet, not already
    re-executed once, and not turned off with ``MEDVID_MALLOC_TUNABLES=0``."""
    if environ.get("MEDVID_MALLOC_TUNABLES", "1") == "0" or environ.get(_REEXEC_MARK):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        if "[never]" in thp_setting.read_text():
            return False
    except OSError:
        return False
    return with_malloc_tunables(environ)["GLIBC_TUNABLES"] != environ.get("GLIBC_TUNABLES")


def reexec_with_malloc_tunables() -> None:
    """Replace this process (same PID, arguments, standard streams) by itself started with
    :data:`MALLOC_TUNABLES`, when :func:`malloc_tunables_apply`; else return.

    glibc reads ``GLIBC_TUNABLES`` once, at start, so the ``medvid`` command calls this first
    thing; the runs it executes in process get the tunables, and so do the processes it starts.
    Raises nothing: a failed ``execv`` (``OSError``) leaves this process going as it was."""
    if not malloc_tunables_apply(os.environ):
        return
    env = with_malloc_tunables(os.environ)
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:
        return
