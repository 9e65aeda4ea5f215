"""Errors raised by the core for bad input.

Every error that means "this input is bad, quarantine it and let the batch go on" derives from
:class:`MedvidInputError` and carries a short human-readable ``reason``. Anything else that is
raised is a bug or an environment problem and should fail the run loudly.
"""

from __future__ import annotations


class MedvidInputError(Exception):
    """The input file cannot be processed; ``reason`` says why (shown in the quarantine table)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EmptyFileError(MedvidInputError):
    """The file has zero bytes."""


class CorruptMediaError(MedvidInputError):
    """The file claims to be media but cannot be decoded (truncated, damaged, not what it says)."""


class UnsupportedMediaError(MedvidInputError):
    """The file is valid but in a format or codec medvid does not handle."""


class SheetError(MedvidInputError):
    """A labels, patients or segments sheet is malformed (missing columns, bad values)."""


class UnsafeInputError(MedvidInputError):
    """The input would make medvid read outside where it may (a link out of the landing folder,
    a zip member with ``..``)."""
