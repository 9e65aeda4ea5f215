"""Labels and patients sheets: the CSV files that clinicians fill in, and frame labels from them.

Four kinds of sheet are recognised by their header (names are matched case-insensitively with
surrounding whitespace ignored; the delimiter is ``,``, or ``;``/tab when the header has no comma,
as spreadsheet programs in some locales write):

- **labels** ``video,start_s,end_s,label``: a label applies to a video between two times, in
  seconds from the start of the original video. This is the "timestamp ranges" labels sheet of the
  hospital ETL that medvid replaces (seed 000).
- **patients** ``video,patient_id,...``: which patient a video belongs to, plus any patient
  attributes (diagnosis, scores) as further columns, kept as text (seed 000's patients sheet).
- **segments** ``video,start_frame|start_s,end_frame|end_s,label[,value]``: frame or time ranges
  with an explicit value; parsed by :mod:`medvid.labels.segments`. A header with time columns and
  no ``value`` column is a labels sheet.
- **reviews** ``video,reviewer[,source]``: a person reviewed the labels of a video (of one
  source, or all); parsed by :mod:`medvid.labels.reviews`.

``video`` is whatever the clinician knows the video by (the uploaded file name or the video id);
matching it to a ``video_id`` is the caller's job. Row numbers in error messages are spreadsheet
rows: the header is row 1, the first data row is row 2. Rows whose cells are all empty are
skipped.
"""

from __future__ import annotations

import csv
import math
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from medvid.csv_injection import FORMULA_TRIGGERS
from medvid.errors import SheetError
from medvid.labels.schema import FRAME_LABELS_SCHEMA, SOURCE_SHEET, LabelSchema

SheetKind = Literal["labels", "patients", "segments", "reviews"]

LABELS_COLUMNS = ("video", "start_s", "end_s", "label")
PATIENTS_COLUMNS = ("video", "patient_id")

#: Frames within this many seconds outside a range still count as inside it, so a range typed
#: from a player's display (rounded to 1 µs or coarser float arithmetic) does not drop its
#: boundary frames.
TIMESTAMP_TOLERANCE_S = 1e-6

_MAX_ROWS_IN_REASON = 10


def _detect_delimiter(header_line: str) -> str:
    if "," in header_line:
        return ","
    if ";" in header_line:
        return ";"
    if "\t" in header_line:
        return "\t"
    return ","


def _read_rows(path: str | Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header (normalised) and ``(spreadsheet_row, cells)`` pairs of a CSV sheet.

    Raises :class:`SheetError` when the file cannot be read as UTF-8 CSV, is empty, or has
    duplicate or blank column names.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SheetError(f"{path.name}: file not found") from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        raise SheetError(f"{path.name}: {reason}") from None
    except OSError as exc:
        raise SheetError(f"{path.name}: cannot be read ({exc.strerror})") from None
    if not text.strip():
        raise SheetError(f"{path.name}: the sheet is empty")
    first_line = text.splitlines()[0] if text else ""
    try:
        records = list(csv.reader(text.splitlines(), delimiter=_detect_delimiter(first_line)))
    except csv.Error as exc:
        raise SheetError(f"{path.name}: not a valid CSV file ({exc})") from None
    header = [cell.strip().lower() for cell in records[0]]
    while header and header[-1] == "":
        header.pop()  # trailing delimiters that spreadsheet programs add
    if "" in header:
        raise SheetError(f"{path.name}: blank column name in column {header.index('') + 1}")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise SheetError(f"{path.name}: duplicate column(s): {', '.join(duplicates)}")
    rows: list[tuple[int, list[str]]] = []
    too_long: list[int] = []
    for row_number, cells in enumerate(records[1:], start=2):
        cells = [cell.strip() for cell in cells]
        if not any(cells):
            continue
        if len(cells) > len(header):
            if any(cells[len(header) :]):
                too_long.append(row_number)
            cells = cells[: len(header)]
        cells += [""] * (len(header) - len(cells))
        rows.append((row_number, cells))
    if too_long:
        raise SheetError(f"{path.name}: more cells than columns in {_rows_phrase(too_long)}")
    return header, rows


#: Windows device names: a folder called ``CON`` or ``nul.txt`` cannot be created there.
_WINDOWS_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)]
)
#: Longest label name: 255 is the longest file name ext4, APFS and NTFS allow, and a label
#: name becomes an ``imagefolder/`` folder name.
MAX_LABEL_NAME_CHARS = 255
_SHOWN_NAME_CHARS = 40


def _shown(name: str) -> str:
    return repr(name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "...")


def validate_label_name(name: str) -> str:
    """The label name, trimmed, when it is safe as a spreadsheet cell and a folder name.

    Label names are written to CSV exports and become folder names under ``imagefolder/``
    (:func:`medvid.export.dataset.label_folder_name`). Refused:

    - a first character a spreadsheet evaluates as a formula: ``=``, ``+``, ``-``, ``@``
      (:data:`medvid.csv_injection.FORMULA_TRIGGERS`, OWASP CSV Injection; write "negative"
      rather than "-ve");
    - control and format characters (Unicode categories Cc and Cf: tab, CR, NUL, zero-width
      and bidirectional marks that make two labels look alike);
    - path separators ``/`` and ``\\``, and the names ``.`` and ``..``;
    - Windows device names (``CON``, ``NUL``, ``COM1``...), with or without an extension;
    - an empty name, or one longer than :data:`MAX_LABEL_NAME_CHARS` characters.

    Raises:
        SheetError: why the name is refused (the name is shown, cut to 40 characters).
    """
    text = str(name).strip()
    if not text:
        raise SheetError("empty label name")
    shown = _shown(text)
    if text.startswith(FORMULA_TRIGGERS):
        raise SheetError(
            f"label {shown} starts with {text[0]!r}: a spreadsheet would run it as a formula"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise SheetError(f"label {shown} contains a control or invisible formatting character")
    if "/" in text or "\\" in text:
        raise SheetError(f"label {shown} contains a path separator (/ or \\)")
    if text in (".", ".."):
        raise SheetError(f"label {shown} is not a usable folder name")
    if text.split(".")[0].strip().upper() in _WINDOWS_DEVICE_NAMES:
        raise SheetError(f"label {shown} is a Windows device name, not a usable folder name")
    if len(text) > MAX_LABEL_NAME_CHARS:
        raise SheetError(f"label {shown} is longer than {MAX_LABEL_NAME_CHARS} characters")
    return text


def _rows_phrase(rows: Sequence[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:_MAX_ROWS_IN_REASON])
    more = f" (+{len(rows) - _MAX_ROWS_IN_REASON} more)" if len(rows) > _MAX_ROWS_IN_REASON else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def _kind_of_header(header: Sequence[str]) -> SheetKind | None:
    columns = set(header)
    if "video" not in columns:
        return None
    if "patient_id" in columns:
        return "patients"
    if "reviewer" in columns and "label" not in columns:
        return "reviews"
    if "label" in columns:
        has_start = bool({"start_frame", "start_s"} & columns)
        has_end = bool({"end_frame", "end_s"} & columns)
        frame_based = bool({"start_frame", "end_frame"} & columns)
        if has_start and has_end and (frame_based or "value" in columns):
            return "segments"
        if {"start_s", "end_s"} <= columns:
            return "labels"
    return None


def sheet_kind(path: str | Path) -> SheetKind | None:
    """Which sheet a CSV file is, judged by its header row; ``None`` for any other file.

    ``"patients"`` when the header has ``video`` and ``patient_id``; ``"segments"`` when it has
    ``video``, ``label``, a start and an end column and either frame columns
    (``start_frame``/``end_frame``) or a ``value`` column; ``"labels"`` when it has
    ``video,start_s,end_s,label``; ``"reviews"`` when it has ``video`` and ``reviewer`` and no
    ``label``. Unreadable, empty or non-UTF-8 files give ``None``.
    """
    try:
        header, _ = _read_rows(path)
    except SheetError:
        return None
    return _kind_of_header(header)


def _require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    missing = [name for name in required if name not in header]
    if missing:
        raise SheetError(
            f"{path.name}: missing column(s) {', '.join(missing)} "
            f"(expected {','.join(required)}; found {','.join(header) or 'no header'})"
        )


def _parse_seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def read_labels_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a labels sheet (``video,start_s,end_s,label``).

    Returns a DataFrame with columns ``video`` (str), ``start_s`` (float64 s), ``end_s``
    (float64 s), ``label`` (str), one row per sheet row in sheet order, whitespace trimmed.
    Other columns (comments) are ignored.

    Raises :class:`SheetError` naming the spreadsheet rows at fault when a column is missing, a
    video or label cell is empty, a label is refused by :func:`validate_label_name`, a time is
    not a finite number of seconds >= 0, or ``start_s > end_s``.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    _require_columns(path, header, LABELS_COLUMNS)
    index = {name: header.index(name) for name in LABELS_COLUMNS}
    problems: dict[str, list[int]] = {}
    records: list[tuple[str, float, float, str]] = []
    for row_number, cells in rows:
        video = cells[index["video"]]
        label = cells[index["label"]]
        start_text, end_text = cells[index["start_s"]], cells[index["end_s"]]
        start, end = _parse_seconds(start_text), _parse_seconds(end_text)
        bad = False
        if not video:
            problems.setdefault("empty video", []).append(row_number)
            bad = True
        if not label:
            problems.setdefault("empty label", []).append(row_number)
            bad = True
        else:
            try:
                validate_label_name(label)
            except SheetError as error:
                problems.setdefault(error.reason, []).append(row_number)
                bad = True
        if start is None or end is None:
            problems.setdefault(
                "start_s/end_s not a number of seconds >= 0 (e.g. 12.5)", []
            ).append(row_number)
            bad = True
        elif start > end:
            problems.setdefault("start_s greater than end_s", []).append(row_number)
            bad = True
        if not bad:
            assert start is not None and end is not None
            records.append((video, start, end, label))
    if problems:
        reasons = "; ".join(f"{what} in {_rows_phrase(where)}" for what, where in problems.items())
        raise SheetError(f"{path.name}: {reasons}")
    frame = pd.DataFrame.from_records(records, columns=list(LABELS_COLUMNS))
    return frame.astype({"video": str, "start_s": "float64", "end_s": "float64", "label": str})


def read_patients_sheet(path: str | Path) -> pd.DataFrame:
    """Read and validate a patients sheet (``video,patient_id,<attribute columns...>``).

    Returns a DataFrame with ``video`` and ``patient_id`` first, then the attribute columns in
    sheet order, all as trimmed text (``patient_id`` stays text so ``007`` keeps its zeros), one
    row per video in sheet order. Rows repeated verbatim are kept once.

    Raises :class:`SheetError` naming the rows at fault when a column is missing, a video or
    patient_id cell is empty, or a video is listed twice with different patients or different
    attributes.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    _require_columns(path, header, PATIENTS_COLUMNS)
    columns = list(PATIENTS_COLUMNS) + [name for name in header if name not in PATIENTS_COLUMNS]
    order = [header.index(name) for name in columns]
    empty_video: list[int] = []
    empty_patient: list[int] = []
    first_seen: dict[str, tuple[int, list[str]]] = {}
    conflicts: list[str] = []
    records: list[list[str]] = []
    for row_number, cells in rows:
        record = [cells[i] for i in order]
        video, patient_id = record[0], record[1]
        if not video:
            empty_video.append(row_number)
            continue
        if not patient_id:
            empty_patient.append(row_number)
            continue
        if video in first_seen:
            earlier_row, earlier = first_seen[video]
            if earlier[1] != patient_id:
                conflicts.append(
                    f"video {video!r} has patient {earlier[1]!r} in row {earlier_row} "
                    f"and {patient_id!r} in row {row_number}"
                )
            elif earlier != record:
                conflicts.append(
                    f"video {video!r} has different attributes in rows {earlier_row} "
                    f"and {row_number}"
                )
            continue
        first_seen[video] = (row_number, record)
        records.append(record)
    reasons = []
    if empty_video:
        reasons.append(f"empty video in {_rows_phrase(empty_video)}")
    if empty_patient:
        reasons.append(f"empty patient_id in {_rows_phrase(empty_patient)}")
    reasons.extend(conflicts[:_MAX_ROWS_IN_REASON])
    if reasons:
        raise SheetError(f"{path.name}: {'; '.join(reasons)}")
    return pd.DataFrame(records, columns=columns, dtype=str)


def labels_from_ranges(
    frames: pd.DataFrame,
    ranges: pd.DataFrame,
    *,
    schema: LabelSchema,
    annotator: str = "labels_sheet",
    created_at: datetime,
) -> pa.Table:
    """Frame labels of one video from its rows of a labels sheet.

    ``frames`` holds one video's frames with at least ``frame_id``, ``video_id``,
    ``frame_number`` (int, index in the original video) and ``frame_timestamp`` (float seconds).
    ``ranges`` holds that video's sheet rows with ``start_s``, ``end_s`` (seconds) and ``label``
    (as returned by :func:`read_labels_sheet`, filtered to the video).

    A frame gets ``value=True`` for a label when its ``frame_timestamp`` lies in
    ``[start_s - 1e-6, end_s + 1e-6]`` of any range of that label (boundaries inclusive, see
    :data:`TIMESTAMP_TOLERANCE_S`). **The sheet is taken as a complete review of the video for
    each label it uses there**: every other frame of the video gets ``value=False`` for those
    labels, so a labels sheet yields negatives as well as positives. Labels of the schema that
    the sheet does not use for this video produce no rows (unknown, not negative).

    Returns a :data:`FRAME_LABELS_SCHEMA` table, one row per (frame, used label), sorted by
    ``(frame_number, label_id)``; ``source="sheet"``, ``confidence=1.0``, ``reviewed=True``,
    ``reviewer`` null, ``float_value`` null, ``date_created = date_modified = created_at``
    (passed in so that a re-run writes identical rows).

    Raises :class:`~medvid.labels.schema.UnknownLabelError` (a ``MedvidInputError``) when the
    sheet uses a label that is not in ``schema``; ``ValueError`` when ``frames`` spans several
    videos, lacks a column or has a missing timestamp, or ``created_at`` is naive.
    """
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise ValueError("created_at must be timezone-aware (e.g. datetime.now(timezone.utc))")
    missing = [
        c for c in ("frame_id", "video_id", "frame_number", "frame_timestamp") if c not in frames
    ]
    missing += [f"ranges.{c}" for c in ("start_s", "end_s", "label") if c not in ranges]
    if missing:
        raise ValueError(f"labels_from_ranges: missing column(s) {', '.join(missing)}")
    if frames["video_id"].nunique() > 1:
        raise ValueError("labels_from_ranges expects the frames of one video")
    if frames["frame_timestamp"].isna().any():
        raise ValueError("labels_from_ranges: frames with a missing frame_timestamp")

    used = sorted({str(label).strip() for label in ranges["label"]}, key=schema.id_of)
    if frames.empty or not used:
        return FRAME_LABELS_SCHEMA.empty_table()

    ordered = frames.sort_values("frame_number", kind="stable")
    timestamps = ordered["frame_timestamp"].to_numpy(dtype=np.float64)
    range_labels = ranges["label"].astype(str).str.strip().to_numpy()
    starts = ranges["start_s"].to_numpy(dtype=np.float64) - TIMESTAMP_TOLERANCE_S
    ends = ranges["end_s"].to_numpy(dtype=np.float64) + TIMESTAMP_TOLERANCE_S

    n_frames, n_labels = len(ordered), len(used)
    values = np.zeros((n_frames, n_labels), dtype=bool)
    for column, label in enumerate(used):
        mine = range_labels == label
        inside = (timestamps[:, None] >= starts[mine][None, :]) & (
            timestamps[:, None] <= ends[mine][None, :]
        )
        values[:, column] = inside.any(axis=1)

    def per_frame(column: str) -> np.ndarray:
        return np.repeat(ordered[column].to_numpy(), n_labels)

    created = pd.Timestamp(created_at).tz_convert("UTC")
    n_rows = n_frames * n_labels
    columns = {
        "frame_id": per_frame("frame_id").astype(str),
        "video_id": per_frame("video_id").astype(str),
        "frame_number": per_frame("frame_number").astype(np.int64),
        "frame_timestamp": np.repeat(timestamps, n_labels),
        "label_name": np.tile(np.array(used, dtype=object), n_frames),
        "label_id": np.tile(np.array([schema.id_of(x) for x in used], dtype=np.int32), n_frames),
        "value": values.reshape(-1),
        "float_value": pa.nulls(n_rows, pa.float64()),
        "source": pa.repeat(pa.scalar(SOURCE_SHEET), n_rows),
        "confidence": np.ones(n_rows, dtype=np.float32),
        "annotator": pa.repeat(pa.scalar(annotator), n_rows),
        "reviewed": np.ones(n_rows, dtype=bool),
        "reviewer": pa.nulls(n_rows, pa.string()),
        "date_created": pa.repeat(pa.scalar(created, type=pa.timestamp("us", "UTC")), n_rows),
        "date_modified": pa.repeat(pa.scalar(created, type=pa.timestamp("us", "UTC")), n_rows),
    }
    arrays = [
        pa.array(columns[f.name], type=f.type)
        if not isinstance(columns[f.name], pa.Array)
        else columns[f.name].cast(f.type)
        for f in FRAME_LABELS_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=FRAME_LABELS_SCHEMA)
