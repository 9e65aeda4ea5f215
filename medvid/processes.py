"""Which process did something, and is it still alive: for cleaning up after a ``kill -9``.

A *process token* names one process on one host for its whole life: ``host:pid:start``, where
``start`` is the process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22
on Linux), so a recycled pid is never mistaken for the process that died.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of the whole line


def process_token(pid: int | None = None) -> str:
    """The token of ``pid`` (default: this process) on this host."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '?'}"


def token_alive(token: str) -> bool | None:
    """Whether the process a token names is alive: True/False on this host, None when the
    token is from another host (or malformed) and nothing can be said."""
    try:
        host, pid_text, start = token.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return None
    if host != socket.gethostname():
        return None
    current = _start_ticks(pid)
    if current is None:
        if Path("/proc").is_dir():
            return False
        try:  # no /proc (macOS): a signal-0 probe
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start == "?" or current == start


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(root: str | Path, *, older_than_s: float = 3600.0) -> list[Path]:
    """Temporary files and folders left under ``root`` by writers that died.

    medvid's atomic writers (:mod:`medvid.io`) name their temporaries ``.tmp-<pid>-...`` and
    the folders they replace ``.old-<name>-<pid>``; one is stale when its pid is no longer
    alive on this host, or (no pid in the name) when it is older than ``older_than_s``.
    """
    stale: list[Path] = []
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in list(dirnames) + filenames:
            if not name.startswith((".tmp-", ".old-")):
                continue
            path = Path(dirpath) / name
            pid = _pid_in(name)
            if pid is not None:
                dead = not pid_alive(pid)
            else:
                try:
                    dead = now - path.lstat().st_mtime > older_than_s
                except OSError:
                    continue
            if dead:
                stale.append(path)
        dirnames[:] = [d for d in dirnames if not d.startswith((".tmp-", ".old-"))]
    return sorted(stale)


def _pid_in(name: str) -> int | None:
    if name.startswith(".tmp-"):
        head = name[len(".tmp-") :].split("-", 1)[0]
    else:  # .old-<name>-<pid>
        head = name.rsplit("-", 1)[-1]
    return int(head) if head.isdigit() else None
