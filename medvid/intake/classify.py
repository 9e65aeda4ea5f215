"""What a landing file is: a video, a sheet, DICOM, or unsupported."""

from __future__ import annotations

from pathlib import PurePosixPath

VIDEO_SUFFIXES = frozenset(
    {".avi", ".mpeg", ".mpg", ".mov", ".mp4", ".m4v", ".gif", ".mkv", ".wmv"}
)
SHEET_SUFFIXES = frozenset({".csv"})
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".zip"})
KINDS = ("video", "sheet", "dicom")


def classify(key: str, head: bytes = b"", *, in_dicomdir_folder: bool = False) -> str | None:
    """Kind of a landing file: ``"video"``, ``"sheet"``, ``"dicom"`` or None (unsupported).

    ``key`` is its landing path, ``head`` its first 132 bytes. By suffix, plus the DICOM
    preamble (``DICM`` at byte 128, PS3.10 section 7.1) for files without a suffix and for
    ``DICOMDIR``. Files without a suffix below a folder holding a DICOMDIR (``IMAGES/IM0001``)
    are DICOM too: media written for a DICOMDIR may lack the preamble, and the DICOM reader
    decides. A text file named ``.mp4`` is a video here and is quarantined when it fails to
    decode.
    """
    path = PurePosixPath(key)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in SHEET_SUFFIXES:
        return "sheet"
    if suffix in DICOM_SUFFIXES or path.name.upper() == "DICOMDIR":
        return "dicom"
    if head[128:132] == b"DICM":
        return "dicom"
    if in_dicomdir_folder and not suffix:
        return "dicom"
    return None


def dicomdir_folders(keys: list[str]) -> set[PurePosixPath]:
    """Folders (landing paths) that hold a DICOMDIR file."""
    return {PurePosixPath(k).parent for k in keys if PurePosixPath(k).name.upper() == "DICOMDIR"}


def below(key: str, folders: set[PurePosixPath]) -> bool:
    """Whether ``key`` lies in (or under) one of ``folders``."""
    return any(folder in PurePosixPath(key).parents for folder in folders)
