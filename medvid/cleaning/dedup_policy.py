"""What to do with duplicate groups: check patients, choose representatives, form split units.

All three take a groups table (``item_id``, ``group_id``: :func:`medvid.cleaning.dedup.
group_duplicates`, :meth:`~medvid.cleaning.dedup.DuplicateIndex.groups`) plus per-item facts
(:mod:`medvid.cleaning.dedup_items`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from medvid.cleaning.hamming import join_components


def groups_of(groups: pd.DataFrame) -> dict[str, list[str]]:
    """``{group_id: sorted member ids}`` of a groups table."""
    out: dict[str, list[str]] = {}
    for item_id, group_id in zip(groups["item_id"], groups["group_id"], strict=True):
        out.setdefault(str(group_id), []).append(str(item_id))
    return {g: sorted(m) for g, m in sorted(out.items())}


def _text(value: object) -> str | None:
    """Trimmed text; None for None, NA, NaN or blank."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


@dataclass(frozen=True)
class PatientSpan:
    """A duplicate group whose items belong to more than one patient (a check failure: either
    one image filed under two patients, or two patients' images close in pHash)."""

    group_id: str
    patient_ids: tuple[str, ...]
    item_ids: tuple[str, ...]


def groups_spanning_patients(
    groups: pd.DataFrame, patient_of_item: Mapping[str, object] | pd.Series
) -> list[PatientSpan]:
    """Groups holding items of two or more known patients, sorted by ``group_id``.

    Args:
        groups: ``item_id``, ``group_id`` (a groups table).
        patient_of_item: item id to patient id; items missing from it or with no patient
            (None, NaN, blank) do not count as another patient.
    """
    lookup = (
        patient_of_item.to_dict() if isinstance(patient_of_item, pd.Series) else patient_of_item
    )
    out = []
    for group_id, members in groups_of(groups).items():
        if len(members) < 2:
            continue
        patients = {p for m in members if (p := _text(lookup.get(m))) is not None}
        if len(patients) > 1:
            out.append(PatientSpan(group_id, tuple(sorted(patients)), tuple(members)))
    return out


DEFAULT_PREFER = ("lossless", "pixel_count")


def representatives(
    groups: pd.DataFrame,
    items: pd.DataFrame,
    *,
    prefer: Sequence[str] = DEFAULT_PREFER,
    across_patients: bool = False,
) -> pd.DataFrame:
    """Which items of each duplicate group the export keeps.

    The group's *representative* is its best item: highest value of each ``prefer`` column in
    turn (default: lossless before lossy, then more pixels), then the smallest ``item_id``. The
    export keeps the representative's whole *source* inside the group (every item of the group
    with the same ``source_id``; a video's near-identical frames are the sampling stage's
    business, not this one's) and drops the group's other items.

    Unless ``across_patients``, a group holding several known patients gets one representative
    per patient (items of unknown patient go with the group's best item): a group spanning
    patients is more often a pHash coincidence than a copy (see
    :func:`groups_spanning_patients`), and dropping another patient's image would lose it
    silently.

    Args:
        groups: a groups table (``item_id``, ``group_id``).
        items: ``item_id`` plus the ``prefer`` columns; optional ``source_id`` (null: the item
            is its own source) and ``patient_id`` (null: unknown).
        prefer: columns ranked descending (booleans: True first); ``()`` for smallest id only.
        across_patients: one representative per group, whatever the patients.

    Returns:
        ``item_id``, ``group_id``, ``representative_id``, ``keep`` (bool), sorted by
        ``item_id``; one row per item of ``groups``.

    Raises:
        ValueError: a ``prefer`` column or ``item_id`` is missing from ``items``, or an item of
            ``groups`` is not in ``items``.
    """
    missing = [c for c in ("item_id", *prefer) if c not in items.columns]
    if missing:
        raise ValueError(f"items lack column(s): {', '.join(missing)}")
    table = groups[["item_id", "group_id"]].astype({"item_id": str, "group_id": str})
    extra = items.assign(item_id=items["item_id"].astype(str)).drop_duplicates("item_id")
    merged = table.merge(extra, on="item_id", how="left", validate="one_to_one", indicator=True)
    unknown = merged.loc[merged["_merge"] != "both", "item_id"]
    if len(unknown):
        raise ValueError(f"item {unknown.iloc[0]!r} of groups is not in items")
    source = merged["source_id"] if "source_id" in merged.columns else merged["item_id"]
    merged["_source"] = [
        _text(s) or item_id for s, item_id in zip(source, merged["item_id"], strict=True)
    ]
    patients = merged["patient_id"] if "patient_id" in merged.columns else [None] * len(merged)
    merged["_patient"] = [_text(p) or "" for p in patients]
    order = (["group_id", *prefer, "item_id"], [True] + [False] * len(prefer) + [True])
    best_of_group = merged.sort_values(order[0], ascending=order[1], kind="stable")
    best_of_group = best_of_group.drop_duplicates("group_id").set_index("group_id")
    group_patient = merged["group_id"].map(best_of_group["_patient"])
    known = merged["_patient"] != ""
    merged["_scope"] = group_patient.where(~known | across_patients, merged["_patient"])
    ranked = merged.sort_values(["_scope", *order[0]], ascending=[True, *order[1]], kind="stable")
    best = ranked.drop_duplicates(["group_id", "_scope"]).set_index(["group_id", "_scope"])
    scope = pd.MultiIndex.from_arrays([merged["group_id"], merged["_scope"]])
    merged["representative_id"] = best["item_id"].reindex(scope).to_numpy()
    keep = merged["_source"].to_numpy() == best["_source"].reindex(scope).to_numpy()
    out = merged[["item_id", "group_id", "representative_id"]].assign(keep=keep)
    return out.sort_values("item_id", kind="stable", ignore_index=True)


def split_units(
    patient_of_member: Mapping[str, object], group_links: Iterable[tuple[str, str]] = ()
) -> dict[str, str]:
    """Units for a train/validation split: members joined by a patient or a duplicate group.

    A *member* is what the split assigns (a video or a still image). Members of one patient are
    one unit; members sharing a duplicate group are one unit; both transitively (connected
    components), so no patient and no duplicate group can end up in two splits.

    Args:
        patient_of_member: member id to patient id (None, NaN or blank: unknown, joins nothing).
        group_links: ``(member_id, group_id)`` pairs, e.g. each video with the group of each of
            its frames; members only listed here have no patient.

    Returns:
        ``{member_id: unit_id}`` for every member, the unit id being the unit's smallest member
        id; sorted by member id.
    """
    members: dict[str, int] = {}
    keys: dict[tuple[str, str], int] = {}
    a: list[int] = []
    b: list[int] = []

    def node(name: str) -> int:
        return members.setdefault(name, len(members))

    links: list[tuple[str, tuple[str, str]]] = []
    for member, patient in patient_of_member.items():
        node(str(member))
        if (p := _text(patient)) is not None:
            links.append((str(member), ("patient", p)))
    for member, group_id in group_links:
        node(str(member))
        links.append((str(member), ("group", str(group_id))))
    count = len(members)
    for member, key in links:
        a.append(members[member])
        b.append(count + keys.setdefault(key, len(keys)))
    labels = np.arange(count + len(keys), dtype=np.int64)
    if a:
        labels = join_components(labels, np.array(a), np.array(b))
    names = list(members)
    smallest: dict[int, str] = {}
    for name, position in members.items():
        label = int(labels[position])
        if label not in smallest or name < smallest[label]:
            smallest[label] = name
    return {name: smallest[int(labels[members[name]])] for name in sorted(names)}
