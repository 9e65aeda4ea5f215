"""The last look before a dataset leaves: scan every exported text, table and file name for PHI,
and OCR a sample of the exported images.

:func:`scan_export` reads the whole export folder as written and reports where something looks
like PHI, by rule and place, never the value (findings go into check metadata):

- **known identifier**: one of the identifiers the caller passes (original patient ids, names,
  birth dates, original file names and their stems:
  :func:`medvid.deid.names.known_identifiers`), matched case-insensitively by
  :class:`medvid.deid.phi.IdentifierMatcher`'s token rule: as a whole token, never touching
  another letter or digit, so a 4-digit patient id does not match inside a 16-hex content id,
  a frame number or a decimal. Identifiers of fewer than 3 letters and digits are not looked
  for (they would match everywhere).
- **date**, **time**, **name field**, **id field**, **id-like number** (6+ digits): the
  patterns of :func:`medvid.deid.phi.pattern_phi_hits`.

Where: every CSV cell and header, every JSON string and key, every line of other text files
(``.md``, ``.txt``...), the name of every file and folder, and the text OCR reads in a seeded
sample of the images (any engine with ``read(rgb) -> list[OcrBox]``). A file that is neither
text nor an image, or that cannot be decoded, is a finding too: what cannot be read cannot be
cleared.

What medvid writes itself never fires (the rule is exact, so anything else still does):

- medvid's id tokens are blanked before any rule runs: frame ids ``<16 hex>-<7 digits>``,
  sha256 (64 hex), content ids (16 lower-case hex: videos, datasets, models), patient
  pseudonyms ``P`` + 11 upper-case hex, study and instance keys ``s``/``i`` + 15 hex, and the
  export's dates, which are years only (``YYYY-01-01T00:00:00.000000+00:00``, see
  :mod:`medvid.export.dataset`). A 16-digit number is therefore taken for a content id.
- a value made only of medvid's vocabulary once those tokens are gone is skipped whole: column
  and key names, split and source names, ``true``/``false``, folder and file names such as
  ``video_<id>/frame_<frame id>.jpg`` (:data:`MEDVID_WORDS`);
- columns that medvid fills with numbers it computed (``annotation_id``, ``frame_number``,
  ``frame_timestamp``, ``label_id``, ``float_value``, ``information_source_id``; the geometry
  of ``images.csv``) are skipped when they hold a number, and ``images.csv``'s ``StudyDate``
  when it holds 8 digits: it is shifted per patient by the DICOM stage (PS3.15 Annex E option
  113107). JSON numbers are skipped: medvid writes every value that came from an input as a
  string (attributes, ids, labels), so numbers are its own counts and positions.
- names of columns and keys are checked for patterns only, not identifiers (they are the
  schema, label names and attribute names, not patient values), and the export's label names
  (``manifest.json`` ``label_schema`` and their folders) are not identifiers when they are a
  whole value: "Stone" is a label, even if a patient is called Stone. Patterns still apply.
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from medvid.deid.phi import IdentifierMatcher, pattern_phi_hits
from medvid.errors import CorruptMediaError
from medvid.export.annotations import ANNOTATION_COLUMNS
from medvid.export.dataset import ANNOTATIONS_CSV, MANIFEST_JSON
from medvid.export.dataset_file import DOCUMENT_KEYS
from medvid.export.images import IMAGE_COLUMNS, IMAGES_CSV
from medvid.images import read_rgb

TEXT_SUFFIXES: Final = frozenset(
    {".csv", ".tsv", ".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".xml", ".html"}
)
IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
#: Images OCR'd by default.
DEFAULT_OCR_SAMPLE: Final = 16
#: Places shown per finding before "+N more".
_SHOWN: Final = 5

_MEDVID_TOKEN: Final = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"[0-9a-f]{16}-\d{7}"
    r"|[0-9a-f]{64}"
    r"|[0-9a-f]{16}"
    r"|P[0-9A-F]{11}"
    r"|[si][0-9a-f]{15}"
    r"|(?:19|20)\d{2}-01-01T00:00:00(?:\.000000)?\+00:00"
    r")(?![A-Za-z0-9])"
)
_EXTENSION: Final = re.compile(r"\.(?:jpe?g|png|csv|json)$", re.IGNORECASE)

#: Words medvid writes on its own: column names, JSON keys, split, source and folder names,
#: fixed values. Compared case-insensitively with a whole value (or path component).
_VOCABULARY: Final = """
    format_version dataset_name medvid_version created config sampling_config label_schema
    imagefolder_classes information_sources n_annotations n_frames n_videos counts
    source_video_sha256 n_images images_per_split excluded files
    val_ratio seed imagefolder_skip include_dead include_disturbed link_mode
    positive_only_imagefolder hardlink copy labels splits imagefolder total
    frames annotations positives videos patients videos_without_patient
    dead_frames disturbed_frames dead_annotations disturbed_annotations
    annotations_without_frame annotations_csv annotations_json splits_csv
    frames_dir imagefolder_dir imagefolder_csv multilabel_json dataset_json images_dir images_csv
    image image_multilabel_classification summary frame_annotations
    positive_frames attributes format label_vector label_mask path medvid.multilabel/1
    train val true false sheet labelbox segment manual model labels_sheet labeller negative
    dicom detected none video frame study images multilabel dataset manifest
    frame_orientations_csv n_frames_with_orientation text
"""
#: Words medvid writes on its own: column names, JSON keys (manifest.json, dataset.json,
#: multilabel.json), split, source and folder names, fixed values. Compared
#: case-insensitively with a whole value or path component.
MEDVID_WORDS: Final = frozenset(
    w.casefold()
    for w in (*ANNOTATION_COLUMNS, *IMAGE_COLUMNS, *DOCUMENT_KEYS, *_VOCABULARY.split())
)
#: Cells medvid fills itself, skipped when they hold what medvid writes there.
_INT: Final = re.compile(r"-?\d*")
_FLOAT: Final = re.compile(r"(?:-?\d+(?:\.\d+)?(?:e[+-]?\d+)?)?", re.IGNORECASE)
_DICOM_DATE: Final = re.compile(r"(?:\d{8})?")
_COLUMN_FORMATS: Final[dict[tuple[str, str], re.Pattern[str]]] = {
    **{
        (ANNOTATIONS_CSV, c): _INT
        for c in (
            "annotation_id",
            "frame_number",
            "label_id",
            "information_source_id",
            "crop_x0",
            "crop_y0",
            "crop_x1",
            "crop_y1",
        )
    },
    **{(ANNOTATIONS_CSV, c): _FLOAT for c in ("frame_timestamp", "float_value")},
    **{
        (IMAGES_CSV, c): _INT
        for c in (
            "width",
            "height",
            "region_x0",
            "region_y0",
            "region_x1",
            "region_y1",
            "crop_x0",
            "crop_y0",
            "crop_x1",
            "crop_y1",
            "PhysicalUnitsXDirection",
            "PhysicalUnitsYDirection",
        )
    },
    **{(IMAGES_CSV, c): _FLOAT for c in ("PhysicalDeltaX", "PhysicalDeltaY")},
    (IMAGES_CSV, "StudyDate"): _DICOM_DATE,
}

KNOWN_IDENTIFIER: Final = "known identifier"


class _Ocr(Protocol):
    def read(self, image: np.ndarray) -> list[Any]: ...


class _Rules:
    """The rules of the module docstring, with a cache (exports repeat values a lot)."""

    def __init__(self, identifiers: Iterable[str], label_names: Iterable[str]) -> None:
        self.matcher = IdentifierMatcher(identifiers)
        self.labels = {str(n).strip().casefold() for n in label_names}
        self._cache: dict[tuple[str, bool], tuple[str, ...]] = {}

    def check(self, text: str, *, identifiers: bool = True) -> tuple[str, ...]:
        key = (text, identifiers)
        if key not in self._cache:
            self._cache[key] = self._check(text, identifiers)
        return self._cache[key]

    def _check(self, text: str, identifiers: bool) -> tuple[str, ...]:
        if not text.strip():
            return ()
        blanked = _MEDVID_TOKEN.sub(" ", text)
        if _only_medvid_words(blanked):
            return ()
        reasons = []
        # identifiers per path component, so a label folder in "train/<label>/x.jpg" counts
        # as the label it is; patterns on the whole text ("15/02/2024" is one date)
        if identifiers and any(
            part.strip().casefold() not in self.labels
            and not _only_medvid_words(part)
            and self.matcher.search(part)
            for part in blanked.split("/")
        ):
            reasons.append(KNOWN_IDENTIFIER)
        reasons += pattern_phi_hits(blanked)
        return tuple(reasons)

    def ocr(self, text: str) -> tuple[str, ...]:
        reasons = [KNOWN_IDENTIFIER] if self.matcher.search(text) else []
        return tuple(reasons + pattern_phi_hits(text))


def _only_medvid_words(blanked: str) -> bool:
    for part in blanked.split("/"):
        word = _EXTENSION.sub("", part.strip()).strip(" _:").casefold()
        if word and word not in MEDVID_WORDS:
            return False
    return True


class _Findings:
    """Findings grouped by (file, place, rule), keeping the first places in order."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str, str], list[str]] = {}

    def add(self, file: str, place: str, rule: str, where: str) -> None:
        self._groups.setdefault((file, place, rule), []).append(where)

    def lines(self) -> list[str]:
        out = []
        for (file, place, rule), where in self._groups.items():
            distinct = list(dict.fromkeys(where))[:_SHOWN]
            shown = ", ".join(distinct)
            more = f" (+{len(where) - len(distinct)} more)" if len(where) > len(distinct) else ""
            out.append(f"{file}{' ' + place if place else ''}: {rule} at {shown}{more}")
        return out


def _label_names(root: Path) -> list[str]:
    try:
        manifest = json.loads((root / MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(manifest, dict):
        return []
    names = list((manifest.get("label_schema") or {}).keys())
    return names + [str(v) for v in (manifest.get("imagefolder_classes") or {}).values()]


def _scan_names(root: Path, paths: list[Path], rules: _Rules, findings: _Findings) -> None:
    for path in paths:
        relative = path.relative_to(root)
        # the stem too: "20240215.txt" hides its number from the id-like rule behind the dot
        both = (*rules.check(relative.name), *rules.check(path.stem))
        reasons = tuple(dict.fromkeys(both))
        if not reasons:
            continue
        parents = ["<name>" if rules.check(part) else part for part in relative.parent.parts]
        for reason in reasons:
            findings.add("/".join([*parents, "<name>"]), "", reason, "a file or folder name")


def _scan_csv(name: str, text: str, rules: _Rules, findings: _Findings) -> None:
    delimiter = "\t" if name.lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, [])
    shown_columns = []
    for number, cell in enumerate(header, start=1):
        reasons = rules.check(cell, identifiers=False)
        for reason in reasons:
            findings.add(name, "header", reason, f"column {number}")
        shown_columns.append(f"column {number}" if reasons else f"column {cell!r}")
    top_level = name if "/" not in name else ""
    for row_number, row in enumerate(reader, start=2):
        for index, cell in enumerate(row):
            column = header[index] if index < len(header) else ""
            form = _COLUMN_FORMATS.get((top_level, column))
            if form is not None and form.fullmatch(cell):
                continue
            place = shown_columns[index] if index < len(shown_columns) else f"column {index + 1}"
            for reason in rules.check(cell):
                findings.add(name, place, reason, f"row {row_number}")


def _json_place(path: list[str]) -> str:
    return "$" + "".join(path)


def _scan_json(name: str, document: Any, rules: _Rules, findings: _Findings) -> None:
    stack: list[tuple[Any, list[str], list[str]]] = [(document, [], [])]
    while stack:
        value, pattern, concrete = stack.pop()
        if isinstance(value, dict):
            items = []
            for key, item in value.items():
                key = str(key)
                reasons = rules.check(key, identifiers=False)
                shown = "<key>" if reasons else key
                for reason in reasons:
                    findings.add(name, _json_place(pattern) + ".<key>", reason, "a key")
                generic = "*" if _MEDVID_TOKEN.fullmatch(key) else shown
                items.append((item, [*pattern, f".{generic}"], [*concrete, f".{shown}"]))
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend(
                (item, [*pattern, "[*]"], [*concrete, f"[{i}]"])
                for i, item in reversed(list(enumerate(value)))
            )
        elif isinstance(value, str):
            for reason in rules.check(value):
                findings.add(name, _json_place(pattern), reason, _json_place(concrete))


def _scan_lines(name: str, text: str, rules: _Rules, findings: _Findings) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        for reason in rules.check(line):
            findings.add(name, "", reason, f"line {number}")


def _scan_file(root: Path, path: Path, rules: _Rules, findings: _Findings) -> None:
    name = path.relative_to(root).as_posix()
    suffix = path.suffix.lower()
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        kind = "not UTF-8 text" if suffix in TEXT_SUFFIXES else "neither text nor an image"
        findings.add(name, "", f"{kind}, cannot be scanned", "the whole file")
        return
    if suffix in (".csv", ".tsv"):
        _scan_csv(name, text, rules, findings)
        return
    if suffix == ".json":
        try:
            document = json.loads(text)
        except ValueError:
            _scan_lines(name, text, rules, findings)  # unparsable: read it as lines
            return
        _scan_json(name, document, rules, findings)
        return
    _scan_lines(name, text, rules, findings)


def _unique_images(root: Path, files: list[Path]) -> list[Path]:
    """Image files, one per inode (``imagefolder/`` hard-links ``frames/``), by path."""
    seen: set[tuple[int, int]] = set()
    images = []
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        stat = path.stat()
        if (stat.st_dev, stat.st_ino) in seen:
            continue
        seen.add((stat.st_dev, stat.st_ino))
        images.append(path)
    return images


def _scan_images(
    root: Path,
    images: list[Path],
    engine: _Ocr,
    sample: int,
    seed: int,
    rules: _Rules,
    findings: _Findings,
) -> None:
    chosen = sorted(random.Random(seed).sample(images, min(sample, len(images))))
    for path in chosen:
        name = path.relative_to(root).as_posix()
        try:
            rgb = read_rgb(path)
        except CorruptMediaError:
            findings.add(name, "", "image cannot be decoded, cannot be scanned", "the whole file")
            continue
        for box in engine.read(rgb):
            for reason in rules.ocr(str(box.text)):
                place = f"x={box.x} y={box.y} w={box.w} h={box.h}"
                findings.add(name, "(OCR)", reason, place)


def scan_export(
    out_dir: str | Path,
    *,
    identifiers: Iterable[str],
    ocr_engine: _Ocr | None = None,
    ocr_sample: int = DEFAULT_OCR_SAMPLE,
    seed: int = 0,
) -> list[str]:
    """Where an export folder holds something that looks like PHI (rules in the module
    docstring); ``[]`` when nothing does.

    Args:
        out_dir: the dataset folder written by
            :func:`medvid.export.dataset.write_training_dataset`.
        identifiers: every identifier medvid knows (PHI; from the protected zone, e.g.
            :func:`medvid.deid.names.known_identifiers`); matched with the token rule,
            3+ letters and digits.
        ocr_engine: reads ``(H, W, 3) uint8 RGB`` images into boxes with ``text``, ``x``,
            ``y``, ``w``, ``h`` (:class:`medvid.ocr.OcrEngine`); ``None``: no image is read.
        ocr_sample: how many distinct image files to OCR (all when fewer).
        seed: seed of the sample: the same export and seed OCR the same files.

    Returns findings, one per (file, place, rule), e.g. ``"splits.csv column 'patient_id':
    known identifier at row 2, row 3"`` or ``"frames/video_<id>/frame_<id>.jpg (OCR): date at
    x=10 y=5 w=80 h=12"``; never a value that fired (offending names are shown as ``<name>``
    or ``<key>``). Files in path order, then the OCR findings. Never raises for a bad file (it
    becomes a finding); ``FileNotFoundError`` when ``out_dir`` is not a folder.
    """
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"not an export folder: {root}")
    rules = _Rules(identifiers, _label_names(root))
    findings = _Findings()
    entries = sorted(root.rglob("*"))
    _scan_names(root, entries, rules, findings)
    files = [p for p in entries if p.is_file()]
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            _scan_file(root, path, rules, findings)
    if ocr_engine is not None and ocr_sample > 0:
        images = _unique_images(root, files)
        _scan_images(root, images, ocr_engine, ocr_sample, seed, rules, findings)
    return findings.lines()
