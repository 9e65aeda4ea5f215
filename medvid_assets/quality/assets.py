"""Quality: every input medvid could not process, in one table for people to act on."""

import dagster as dg

from medvid.catalog.keys import Tables, table_key
from medvid.quarantine import quarantine_records, quarantine_table
from medvid.store import write_table
from medvid_assets.policy import table_preview
from medvid_assets.runs import record_worker
from medvid_resources import MediaStore


@dg.asset(
    group_name="quality",
    kinds={"parquet"},
    deps=["landing_intake", "video_frames", "dicom_images", "label_sheets"],
    code_version="2",
    description="Every input medvid could not process, with the stage and the reason (display"
    " names only). Nothing in it is deleted; fix the file and drop it in the landing zone again.",
)
def quarantine(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    table = quarantine_table(quarantine_records(media_store))
    write_table(media_store, table_key(Tables.QUARANTINE), table)
    rows = table.to_pylist()
    return dg.MaterializeResult(
        metadata={
            "quarantined": len(rows),
            "by_stage": dg.MetadataValue.json(
                {s: sum(r["stage"] == s for r in rows) for s in sorted({r["stage"] for r in rows})}
            ),
            "table": table_preview(table, ["file", "stage", "reason"], empty="(nothing)"),
        }
    )
