"""CSV injection (OWASP): cells a spreadsheet would run are written as text, numbers stay."""

from __future__ import annotations

import pytest

from medvid.csv_injection import neutralize_formula


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+1", "'+1+1"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(cell: str, written: str) -> None:
    assert neutralize_formula(cell) == written


@pytest.mark.parametrize("cell", ["-0.5", "+3", "-1e-05", "-12", "-.5", "2.5", ""])
def test_plain_numbers_stay_numbers(cell: str) -> None:
    assert neutralize_formula(cell) == cell


@pytest.mark.parametrize("cell", ["b_lines", "a=b", "x-y", "'=already", "1+1"])
def test_other_text_is_unchanged(cell: str) -> None:
    assert neutralize_formula(cell) == cell
