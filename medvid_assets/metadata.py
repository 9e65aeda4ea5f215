"""Asset metadata shown in the Dagster UI: table previews and de-identification check results."""

from collections.abc import Sequence

import dagster as dg
import pyarrow as pa


def table_preview(
    table: pa.Table, columns: Sequence[str] | None = None, *, empty: str = "(empty)"
) -> dg.MetadataValue:
    """A Markdown table of ``table`` (optionally only ``columns``), or ``empty`` without rows."""
    if table.num_rows == 0:
        return dg.MetadataValue.md(empty)
    selected = table.select(list(columns)) if columns is not None else table
    return dg.MetadataValue.md(selected.to_pandas().to_markdown(index=False))


def deid_check_result(
    check_name: str, findings: list[str], *, checked: int, what: str, passed_text: str
) -> dg.AssetCheckResult:
    """A de-identification check: passed without findings; the findings (which name what was
    found and where, never the PHI) go into the metadata, the first 50 of them."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=not findings,
        metadata={
            f"{what}_checked": checked,
            "findings": dg.MetadataValue.json(findings[:50]),
        },
        description=passed_text
        if not findings
        else f"{len(findings)} finding(s): not exported until fixed",
    )
