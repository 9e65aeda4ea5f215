"""Finding DICOM files in a landing folder and unpacking zipped studies safely.

A DICOM Part 10 file starts with a 128-byte preamble followed by the magic ``b"DICM"``
(PS3.10 section 7.1). Some old archives hold bare datasets without the preamble; those are
accepted only when pydicom parses them with ``force=True`` *and* they carry a SOPClassUID, so a
random binary is never mistaken for an image.

Zip archives come from outside: :func:`safe_unzip` refuses path traversal (absolute names,
``..`` components, symbolic links) and zip bombs (too many members, too many uncompressed bytes,
or a compression ratio no real study reaches) before writing anything.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pydicom
from pydicom.errors import InvalidDicomError

from medvid.errors import CorruptMediaError, UnsupportedMediaError
from medvid.io import atomic_path

DICM_OFFSET = 128
DICM_MAGIC = b"DICM"

#: Defaults for :func:`safe_unzip`. A large ultrasound study is a few GiB and a few thousand
#: instances; JPEG/RLE-compressed DICOM rarely compresses better than 20:1 in a zip, while
#: zip bombs reach 1000:1 and more.
DEFAULT_MAX_TOTAL_BYTES = 20 * 1024**3
DEFAULT_MAX_FILES = 50_000
DEFAULT_MAX_RATIO = 200.0

_COPY_CHUNK = 1 << 20


def has_dicm_preamble(path: str | Path) -> bool:
    """True when bytes 128..131 of the file are ``b"DICM"`` (PS3.10 file format)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(DICM_OFFSET)
            return stream.read(4) == DICM_MAGIC
    except OSError:
        return False


def is_dicom(path: str | Path) -> bool:
    """Whether ``path`` is a DICOM file (any extension or none).

    True for a PS3.10 file (128-byte preamble + ``b"DICM"``). A file without the preamble counts
    only if ``pydicom.dcmread(force=True, stop_before_pixels=True)`` parses it and the dataset
    has a SOPClassUID. DICOMDIR files (Media Storage Directory) are *not* instances: they return
    True here too; use :func:`find_dicom_files`, which follows them instead of listing them.
    Never raises for unreadable files: they are simply not DICOM.
    """
    path = Path(path)
    if not path.is_file():
        return False
    if has_dicm_preamble(path):
        return True
    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:  # any parse failure means "not DICOM"; pydicom raises many kinds
        return False
    return bool(ds.get("SOPClassUID"))


_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


def is_dicomdir(path: Path) -> bool:
    """True for a DICOMDIR (by name, or MediaStorageSOPClassUID 1.2.840.10008.1.3.10)."""
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:
        return False
    media_class = getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID", "")
    return str(media_class) == _DICOMDIR_SOP_CLASS


def _dicomdir_references(dicomdir: Path) -> Iterator[Path]:
    """Files referenced by the records of a DICOMDIR (ReferencedFileID, relative to its folder)."""
    try:
        ds = pydicom.dcmread(dicomdir)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise CorruptMediaError(f"unreadable DICOMDIR {dicomdir.name}: {exc}") from exc
    root = dicomdir.parent.resolve()
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [file_id] if isinstance(file_id, str) else list(file_id)
        candidate = root.joinpath(*parts).resolve()
        # A DICOMDIR is input too: refuse references that leave its folder.
        if root not in candidate.parents:
            continue
        if candidate.is_file():
            yield candidate


def find_dicom_files(folder: str | Path) -> list[Path]:
    """All DICOM instances under ``folder`` (recursive), sorted, without duplicates.

    Files are detected by content (:func:`is_dicom`), not by extension. A DICOMDIR is not listed
    itself; the files its records reference (ReferencedFileID, PS3.10 section 8) are listed even
    when their names have no extension. Hidden files (``.name``) and symbolic links are skipped.

    Raises:
        CorruptMediaError: a DICOMDIR in the folder cannot be parsed.
    """
    folder = Path(folder)
    found: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.is_symlink() or not is_dicom(path):
                continue
            if is_dicomdir(path):
                found.update(_dicomdir_references(path))
            else:
                found.add(path.resolve())
    return sorted(found)


def _check_member_name(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    member = PurePosixPath(name)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsupportedMediaError(f"zip member has an absolute path: {info.filename!r}")
    if any(part == ".." for part in member.parts):
        raise UnsupportedMediaError(f"zip member escapes the archive folder: {info.filename!r}")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsupportedMediaError(f"zip member is a symbolic link: {info.filename!r}")
    return member


def safe_unzip(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> list[Path]:
    """Extract a zip of studies into ``dest`` and return the extracted file paths (sorted).

    Every member is checked before anything is written: no absolute paths, no ``..``
    components, no symbolic links; at most ``max_files`` files; at most ``max_total_bytes``
    uncompressed bytes in total; no member whose uncompressed/compressed size ratio exceeds
    ``max_ratio``. The declared sizes in the central directory are then enforced while
    streaming (a forged header cannot write more than it declared). Each file is written
    atomically (medvid.io), so a failed extraction leaves no half-written file.

    Raises:
        CorruptMediaError: not a zip file, a damaged archive, or a member larger than declared.
        UnsupportedMediaError: unsafe member names, encrypted members, or a limit exceeded
            (the reason names the limit).
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptMediaError(f"not a readable zip archive: {exc}") from exc
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > max_files:
            raise UnsupportedMediaError(
                f"zip has {len(members)} files, more than the limit of {max_files}"
            )
        total = sum(info.file_size for info in members)
        if total > max_total_bytes:
            raise UnsupportedMediaError(
                f"zip expands to {total} bytes, more than the limit of {max_total_bytes}"
            )
        planned: list[tuple[zipfile.ZipInfo, Path]] = []
        for info in archive.infolist():
            member = _check_member_name(info)
            if info.flag_bits & 0x1:
                raise UnsupportedMediaError(f"zip member is encrypted: {info.filename!r}")
            if info.is_dir():
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise UnsupportedMediaError(
                    f"zip member {info.filename!r} has compression ratio {ratio:.0f}, "
                    f"more than the limit of {max_ratio:g} (zip bomb?)"
                )
            planned.append((info, dest.joinpath(*member.parts)))

        written: list[Path] = []
        for info, target in planned:
            try:
                with archive.open(info) as source, atomic_path(target) as tmp:
                    remaining = info.file_size
                    with open(tmp, "wb") as out:
                        while chunk := source.read(_COPY_CHUNK):
                            remaining -= len(chunk)
                            if remaining < 0:
                                raise CorruptMediaError(
                                    f"zip member {info.filename!r} is larger than declared"
                                )
                            out.write(chunk)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise CorruptMediaError(f"damaged zip member {info.filename!r}: {exc}") from exc
            written.append(target)
    return sorted(written)


#: Zips inside zips are unpacked down to this depth (a study archive inside a transfer archive
#: inside a delivery archive); deeper ones are quarantined.
DEFAULT_MAX_ZIP_DEPTH = 3
_ZIP_MAGIC = b"PK\x03\x04"


def _is_zip(path: Path) -> bool:
    try:
        with open(path, "rb") as stream:
            return stream.read(4) == _ZIP_MAGIC
    except OSError:
        return False


def safe_unzip_nested(
    zip_path: str | Path,
    dest: str | Path,
    *,
    max_depth: int = DEFAULT_MAX_ZIP_DEPTH,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """:func:`safe_unzip`, then every zip found inside unpacked too, down to ``max_depth``
    levels (the outer archive is level 1).

    A member zip ``a/b.zip`` is unpacked into ``a/b.zip.unzipped/`` and removed from the file
    list; the limits apply to each archive. Returns ``(files, problems)``: the extracted files
    that are not zips, and ``(member path relative to dest, reason)`` for nested zips that are
    too deep or cannot be unpacked (the caller quarantines them; the rest goes on).

    Raises:
        CorruptMediaError, UnsupportedMediaError: the outer archive itself (see
            :func:`safe_unzip`).
    """
    dest = Path(dest)
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    queue = [
        (path, 2)
        for path in safe_unzip(
            zip_path,
            dest,
            max_total_bytes=max_total_bytes,
            max_files=max_files,
            max_ratio=max_ratio,
        )
    ]
    while queue:
        path, depth = queue.pop(0)
        if not _is_zip(path):
            files.append(path)
            continue
        relative = path.relative_to(dest).as_posix()
        if depth > max_depth:
            problems.append((relative, f"zip nested more than {max_depth} levels deep"))
            continue
        try:
            inner = safe_unzip(
                path,
                path.with_name(path.name + ".unzipped"),
                max_total_bytes=max_total_bytes,
                max_files=max_files,
                max_ratio=max_ratio,
            )
        except (CorruptMediaError, UnsupportedMediaError) as error:
            problems.append((relative, f"nested zip: {error.reason}"))
            continue
        queue.extend((p, depth + 1) for p in inner)
    return sorted(files), problems
