"""Reading a DICOM instance's header into one typed row of the ``dicom_instances`` table.

The header is parsed once with ``pydicom.dcmread(..., stop_before_pixels=True)``: the pixel data
is neither read nor decoded, so the cost stays that of a plain pydicom header read (measured in
``benchmarks/dicom.py``). The reader stops *at* the Pixel Data element, which lets it check,
without reading the pixels, that the element is there and (for native transfer syntaxes) that
the file is long enough to hold it, so truncated files are caught at this stage.

Field names are DICOM keywords (PS3.6). Units: FrameTime in milliseconds, CineRate and
RecommendedDisplayFrameRate in frames per second, PhysicalDeltaX/Y in the units of
PhysicalUnitsX/YDirection (3 = cm, PS3.3 C.8.5.5.1.15), region coordinates in pixels with
inclusive maxima (PS3.3 C.8.5.5.1.2).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings as _warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.charset import python_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_sequence
from pydicom.uid import UID

from medvid.errors import CorruptMediaError, EmptyFileError, UnsupportedMediaError

#: Charset substituted for a malformed SpecificCharacterSet (e.g. 'ISO_IR' without a number in
#: Sonoque exports). ISO_IR 100 (Latin-1) decodes every byte, so no text element can fail.
FALLBACK_CHARACTER_SET = "ISO_IR 100"

_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}  # Pixel Data, Float, Double Float
_LONG_LENGTH_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_DEFLATED = "1.2.840.10008.1.2.1.99"
#: Bytes read to parse a header from memory; a longer header is parsed from the file instead.
HEADER_READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class UltrasoundRegion:
    """One item of SequenceOfUltrasoundRegions (PS3.3 C.8.5.5).

    Coordinates are pixels; ``max_x1``/``max_y1`` are inclusive as in DICOM. Physical deltas
    are in the units given by ``units_x``/``units_y`` (3 = cm, 4 = seconds).
    """

    min_x0: int
    min_y0: int
    max_x1: int
    max_y1: int
    physical_delta_x: float | None
    physical_delta_y: float | None
    units_x: int | None
    units_y: int | None
    spatial_format: int | None
    data_type: int | None

    @property
    def area(self) -> int:
        return max(0, self.max_x1 - self.min_x0 + 1) * max(0, self.max_y1 - self.min_y0 + 1)

    def box(self, width: int | None = None, height: int | None = None) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` with exclusive ``x1``/``y1``, clipped to ``width``x``height``
        when given (some reduced copies keep the region of the original, larger image)."""
        x0, y0, x1, y1 = self.min_x0, self.min_y0, self.max_x1 + 1, self.max_y1 + 1
        if width is not None:
            x0, x1 = min(max(x0, 0), width), min(max(x1, 0), width)
        if height is not None:
            y0, y1 = min(max(y0, 0), height), min(max(y1, 0), height)
        return x0, y0, x1, y1


_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "SH", "ST", "TM", "UC", "UI"}
_BINARY_FORMATS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FD": "d", "FL": "f"}


def _raw(ds: Dataset | _Elements, keyword: str, encoding: str = "latin-1") -> Any:
    """Value of ``keyword`` read straight from pydicom's raw element when possible.

    pydicom converts raw elements lazily and that conversion (value validation, charset
    handling, MultiValue wrappers) costs as much as parsing the header; for the handful of
    text and binary fields of an :class:`InstanceRecord` a direct decode is enough. Text comes
    back stripped (a list when multi-valued), binary numbers as int/float (a list when
    multi-valued), sequences and anything unusual through pydicom's own conversion. Pass an
    :class:`_Elements` to read many keywords of one dataset.
    """
    tag = tag_for_keyword(keyword)
    if tag is None:
        return None
    if isinstance(ds, _Elements):
        raw, ds = ds.by_tag.get(tag), ds.dataset
    else:
        raw = ds.get_item(tag)
    if raw is None:
        return None
    if not isinstance(raw, RawDataElement):
        return raw.value  # converted already (e.g. a sequence read at parse time)
    if raw.value is None:  # deferred read
        return ds[tag].value
    vr = raw.VR or dictionary_VR(tag)
    data = raw.value
    if vr in _TEXT_VRS and isinstance(data, bytes):
        text = data.decode("ascii" if vr in ("UI", "CS", "DS", "IS") else encoding, "replace")
        values = (
            [v.strip(" \x00") for v in text.split("\\")]
            if vr not in ("LT", "ST")
            else [text.strip(" \x00")]
        )
        return values[0] if len(values) == 1 else values
    if vr == "SQ" and isinstance(data, bytes):
        # pydicom's item access would convert the whole element and post-process each item;
        # reading the items is enough here (their elements stay raw, decoded as above).
        return read_sequence(
            io.BytesIO(data), raw.is_implicit_VR, raw.is_little_endian, len(data), encoding
        )
    fmt = _BINARY_FORMATS.get(vr)
    # standard sizes ("<"): a bare "L" is the platform's 8-byte long, not DICOM's 4-byte UL
    if fmt is not None and isinstance(data, bytes) and len(data) % struct.calcsize("<" + fmt) == 0:
        count = len(data) // struct.calcsize("<" + fmt)
        values = struct.unpack(("<" if raw.is_little_endian else ">") + fmt * count, data)
        return values[0] if count == 1 else list(values)
    return ds[tag].value


class _Elements:
    """A dataset's top-level elements by plain ``int`` tag, built once: pydicom's own lookup
    converts the key to a ``Tag`` every time, which costs more than the decode when a record
    reads thirty keywords. Do not keep it across changes to the dataset."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.by_tag = {int(tag): element for tag, element in dataset.items()}


def _int_or_none(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _float_or_none(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def ultrasound_regions(ds: Dataset) -> list[UltrasoundRegion]:
    """All items of SequenceOfUltrasoundRegions (empty list when absent)."""
    regions = []
    for dataset in _raw(ds, "SequenceOfUltrasoundRegions") or []:
        item = _Elements(dataset)
        try:
            regions.append(
                UltrasoundRegion(
                    min_x0=int(_raw(item, "RegionLocationMinX0")),
                    min_y0=int(_raw(item, "RegionLocationMinY0")),
                    max_x1=int(_raw(item, "RegionLocationMaxX1")),
                    max_y1=int(_raw(item, "RegionLocationMaxY1")),
                    physical_delta_x=_float_or_none(_raw(item, "PhysicalDeltaX")),
                    physical_delta_y=_float_or_none(_raw(item, "PhysicalDeltaY")),
                    units_x=_int_or_none(_raw(item, "PhysicalUnitsXDirection")),
                    units_y=_int_or_none(_raw(item, "PhysicalUnitsYDirection")),
                    spatial_format=_int_or_none(_raw(item, "RegionSpatialFormat")),
                    data_type=_int_or_none(_raw(item, "RegionDataType")),
                )
            )
        except (TypeError, ValueError):
            continue  # an item without a location is useless as a crop box
    return regions


def primary_ultrasound_region(ds: Dataset) -> UltrasoundRegion | None:
    """The imaging region: the first region with RegionSpatialFormat 1 (2D tissue or flow),
    otherwise the largest region; None without SequenceOfUltrasoundRegions."""
    regions = ultrasound_regions(ds)
    for region in regions:
        if region.spatial_format == 1:
            return region
    return max(regions, key=lambda r: r.area) if regions else None


_NTSC_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))

DEFAULT_CINE_FPS = Fraction(1)
"""Rate given to a multi-frame instance whose header has no FrameTime, CineRate or
RecommendedDisplayFrameRate (e.g. a few palette-colour frames saved together): one frame per
second, so each frame stays on screen long enough to be read and sampled like a still; the
choice is recorded as ``fps_source: default`` in ``dicom_pixels``."""


def cine_fps(ds: Dataset) -> Fraction | None:
    """Frames per second of a cine loop as an exact fraction, or None when the header has none.

    Source, in order: FrameTime (ms per frame, PS3.3 C.7.6.5), CineRate (frames/s),
    RecommendedDisplayFrameRate (frames/s). A rate within 0.05 % of an integer or of an NTSC
    rate (24000/1001, 30000/1001, 60000/1001) is snapped to it (FrameTime 33.333 ms -> 30 fps,
    33.3667 ms -> 30000/1001); otherwise the nearest fraction with denominator <= 1001.
    """
    fps: float | None = None
    frame_time = _float_or_none(_raw(ds, "FrameTime"))
    if frame_time and frame_time > 0:
        fps = 1000.0 / frame_time
    else:
        for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
            rate = _float_or_none(_raw(ds, keyword))
            if rate and rate > 0:
                fps = rate
                break
    if fps is None:
        return None
    for candidate in (Fraction(round(fps)), *_NTSC_RATES):
        if candidate > 0 and abs(fps - candidate) / fps < 5e-4:
            return candidate
    return Fraction(fps).limit_denominator(1001)


@dataclass
class DicomHeader:
    """A parsed header: the pydicom dataset (no pixel data) plus what was learnt reading it.

    ``dataset`` may be de-identified in place before :func:`instance_record` turns it into a
    row, so the table holds de-identified values only.
    """

    path: Path
    dataset: Dataset
    sha256: str | None
    size_bytes: int
    has_pixel_data: bool
    warnings: list[str] = field(default_factory=list)

    @property
    def transfer_syntax(self) -> UID:
        return UID(self.dataset.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))


@lru_cache(maxsize=64)
def _decoder_status(tsyntax: str) -> str | None:
    """None if pixel data in ``tsyntax`` can be decoded here, else the reason why not."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(UID(tsyntax))
    except NotImplementedError:
        return f"transfer syntax {UID(tsyntax).name} ({tsyntax}) has no pixel decoder"
    if not decoder.is_available:
        return f"transfer syntax {UID(tsyntax).name} needs a decoding plugin that is not installed"
    return None


def _fix_character_set(ds: Dataset, warnings: list[str]) -> None:
    element = _raw(ds, "SpecificCharacterSet")
    if element is None:
        return
    values = [element] if isinstance(element, str) else list(element)
    bad = [v for v in values if v.strip() not in python_encoding]
    if bad:
        joined = "\\".join(values)
        warnings.append(
            f"invalid SpecificCharacterSet {joined!r}; text decoded as {FALLBACK_CHARACTER_SET}"
        )
        ds.SpecificCharacterSet = FALLBACK_CHARACTER_SET


def _probe_pixel_element(stream: BinaryIO, tsyntax: UID, size: int) -> tuple[bool, int | None, int]:
    """At the position where dcmread stopped: (pixel element present, value length or None if
    undefined/encapsulated, offset of the value's end if defined)."""
    start = stream.tell()
    head = stream.read(12)
    if len(head) < 8:
        return False, None, start
    endian = "<" if tsyntax.is_little_endian else ">"
    group, elem = struct.unpack(endian + "HH", head[:4])
    if ((group << 16) | elem) not in _PIXEL_TAGS:
        return False, None, start
    if tsyntax.is_implicit_VR:
        (length,) = struct.unpack(endian + "L", head[4:8])
        header_len = 8
    elif head[4:6] in _LONG_LENGTH_VRS:
        if len(head) < 12:
            return True, 0, size + 1
        (length,) = struct.unpack(endian + "L", head[8:12])
        header_len = 12
    else:
        (length,) = struct.unpack(endian + "H", head[6:8])
        header_len = 8
    if length == _UNDEFINED_LENGTH:
        return True, None, start
    return True, length, start + header_len + length


def read_header(
    path: str | Path,
    *,
    sha256: str | None = None,
    compute_sha256: bool = True,
    require_pixels: bool = True,
    keywords: Sequence[str] | None = None,
) -> DicomHeader:
    """Parse the header of a DICOM file without reading its pixel data.

    Args:
        path: a DICOM file (PS3.10 with preamble, or a bare dataset that has a SOPClassUID).
        sha256: the file's hex sha256 if the caller already has it (the landing zone hashes
            every file); otherwise it is computed from the same single read of the file when
            ``compute_sha256`` is true.
        require_pixels: raise when there is no pixel data or it cannot be decoded here.
        keywords: parse only these top-level elements (pydicom ``specific_tags``: the values of
            other elements are skipped over, not read); ``None`` parses the whole header. A
            header parsed this way is for reading, not for de-identification.

    Raises:
        EmptyFileError: zero bytes.
        UnsupportedMediaError: not DICOM; no Pixel Data element; a transfer syntax without an
            installed decoder.
        CorruptMediaError: the header cannot be parsed (damaged or cut short) or the file ends
            before the end of its native pixel data.
    """
    path = Path(path)
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        raise UnsupportedMediaError(f"cannot read {path.name}: {exc.strerror}") from exc
    if size == 0:
        raise EmptyFileError(f"{path.name} has zero bytes")
    tags = _tags_for(keywords)
    warnings: list[str] = []
    with open(path, "rb") as raw, _warnings.catch_warnings():
        # pydicom warns once per malformed charset; it is recorded in ``warnings`` instead.
        _warnings.filterwarnings("ignore", message="Unknown encoding", category=UserWarning)
        if sha256 is None and compute_sha256:
            data = raw.read()
            sha256 = hashlib.sha256(data).hexdigest()
            parsed = _parse_and_probe(io.BytesIO(data), path, tags, size)
        else:
            # Headers are small: parse from memory, which is faster than pydicom's many small
            # reads on a file. The result counts only if the Pixel Data element was reached
            # inside the buffer; otherwise the header is longer and the file is parsed whole.
            head = raw.read(HEADER_READ_BYTES)
            parsed = None
            if len(head) < size:
                try:
                    parsed = _parse_and_probe(io.BytesIO(head), path, tags, size)
                except (CorruptMediaError, UnsupportedMediaError):
                    parsed = None
                if parsed is not None and not parsed[1]:
                    parsed = None
                raw.seek(0)
            if parsed is None:
                parsed = _parse_and_probe(
                    raw if len(head) < size else io.BytesIO(head), path, tags, size
                )
        ds, has_pixels, length, end = parsed
        _fix_character_set(ds, warnings)
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    if length is not None and end > size:
        raise CorruptMediaError(
            f"{path.name} is truncated: pixel data needs {end} bytes, file has {size}"
        )
    if require_pixels:
        if not has_pixels and "Rows" in ds:
            raise CorruptMediaError(
                f"{path.name} is truncated: it has image attributes but no pixel data"
            )
        if not has_pixels:
            raise UnsupportedMediaError(f"{path.name} has no pixel data (not an image)")
        reason = _decoder_status(str(tsyntax))
        if reason:
            raise UnsupportedMediaError(reason)
    return DicomHeader(path, ds, sha256, size, has_pixels, warnings)


def _parse_and_probe(
    stream: BinaryIO, path: Path, tags: list[int] | None, size: int
) -> tuple[Dataset, bool, int | None, int]:
    """Parse the header from ``stream`` and look at the element where parsing stopped:
    ``(dataset, pixel element present, its value length or None, end offset of its value)``."""
    ds = _parse(stream, path, tags)
    tsyntax = UID(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))
    if not tsyntax.is_transfer_syntax:
        raise UnsupportedMediaError(
            f"{path.name}: its file meta names {str(tsyntax)!r}, which is not a transfer syntax"
        )
    if tsyntax == _DEFLATED:  # the stream is inflated by pydicom: offsets mean nothing here
        return ds, True, None, 0
    return (ds, *_probe_pixel_element(stream, tsyntax, size))


@lru_cache(maxsize=16)
def _tags_for_tuple(keywords: tuple[str, ...]) -> tuple[int, ...]:
    tags = []
    for keyword in keywords:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise ValueError(f"not a DICOM keyword: {keyword!r}")
        tags.append(tag)
    return tuple(sorted(set(tags)))


def _tags_for(keywords: Sequence[str] | None) -> list[int] | None:
    return None if keywords is None else list(_tags_for_tuple(tuple(keywords)))


def _parse(stream: BinaryIO, path: Path, specific_tags: list[int] | None = None) -> Dataset:
    start = stream.tell()
    try:
        return pydicom.dcmread(stream, stop_before_pixels=True, specific_tags=specific_tags)
    except InvalidDicomError:
        pass  # no preamble: may still be a bare dataset
    except (
        EOFError,
        OSError,
        struct.error,
        ValueError,
        OverflowError,
        KeyError,
        IndexError,
    ) as exc:
        raise CorruptMediaError(f"damaged or truncated DICOM header: {exc}") from exc
    stream.seek(start)
    try:
        ds = pydicom.dcmread(
            stream, stop_before_pixels=True, force=True, specific_tags=specific_tags
        )
        has_class = bool(ds.get("SOPClassUID"))
    except Exception as exc:  # force=True on arbitrary bytes raises anything; it is not DICOM
        raise UnsupportedMediaError(f"{path.name} is not a DICOM file") from exc
    if not has_class:
        raise UnsupportedMediaError(f"{path.name} is not a DICOM file (no DICM preamble)")
    if "TransferSyntaxUID" not in ds.file_meta:
        # A bare dataset: pydicom guessed the encoding while parsing; record it.
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if ds.original_encoding[0]
            else pydicom.uid.ExplicitVRLittleEndian
        )
    return ds


@dataclass
class InstanceRecord:
    """One row of ``dicom_instances``: one SOP instance, DICOM keywords as column names.

    Units: FrameTime ms/frame; CineRate, RecommendedDisplayFrameRate frames/s; PhysicalDeltaX/Y
    in PhysicalUnitsX/YDirection units (3 = cm); Region* in pixels, maxima inclusive (from the
    primary ultrasound region, see :func:`primary_ultrasound_region`); ``fps`` the rate used
    for MP4 export (from :func:`cine_fps`, None for single frames without timing).
    """

    sha256: str | None
    size_bytes: int
    StudyInstanceUID: str | None
    SeriesInstanceUID: str | None
    SOPInstanceUID: str | None
    SOPClassUID: str | None
    Modality: str | None
    Manufacturer: str | None
    ManufacturerModelName: str | None
    TransferSyntaxUID: str
    PhotometricInterpretation: str | None
    Rows: int | None
    Columns: int | None
    NumberOfFrames: int
    FrameTime: float | None
    CineRate: float | None
    RecommendedDisplayFrameRate: float | None
    fps: float | None
    BitsAllocated: int | None
    SamplesPerPixel: int | None
    PhysicalDeltaX: float | None
    PhysicalDeltaY: float | None
    PhysicalUnitsXDirection: int | None
    PhysicalUnitsYDirection: int | None
    RegionLocationMinX0: int | None
    RegionLocationMinY0: int | None
    RegionLocationMaxX1: int | None
    RegionLocationMaxY1: int | None
    BodyPartExamined: str | None
    Laterality: str | None
    ImageType: str | None
    BurnedInAnnotation: str | None
    warnings: list[str]

    @property
    def is_cine(self) -> bool:
        """More than one frame: exported as an MP4 loop rather than a PNG."""
        return self.NumberOfFrames > 1

    def region_box(self) -> tuple[int, int, int, int] | None:
        """Primary ultrasound region as ``(x0, y0, x1, y1)``, exclusive maxima, clipped to the
        image; None when the header has no region."""
        if self.RegionLocationMinX0 is None:
            return None
        region = UltrasoundRegion(
            self.RegionLocationMinX0,
            self.RegionLocationMinY0 or 0,
            self.RegionLocationMaxX1 or 0,
            self.RegionLocationMaxY1 or 0,
            None,
            None,
            None,
            None,
            None,
            None,
        )
        return region.box(self.Columns, self.Rows)

    def to_row(self) -> dict[str, Any]:
        """A plain dict (Arrow/pandas friendly); ``warnings`` joined with '; '."""
        row = asdict(self)
        row["warnings"] = "; ".join(self.warnings)
        return row


#: Top-level elements :func:`instance_record` reads (SequenceOfUltrasoundRegions brings the
#: region items with it).
INSTANCE_KEYWORDS: tuple[str, ...] = (
    "SpecificCharacterSet",
    "ImageType",
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "FrameTime",
    "CineRate",
    "RecommendedDisplayFrameRate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "Laterality",
    "ImageLaterality",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "BitsAllocated",
    "BurnedInAnnotation",
    "SequenceOfUltrasoundRegions",
)


def _text(ds: Dataset | _Elements, keyword: str, encoding: str = "latin-1") -> str | None:
    value = _raw(ds, keyword, encoding)
    if value is None or value == "":
        return None
    if isinstance(value, str | bytes):
        return str(value).strip() or None
    return "\\".join(str(v) for v in value) or None


def _meta_text(ds: Dataset, keyword: str) -> str | None:
    meta = getattr(ds, "file_meta", None)
    return _text(meta, keyword) if meta is not None else None


def instance_record(header: DicomHeader) -> InstanceRecord:
    """Build the table row from a parsed (possibly already de-identified) header."""
    ds = header.dataset
    el = _Elements(ds)
    charset = _raw(el, "SpecificCharacterSet")
    enc = python_encoding.get(charset, "latin-1") if isinstance(charset, str) else "latin-1"
    region = primary_ultrasound_region(ds)
    fps = cine_fps(ds)
    laterality = _text(el, "Laterality") or _text(el, "ImageLaterality")
    return InstanceRecord(
        sha256=header.sha256,
        size_bytes=header.size_bytes,
        StudyInstanceUID=_text(el, "StudyInstanceUID"),
        SeriesInstanceUID=_text(el, "SeriesInstanceUID"),
        SOPInstanceUID=_text(el, "SOPInstanceUID") or _meta_text(ds, "MediaStorageSOPInstanceUID"),
        SOPClassUID=_text(el, "SOPClassUID") or _meta_text(ds, "MediaStorageSOPClassUID"),
        Modality=_text(el, "Modality"),
        Manufacturer=_text(el, "Manufacturer", enc),
        ManufacturerModelName=_text(el, "ManufacturerModelName", enc),
        TransferSyntaxUID=str(header.transfer_syntax),
        PhotometricInterpretation=_text(el, "PhotometricInterpretation"),
        Rows=_int_or_none(_raw(el, "Rows")),
        Columns=_int_or_none(_raw(el, "Columns")),
        NumberOfFrames=_int_or_none(_raw(el, "NumberOfFrames")) or 1,
        FrameTime=_float_or_none(_raw(el, "FrameTime")),
        CineRate=_float_or_none(_raw(el, "CineRate")),
        RecommendedDisplayFrameRate=_float_or_none(_raw(el, "RecommendedDisplayFrameRate")),
        fps=float(fps) if fps is not None else None,
        BitsAllocated=_int_or_none(_raw(el, "BitsAllocated")),
        SamplesPerPixel=_int_or_none(_raw(el, "SamplesPerPixel")),
        PhysicalDeltaX=region.physical_delta_x if region else None,
        PhysicalDeltaY=region.physical_delta_y if region else None,
        PhysicalUnitsXDirection=region.units_x if region else None,
        PhysicalUnitsYDirection=region.units_y if region else None,
        RegionLocationMinX0=region.min_x0 if region else None,
        RegionLocationMinY0=region.min_y0 if region else None,
        RegionLocationMaxX1=region.max_x1 if region else None,
        RegionLocationMaxY1=region.max_y1 if region else None,
        BodyPartExamined=_text(el, "BodyPartExamined", enc),
        Laterality=laterality,
        ImageType=_text(el, "ImageType"),
        BurnedInAnnotation=_text(el, "BurnedInAnnotation"),
        warnings=list(header.warnings),
    )


def read_instance(path: str | Path, *, sha256: str | None = None) -> InstanceRecord:
    """Header of one DICOM file as an :class:`InstanceRecord` (pixels not read).

    Pass ``sha256`` when already known to skip hashing; otherwise the file is read once and
    hashed. Only the elements the record needs are parsed (:data:`INSTANCE_KEYWORDS`). Raises
    the errors of :func:`read_header`.
    """
    return instance_record(read_header(path, sha256=sha256, keywords=INSTANCE_KEYWORDS))
