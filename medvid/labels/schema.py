"""The frame-label table shared by every label source, and the project's label schema.

Every source of labels in medvid (labels sheets, segment sheets, Labelbox, model predictions,
manual edits) produces the same long table, :data:`FRAME_LABELS_SCHEMA`: one row per
(frame, label, source) with a boolean ``value`` and, for models, a probability in
``float_value``. The export stage consumes only this table, so a new label source needs no
change downstream. The columns follow the frame-annotation table of the endoscopy exporter that
our users know (seed 004: ``label_id``, ``label_name``, ``value``, ``float_value``,
``annotator``, information source, ``date_created``/``date_modified``).

Label ids come from a :class:`LabelSchema`: an ordered mapping of label names to small
non-negative ``int32`` ids that a project keeps fixed, so ``label_id`` means the same class in
every export and model of the project.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import pandas as pd
import pyarrow as pa

from medvid.errors import MedvidInputError

#: Source of labels read from a labels sheet (time ranges per video).
SOURCE_SHEET: Final = "sheet"
#: Source of labels imported from Labelbox.
SOURCE_LABELBOX: Final = "labelbox"
#: Source of labels materialised from a segments sheet (frame or time ranges with a value).
SOURCE_SEGMENT: Final = "segment"
#: Source of labels set or corrected by a person inside medvid.
SOURCE_MANUAL: Final = "manual"
#: Prefix of model sources: ``"model:<model_id>"``.
MODEL_SOURCE_PREFIX: Final = "model:"
#: The sources written by people (confidence 1.0); everything else is ``model:<model_id>``.
HUMAN_SOURCES: Final = (SOURCE_SHEET, SOURCE_LABELBOX, SOURCE_SEGMENT, SOURCE_MANUAL)

_UTC_US = pa.timestamp("us", tz="UTC")

#: Arrow schema of a frame-label table (one row per frame, label and source).
#:
#: - ``frame_id`` ``<video_id>-<frame_number:07d>`` (:func:`medvid.ids.frame_id`)
#: - ``video_id`` 16 hex digits (:func:`medvid.ids.content_id`)
#: - ``frame_number`` int64, 0-based index in the original video (decode order)
#: - ``frame_timestamp`` float64 seconds from the start of the original video
#: - ``label_name`` / ``label_id`` (int32) from the project's :class:`LabelSchema`
#: - ``value`` bool: the label applies to the frame (for models: probability >= threshold)
#: - ``float_value`` float64, nullable: a model's probability or a graded value; null for
#:   plain human yes/no labels
#: - ``source`` ``sheet`` | ``labelbox`` | ``segment`` | ``manual`` | ``model:<model_id>``
#: - ``confidence`` float32 in [0, 1]; 1.0 for human sources
#: - ``annotator`` who or what produced the row (a person, a sheet name, a model id)
#: - ``reviewed`` bool: a person has checked the row; ``reviewer`` nullable, who did
#: - ``date_created`` / ``date_modified`` timestamp[us, tz=UTC]
FRAME_LABELS_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("frame_id", pa.string(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("frame_number", pa.int64(), nullable=False),
        pa.field("frame_timestamp", pa.float64(), nullable=False),
        pa.field("label_name", pa.string(), nullable=False),
        pa.field("label_id", pa.int32(), nullable=False),
        pa.field("value", pa.bool_(), nullable=False),
        pa.field("float_value", pa.float64(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("annotator", pa.string(), nullable=False),
        pa.field("reviewed", pa.bool_(), nullable=False),
        pa.field("reviewer", pa.string(), nullable=True),
        pa.field("date_created", _UTC_US, nullable=False),
        pa.field("date_modified", _UTC_US, nullable=False),
    ]
)

#: Column names of :data:`FRAME_LABELS_SCHEMA`, in order.
FRAME_LABELS_COLUMNS: Final[tuple[str, ...]] = tuple(FRAME_LABELS_SCHEMA.names)

_INT32_MAX = 2**31 - 1


class UnknownLabelError(MedvidInputError):
    """A label name is not part of the project's label schema."""


def empty_frame_labels() -> pa.Table:
    """A frame-label table with zero rows and :data:`FRAME_LABELS_SCHEMA`."""
    return FRAME_LABELS_SCHEMA.empty_table()


def model_source(model_id: str) -> str:
    """The ``source`` value of rows predicted by a model: ``"model:<model_id>"``."""
    if not model_id or not model_id.strip():
        raise ValueError("model_id must be a non-empty string")
    return f"{MODEL_SOURCE_PREFIX}{model_id}"


def model_id_of_source(source: str) -> str | None:
    """The model id of a ``"model:<model_id>"`` source, ``None`` for a human source."""
    if source.startswith(MODEL_SOURCE_PREFIX):
        return source[len(MODEL_SOURCE_PREFIX) :]
    return None


def is_valid_source(source: str) -> bool:
    """True for ``sheet``, ``labelbox``, ``segment``, ``manual`` and ``model:<non-empty id>``."""
    if source in HUMAN_SOURCES:
        return True
    model_id = model_id_of_source(source)
    return bool(model_id and model_id.strip())


def frame_labels_from_pandas(df: pd.DataFrame) -> pa.Table:
    """Convert a DataFrame with the columns of :data:`FRAME_LABELS_SCHEMA` to an Arrow table.

    Extra columns are dropped, columns are put in schema order and cast to the schema's types
    (dates are parsed as UTC). Raises ``ValueError`` when a column is missing, a required column
    holds nulls, or a ``source`` is not one of the known kinds.
    """
    missing = [name for name in FRAME_LABELS_COLUMNS if name not in df.columns]
    if missing:
        raise ValueError(f"frame-label table lacks column(s): {', '.join(missing)}")
    out = df.loc[:, list(FRAME_LABELS_COLUMNS)].copy()
    for name in ("date_created", "date_modified"):
        out[name] = pd.to_datetime(out[name], utc=True)
    bad_sources = sorted({str(s) for s in out["source"].dropna() if not is_valid_source(str(s))})
    if bad_sources:
        raise ValueError(f"unknown label source(s): {', '.join(bad_sources)}")
    try:
        return pa.Table.from_pandas(out, schema=FRAME_LABELS_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"frame-label table does not fit FRAME_LABELS_SCHEMA: {exc}") from exc


_NAME_RE = re.compile(r"\S")


@dataclass(frozen=True)
class LabelSchema:
    """The project's labels: names mapped to stable ``int32`` ids, ordered by id.

    ``ids`` maps each label name (non-empty, no surrounding whitespace) to a distinct id in
    ``[0, 2**31)``. Build one with :meth:`from_names` for a new project; persist it with
    :meth:`to_dict` and reload it with :meth:`from_dict` so ids never move, and add labels with
    :meth:`extend`, which gives new names ids after the largest existing one.
    """

    ids: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name, label_id in self.ids.items():
            if not isinstance(name, str) or not _NAME_RE.search(name) or name != name.strip():
                raise ValueError(f"invalid label name {name!r}")
            if isinstance(label_id, bool) or not isinstance(label_id, int):
                raise ValueError(f"label id of {name!r} must be an int, got {label_id!r}")
            if not 0 <= label_id <= _INT32_MAX:
                raise ValueError(f"label id of {name!r} out of int32 range: {label_id}")
            if label_id in seen:
                raise ValueError(f"labels {seen[label_id]!r} and {name!r} share id {label_id}")
            seen[label_id] = name
        # Freeze in id order so iteration, equality and to_dict() are deterministic.
        ordered = dict(sorted(self.ids.items(), key=lambda item: item[1]))
        object.__setattr__(self, "ids", ordered)

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelSchema:
        """Ids ``0..n-1`` for the distinct names in sorted order (whitespace stripped)."""
        unique = sorted({str(name).strip() for name in names})
        return cls({name: index for index, name in enumerate(unique)})

    @classmethod
    def from_dict(cls, ids: Mapping[str, int]) -> LabelSchema:
        """Reload a schema saved with :meth:`to_dict`."""
        return cls({str(name): int(label_id) for name, label_id in ids.items()})

    def to_dict(self) -> dict[str, int]:
        """``{label_name: label_id}`` in id order (JSON-serialisable)."""
        return dict(self.ids)

    def extend(self, names: Iterable[str]) -> LabelSchema:
        """A schema with the new names (sorted) appended after the largest existing id."""
        next_id = max(self.ids.values(), default=-1) + 1
        added = sorted({str(name).strip() for name in names} - set(self.ids))
        ids = dict(self.ids)
        for offset, name in enumerate(added):
            ids[name] = next_id + offset
        return LabelSchema(ids)

    @property
    def names(self) -> tuple[str, ...]:
        """Label names ordered by id."""
        return tuple(self.ids)

    def id_of(self, name: str) -> int:
        """The id of a label name; raises :class:`UnknownLabelError` for an unknown name."""
        try:
            return self.ids[name]
        except KeyError:
            known = ", ".join(self.ids) or "(none)"
            raise UnknownLabelError(
                f"label {name!r} is not in the project's label schema (known: {known})"
            ) from None

    def name_of(self, label_id: int) -> str:
        """The name of a label id; raises ``KeyError`` for an unknown id."""
        for name, known_id in self.ids.items():
            if known_id == label_id:
                return name
        raise KeyError(label_id)

    def __contains__(self, name: object) -> bool:
        return name in self.ids

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)
