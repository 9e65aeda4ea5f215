"""De-identification outcomes and inputs in the media store.

Every de-identification check writes a status record (``deid_status/<scope>/<key>.json``:
passed, how much it checked, findings that name what was found and where, never the PHI).
:func:`video_deidentified` and :func:`study_deidentified` read them and are what the export and
every upload ask before taking anything: no record, no export.
"""

from __future__ import annotations

import datetime as dt

from medvid.catalog import keys
from medvid.catalog.keys import Tables, table_key
from medvid.deid.header import PseudonymMap
from medvid.deid.phi import PhiValues
from medvid.deid.redaction_plan import VideoRedactionPlan
from medvid.frames.extract import Redaction
from medvid.intake.ledger import ledger_entry_or_none
from medvid.store import Store, read_json, read_table, write_json

Box = tuple[int, int, int, int]

#: A header region covering this much of the frame says nothing about where the image is (some
#: devices declare the whole screen): the field of view is then detected instead.
UNINFORMATIVE_REGION_FRACTION = 0.98


def informative(region: Box | None, width: int, height: int) -> Box | None:
    """``region`` unless it is missing or covers nearly the whole ``width`` x ``height`` frame."""
    if region is None:
        return None
    x0, y0, x1, y1 = region
    covered = max(0, x1 - x0) * max(0, y1 - y0)
    return None if covered >= UNINFORMATIVE_REGION_FRACTION * width * height else region


def union(boxes: list[Box]) -> Box | None:
    """The smallest box holding every box, or None."""
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def write_deid_status(
    store: Store,
    scope: str,
    key: str,
    *,
    passed: bool,
    checked: int,
    findings: list[str],
    masked_by_check: list[list[int]] | None = None,
) -> None:
    """Record the outcome of a de-identification check of ``key`` in ``scope`` (``video``,
    ``study_header``, ``study_pixels``); ``masked_by_check``: boxes ``[x0, y0, x1, y1]`` (pixels)
    the check masked in every frame (:func:`medvid.deid.residual.residual_check`)."""
    write_json(
        store,
        keys.deid_status_key(scope, key),
        {
            "passed": passed,
            "checked": checked,
            "findings": findings,
            **({"masked_by_check": masked_by_check} if masked_by_check is not None else {}),
            "checked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    )


def deid_passed(store: Store, scope: str, key: str) -> bool:
    """Whether the last de-identification check of ``key`` in ``scope`` passed."""
    status = keys.deid_status_key(scope, key)
    return store.exists(status) and bool(read_json(store, status)["passed"])


def video_deidentified(store: Store, video_id: str) -> bool:
    """A video may leave medvid: its frames passed the residual check and, for a DICOM cine
    loop, its study's header check passed too."""
    if not deid_passed(store, "video", video_id):
        return False
    entry = ledger_entry_or_none(store, video_id)
    origin = entry.origin if entry is not None else None
    if origin and origin.get("study_key"):
        return deid_passed(store, "study_header", origin["study_key"])
    return True


def study_deidentified(store: Store, study: str) -> bool:
    """A study's images may leave medvid: header and pixel checks both passed."""
    return deid_passed(store, "study_header", study) and deid_passed(store, "study_pixels", study)


def phi_from_dict(values: dict) -> PhiValues:
    return PhiValues(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def load_phi(store: Store, origin: dict | None) -> PhiValues | None:
    """Header PHI values behind a DICOM-derived video (None for landing-zone videos)."""
    if not origin or not origin.get("phi_key"):
        return None
    values = read_json(store, origin["phi_key"]).get(origin["instance_id"])
    return phi_from_dict(values) if values else None


def read_redaction_plan(store: Store, video_id: str) -> VideoRedactionPlan:
    """A video's redaction plan (rectangles and frame spans, no text)."""
    return VideoRedactionPlan.from_dict(read_json(store, keys.redaction_plan_key(video_id)))


def read_redaction(store: Store, video_id: str) -> Redaction:
    """The redaction ``video_frames`` applies while writing a video's frames."""
    return Redaction(**read_redaction_plan(store, video_id).redaction_kwargs())


def patient_of_cine_video(store: Store, video_id: str) -> str | None:
    """The patient pseudonym of a DICOM cine loop's study (None for other videos)."""
    entry = ledger_entry_or_none(store, video_id)
    origin = entry.origin if entry is not None else None
    if not origin or not origin.get("study_key"):
        return None
    key = table_key(Tables.DICOM_INSTANCES, origin["study_key"])
    if not store.exists(key):
        return None
    for row in read_table(store, key).to_pylist():
        if row["instance_id"] == origin["instance_id"]:
            return row["patient_pseudonym"]
    return None


def open_pseudonym_map(store: Store, salt: str) -> PseudonymMap:
    """The protected pseudonym map (``protected/pseudonym_map.json``); call ``save()`` and
    publish :data:`medvid.catalog.keys.PSEUDONYM_MAP` after adding patients."""
    path = store.fetch(keys.PSEUDONYM_MAP) if store.exists(keys.PSEUDONYM_MAP) else None
    return PseudonymMap(path or store.local_path(keys.PSEUDONYM_MAP), salt)


def known_identifiers_of(store: Store, *, file_names: bool = False) -> list[str]:
    """Every identifier medvid knows of its patients (PHI: use inside the protected zone only):
    the ids, names and dates of the current patients sheets, the PHI of every DICOM header read
    so far, and (``file_names``) every original file name whole (not its stem alone: a stem
    like ``healthy`` is a common word, while the PHI inside a name is matched through the
    sheets and headers that know it).

    For :func:`medvid.deid.names.display_name` (without file names) and the export's PHI scan
    (:func:`medvid.export.phi_scan.scan_export`, with them)."""
    import pandas as pd

    from medvid.deid.names import known_identifiers
    from medvid.intake.ledger import ledger_entries
    from medvid.labels.sheet_versions import current_sheet_versions
    from medvid.labels.sheets import read_patients_sheet, sheet_kind
    from medvid.store import stems

    sheets = []
    for version in current_sheet_versions(store):
        path = store.fetch(keys.sheet_copy_key(version["content_id"]))
        try:
            if sheet_kind(path) == "patients":
                sheets.append(read_patients_sheet(path))
        except Exception:  # a malformed sheet is quarantined by label_sheets; nothing known
            continue
    phi = []
    for study in stems(store, keys.DICOM_PHI):
        phi += [phi_from_dict(v) for v in read_json(store, keys.dicom_phi_key(study)).values()]
    known = known_identifiers(
        patients=pd.concat(sheets, ignore_index=True) if sheets else None, phi_values=phi
    )
    from medvid.deid.names import display_name

    # a name whose display name is itself holds nothing PHI-like (``segments.csv``): exporting
    # its display name (a sheet as annotator) is what display names are for
    names = (
        {n for e in ledger_entries(store) for n in e.names if display_name(n, known) != n}
        if file_names
        else set()
    )
    # Device identity is kept on purpose (PS3.15 Annex E option 113109): an institution or
    # station named like the vendor (a demo file from "PHILIPS") is not a patient identifier.
    devices = _device_words(store)
    return sorted(i for i in set(known) | names if i.strip().lower() not in devices)


def _device_words(store: Store) -> set[str]:
    """Lower-case manufacturer and model names (and their words) of every de-identified
    header table."""
    from medvid.store import stems

    words: set[str] = set()
    prefix = f"{keys.TABLES}/{Tables.DICOM_INSTANCES}"
    for study in stems(store, prefix, ".parquet"):
        table = read_table(store, table_key(Tables.DICOM_INSTANCES, study))
        for column in ("Manufacturer", "ManufacturerModelName"):
            for value in table[column].to_pylist():
                if value:
                    words.add(str(value).strip().lower())
                    words.update(w.lower() for w in str(value).split())
    return words
