"""Batches: the unit of work medvid's pipelines are partitioned by.

A batch is one UTC day of landing and one of :data:`SHARDS` shards of it: key
``YYYY-MM-DD|SS``, the key of Dagster's day x shard partition (days before :data:`FIRST_DAY`
count as that day, so an archive of old files lands in its batches). Each video and each DICOM
study belongs to exactly one batch: a landing video to the day it landed and the shard of its
content id; a study to the day its first instance landed and the shard of its (salted) key, its
later instances joining it there; a DICOM cine loop to its study's batch. A pipeline run
processes one batch, video by video and study by study, so the number of partitions grows with
days, not with videos (a hospital archive of a million videos is a few thousand batches, which
Dagster's UI, backfills and sensors handle), and a backfill of a day takes that day's batches
through the whole path.

Membership is one record per member, ``batches/<batch>/<kind>_<id>.json`` (written by intake and,
for cine loops, by ``dicom_pixels``), so concurrent writers never overwrite each other; a marker
per batch (``batch_markers/<batch>.json``) lists the batches that have members.
"""

from __future__ import annotations

import hashlib

from medvid.catalog import keys
from medvid.store import Store, read_json_or, write_json

SHARDS = 16
KINDS = ("video", "study")
FIRST_DAY = "2020-01-01"
"""The first day of the batch partitions; files modified earlier belong to it."""


def shard_of(member_id: str) -> int:
    """The shard (0..SHARDS-1) of a video id or study key (both hex-derived)."""
    return int(hashlib.sha256(member_id.encode()).hexdigest()[:8], 16) % SHARDS


def batch_key(day: str, member_id: str) -> str:
    """``YYYY-MM-DD|SS``: the batch of a member that landed on ``day``."""
    return f"{max(day, FIRST_DAY)}|{shard_of(member_id):02d}"


def day_of(batch: str) -> str:
    return batch.split("|", 1)[0]


def add_member(store: Store, batch: str, kind: str, member_id: str) -> None:
    """Record ``member_id`` (a ``video`` or ``study``) as a member of ``batch`` (idempotent)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    key = keys.batch_member_key(batch, kind, member_id)
    if not store.exists(key):
        write_json(store, key, {"kind": kind, "id": member_id})
    marker = keys.batch_marker_key(batch)
    if not store.exists(marker):
        write_json(store, marker, {"batch": batch})


def nonempty_batches(store: Store) -> list[str]:
    """Every batch with at least one member, sorted (one record per batch is listed, not its
    members)."""
    base = keys.BATCH_MARKERS + "/"
    return sorted(k[len(base) : -len(".json")] for k in store.list_keys(keys.BATCH_MARKERS))


def members(store: Store, batch: str, kind: str) -> list[str]:
    """The ids of the members of ``batch`` of one kind, sorted."""
    prefix = keys.batch_prefix(batch) + "/"
    found = []
    for key in store.list_keys(keys.batch_prefix(batch)):
        name = key[len(prefix) :]
        if name.startswith(f"{kind}_") and name.endswith(".json"):
            found.append(name[len(kind) + 1 : -len(".json")])
    return sorted(found)


def members_of_day(store: Store, day: str) -> dict[str, list[str]]:
    """The videos and studies that landed on the UTC ``day`` (``YYYY-MM-DD``): the members of
    the day's batches, by kind (``{"video": [...], "study": [...]}``, each sorted). A member's
    day is its landing day as intake recorded it (:func:`medvid.intake.ledger.landing_day` of
    the landing file's mtime; a study's first instance; a cine loop its study's)."""
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for batch in nonempty_batches(store):
        if day_of(batch) == day:
            for kind in KINDS:
                found[kind].extend(members(store, batch, kind))
    return {kind: sorted(ids) for kind, ids in found.items()}


def members_digest(store: Store, batch: str) -> str:
    """12 hex digits naming a batch's membership: changes when a member is added."""
    names = sorted(store.list_keys(keys.batch_prefix(batch)))
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]


def study_batch(store: Store, study: str, day: str) -> str:
    """The batch of ``study``: the one it was first registered in, else (first registration,
    on ``day``) a new one, recorded."""
    key = keys.study_batch_key(study)
    record = read_json_or(store, key, None)
    if record is not None:
        return record["batch"]
    batch = batch_key(day, study)
    write_json(store, key, {"batch": batch})
    return batch


def batch_of(store: Store, member_id: str) -> str | None:
    """The batch of a video (its ledger entry's partition) or a study (its batch record)."""
    from medvid.intake.ledger import ledger_entry_or_none

    entry = ledger_entry_or_none(store, member_id)
    if entry is not None:
        return entry.partition
    record = read_json_or(store, keys.study_batch_key(member_id), None)
    return record["batch"] if record is not None else None
