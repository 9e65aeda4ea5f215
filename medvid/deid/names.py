"""Display names: file names with PHI-like tokens replaced, for everywhere outside protected/.

A hospital's files are often named after the patient (``SMITH_JOHN_5551234_20240215.mp4``).
Original names live only in the protected ledger; tables, run tags, asset metadata, logs and the
command line's summary show :func:`display_name` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

#: Dates with separators: 2024-02-15, 15.02.2024, 15/02/24, 2024_02_15.
_DATE = re.compile(r"\b\d{1,4}[-./_]\d{1,2}[-./_]\d{1,4}\b")
_TOKEN = re.compile(r"[A-Za-z]+|\d+|[^A-Za-z\d]+")


def display_name(original_name: str, known_identifiers: Iterable[str] = ()) -> str:
    """``original_name`` (a file name or landing path) with PHI-like parts replaced.

    Replaced: dates with separators (``[date]``), runs of 6 or more digits (``[id]``), and any
    alphabetic or numeric token equal, ignoring case, to one of ``known_identifiers`` (names and
    ids known from sheets and DICOM headers; ``[name]``). Folder names are dropped; the suffix is
    kept. Deterministic; never raises.
    """
    name = PurePosixPath(str(original_name).replace("\\", "/")).name
    known = {k.strip().lower() for k in known_identifiers if k and len(k.strip()) >= 2}
    name = _DATE.sub("[date]", name)
    parts = []
    for token in _TOKEN.findall(name):
        if token.lower() in known:
            parts.append("[name]" if token.isalpha() else "[id]")
        elif token.isdigit() and len(token) >= 6:
            parts.append("[id]")
        else:
            parts.append(token)
    return "".join(parts)
