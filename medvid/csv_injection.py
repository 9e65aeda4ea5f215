"""CSV injection (formula injection): cells a spreadsheet would run are written as text.

Excel, LibreOffice Calc and Google Sheets evaluate a CSV cell whose first character is ``=``,
``+``, ``-`` or ``@`` as a formula, and a leading tab or carriage return can hide one; a label
``=cmd|' /C calc'!A0`` or a patient id ``=HYPERLINK(...)`` would run on the machine of whoever
opens the export. Every CSV medvid writes passes each cell through :func:`neutralize_formula`,
which follows OWASP's recommendation (https://owasp.org/www-community/attacks/CSV_Injection):
prefix such a cell with a single quote, which spreadsheets take as "this is text" and do not
display.

Numbers are left alone: a cell that is a plain decimal number (``-0.5``, ``+3``, ``-1e-05``)
is a number literal in every spreadsheet, not a formula, and quoting it would turn the
negative ``float_value`` of a model or a negative score into text that ``pandas.read_csv`` no
longer parses as a number. Anything else that starts with a trigger (``-1+2``, ``-2+3+cmd|...``)
is quoted.

JSON exports keep values as they are: JSON is data for programs, no spreadsheet evaluates a
JSON string, and ``annotations.json``/``dataset.json`` must hold the exact label names that the
``imagefolder/`` folders and ``multilabel.json`` use. Label names that a spreadsheet would run
never get that far: :func:`medvid.labels.sheets.validate_label_name` refuses them at intake.
"""

from __future__ import annotations

import re
from typing import Final

#: First characters that make a spreadsheet evaluate a cell (OWASP CSV Injection).
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")

_PLAIN_NUMBER: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralize_formula(text: str) -> str:
    """``text`` with a ``'`` in front when a spreadsheet would evaluate it as a formula.

    A cell starting with one of :data:`FORMULA_TRIGGERS` gets the quote unless it is a plain
    decimal number (see the module docstring); every other cell is returned unchanged.
    ``neutralize_formula("=1+1") == "'=1+1"``, ``neutralize_formula("-0.5") == "-0.5"``.
    """
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text
