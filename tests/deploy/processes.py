"""Start the servers of a deployment as child processes, wait until they serve, stop them.

Built for the deployment tests (webserver, daemon, code server, Celery workers, moto_server):

- the child gets the default SIGINT/SIGTERM handlers back (a shell or CI runner may have started
  this test with them ignored, and an ignored disposition survives ``exec``), and its own session,
  so it and any children it forks form one process group;
- its stdout and stderr go to a log file that ``wait_for_log`` reads and failures quote;
- :class:`Processes` stops everything it started, by process group id, in reverse order,
  whatever the test did: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

LOG_TAIL_CHARS = 4000


def _restore_default_signals() -> None:
    """Runs in the child between fork and exec."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class ProcessFailed(RuntimeError):
    """A started process exited, or did not become ready in time."""


@dataclass
class Process:
    """One started child: its ``Popen`` and the log file its output goes to."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        """Whether the child is still running. It is not reaped here (``WNOWAIT``): until
        :meth:`stop` reaps it, its pid, and so its process group id, cannot be reused."""
        if self.popen.returncode is not None:
            return False
        try:
            status = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return status is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _fail(self, what: str) -> ProcessFailed:
        state = "running" if self.running() else "exited"
        tail = self.log()[-LOG_TAIL_CHARS:]
        return ProcessFailed(f"{self.name} (pid {self.pid}, {state}): {what}\n--- log ---\n{tail}")

    def wait_for_port(self, port: int, host: str = "127.0.0.1", timeout: float = 60.0) -> None:
        """Until something accepts TCP connections on ``host:port``; raises
        :class:`ProcessFailed` (with the log tail) if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if port_open(port, host):
                return
            if not self.running():
                raise self._fail(f"exited before listening on {host}:{port}")
            time.sleep(0.2)
        raise self._fail(f"not listening on {host}:{port} after {timeout:.0f} s")

    def wait_for_log(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """Until the log matches the regular expression ``pattern``; returns the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if match := regex.search(self.log()):
                return match
            if not self.running():
                raise self._fail(f"exited before logging /{pattern}/")
            time.sleep(0.2)
        raise self._fail(f"did not log /{pattern}/ after {timeout:.0f} s")

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM to the process group; once the child exits, or after ``grace`` seconds,
        SIGKILL to what is left of the group (children the child left behind); then reap the
        child and return its exit status (negative: the signal that ended it). Safe to call
        twice."""
        if self.popen.returncode is not None:
            return self.popen.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.popen.wait(timeout=30)


class Processes:
    """The processes one test started; :meth:`stop_all` (called by the ``processes`` fixture
    whatever happens) stops them last-started first."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[Process] = []

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                preexec_fn=_restore_default_signals,
                start_new_session=True,
            )
        process = Process(name=name, popen=popen, log_path=log_path)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in reversed(self.started):
            process.stop()
