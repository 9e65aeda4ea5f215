"""Content-derived identifiers.

A video's id is the first 16 hex digits of the sha256 of its bytes, so a renamed or re-uploaded
file maps to the same id and is never processed twice. A frame's id is derived from its video's
id and its frame number in the *original* video, so it is stable across re-runs and unique across
the project.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CONTENT_ID_HEX_DIGITS = 16
_CHUNK = 1 << 20


def sha256_stream(stream: BinaryIO) -> str:
    """Hex sha256 of everything left in a binary stream, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed; memory does not grow with file size)."""
    with open(path, "rb") as stream:
        return sha256_stream(stream)


def content_id(sha256_hex: str) -> str:
    """Content id used as a partition key: the first 16 hex digits (64 bits) of the sha256."""
    if len(sha256_hex) < CONTENT_ID_HEX_DIGITS:
        raise ValueError(f"not a sha256 hex digest: {sha256_hex!r}")
    return sha256_hex[:CONTENT_ID_HEX_DIGITS].lower()


def frame_id(video_id: str, frame_number: int) -> str:
    """Stable frame id ``<video_id>-<frame_number, 7 digits>``; frame_number is the index in the
    original video (0-based, decode order)."""
    return f"{video_id}-{frame_number:07d}"
