"""Looking at a landing zone: which files are ready for intake, without touching them.

A sensor tick (and the ``medvid`` command before it launches intake runs) only lists and stats:
:func:`look` decides from sizes, modification times and the existence of intake records which
file versions need an intake run. It writes nothing; its state travels in the returned cursor,
which the caller keeps (a sensor cursor is saved only when Dagster applies the tick, so a
previewed tick changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from medvid.intake.ledger import fingerprint, landing_day


class LandingFileLike(Protocol):
    key: str
    size: int
    mtime: float

    @property
    def is_temporary(self) -> bool: ...


@dataclass(frozen=True)
class Pending:
    """A landing file version with no intake record yet."""

    key: str
    size: int
    mtime: float
    fingerprint: str
    day: str


@dataclass
class Look:
    """What one look at the zone found: ``ready`` (settled, no outcome recorded), ``waiting``
    (still changing, or younger than the minimum age: landing paths), and the next cursor."""

    ready: list[Pending] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)

    def days(self) -> list[str]:
        return sorted({p.day for p in self.ready})


def look(
    files: Iterable[LandingFileLike],
    uri_of: Callable[[str], str],
    has_record: Callable[[str], bool],
    cursor: dict | None = None,
    *,
    require_stable: bool,
    now: float,
    min_age_s: float = 0.0,
) -> Look:
    """Which landing file versions are ready for intake.

    A version is *settled* when its size and mtime are unchanged since the previous look
    (``require_stable``: the sensor waits one tick) and it is at least ``min_age_s`` old;
    temporary upload files (``.part``, ``.crdownload``, hidden files) are never taken. A version
    whose intake record exists (``has_record(fingerprint)``) is done; the cursor remembers done
    versions so their records are not looked up again. ``uri_of(key)`` gives the URI the
    fingerprint hashes (see :func:`medvid.intake.ledger.fingerprint`).
    """
    cursor = cursor or {}
    done_before: dict[str, list] = cursor.get("done", {})
    seen_before: dict[str, list] = cursor.get("seen", {})
    done: dict[str, list] = {}
    seen: dict[str, list] = {}
    result = Look()
    for file in files:
        if file.is_temporary:
            continue
        state = [int(file.size), float(file.mtime)]
        if done_before.get(file.key) == state:
            done[file.key] = state
            continue
        fp = fingerprint(uri_of(file.key), file.size, file.mtime)
        if has_record(fp):
            done[file.key] = state
            continue
        seen[file.key] = state
        if require_stable and seen_before.get(file.key) != state:
            result.waiting.append(file.key)
            continue
        if now - file.mtime < min_age_s:
            result.waiting.append(file.key)
            continue
        result.ready.append(
            Pending(file.key, int(file.size), float(file.mtime), fp, landing_day(file.mtime))
        )
    result.cursor = {"done": done, "seen": seen}
    return result
