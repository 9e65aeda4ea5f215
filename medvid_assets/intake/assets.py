"""Intake: each landing file version taken once, into the protected zone, with its outcome.

``landing_intake`` (one partition per UTC day of landing) does the work the landing sensor only
looks for: hash, classify, copy and verify, unzip, index DICOM studies, keep sheet versions
(:func:`medvid.intake.ingest`), put videos and studies in batches (:mod:`medvid.batches`, the
partitions of the pipelines), and record each file's
outcome last. A file whose intake fails, is killed or never runs has no outcome and is offered
again; one file's failure never stops the others of the day.
"""

import time
import traceback

import dagster as dg
import pyarrow as pa
from pydantic import Field

from medvid.catalog import keys
from medvid.catalog.schemas import ARRIVALS_SCHEMA
from medvid.deid.store import known_identifiers_of
from medvid.intake.classify import below, dicomdir_folders
from medvid.intake.ingest import LandingFileChanged, ingest
from medvid.intake.ledger import has_intake_record, intake_records, write_intake_record
from medvid.intake.pending import look
from medvid.store import write_table
from medvid_assets.partitions import landing_days
from medvid_assets.policy import table_preview
from medvid_resources import DeidentificationResource, LandingZone, MediaStore


class IntakeConfig(dg.Config):
    """Which landing file versions of the day to take.

    fingerprints: the versions a sensor or the ``medvid`` command found settled (empty: every
    file of the day without an outcome, e.g. a backfill from the UI)."""

    fingerprints: list[str] = Field(default_factory=list)


@dg.asset(
    partitions_def=landing_days,
    group_name="intake",
    kinds={"parquet"},
    code_version="2",
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10),
    description="The day's landing files taken in: each file version hashed, classified, copied"
    " into the protected zone and verified, DICOM instances indexed under pseudonymous studies,"
    " sheet versions kept, videos and studies put in batches (partitions added), and its"
    " outcome recorded"
    " (processed, duplicate, or quarantined with the reason). Table: the day's arrivals with"
    " display names.",
)
def landing_intake(
    context: dg.AssetExecutionContext,
    config: IntakeConfig,
    landing_zone: LandingZone,
    media_store: MediaStore,
    deid: DeidentificationResource,
) -> dg.MaterializeResult:
    day = context.partition_key
    files = landing_zone.list_files()
    dicomdirs = dicomdir_folders([f.key for f in files])
    wanted = set(config.fingerprints)
    found = look(
        files,
        landing_zone.uri,
        lambda fp: has_intake_record(media_store, fp),
        require_stable=False,
        now=time.time(),
    )
    pending = [p for p in found.ready if p.day == day and (not wanted or p.fingerprint in wanted)]
    # sheets first: the names and ids a patients sheet brings are masked in the display names of
    # the videos that arrive with it
    pending.sort(key=lambda p: (not p.key.lower().endswith(".csv"), p.key))
    salt = deid.get_salt() if pending else ""
    known = known_identifiers_of(media_store) if pending else []
    counts = {"processed": 0, "duplicate": 0, "quarantined": 0, "changed": 0, "failed": 0}
    touched: set[str] = set()
    failed: list[str] = []
    for number, item in enumerate(pending, start=1):
        try:
            result = ingest(
                landing_zone,
                media_store,
                item.key,
                item.size,
                item.mtime,
                salt=salt,
                in_dicomdir_folder=below(item.key, dicomdirs),
                known_identifiers=known,
            )
        except LandingFileChanged:
            counts["changed"] += 1
            context.log.info(f"file {number}/{len(pending)} changed while copied: retried later")
            continue
        except Exception:  # one file's failure never stops the others; it stays pending
            counts["failed"] += 1
            failed.append(f"file {number}/{len(pending)}")
            context.log.error(
                f"intake of file {number}/{len(pending)} failed (retried later):\n"
                + traceback.format_exc()
            )
            continue
        touched.update(result.batches)
        if result.record.kind == "sheet" and result.record.outcome == "processed":
            known = known_identifiers_of(media_store)
        write_intake_record(media_store, result.record)
        counts[result.record.outcome] += 1
        if result.record.outcome == "quarantined":
            context.log.warning(f"quarantined {result.record.display_name}: {result.record.reason}")
        context.log.info(
            f"{number}/{len(pending)} {result.record.display_name}: {result.record.outcome}"
        )
    rows = [
        {
            "content_id": r.content_id or "",
            "kind": r.kind or "",
            "display_name": r.display_name,
            "partition": ",".join(r.partitions),
            "size": r.size,
            "landed_at": dt_iso(r.mtime),
            "outcome": r.outcome,
            "reason": r.reason or "",
        }
        for r in intake_records(media_store)
        if r.day == day
    ]
    table = pa.Table.from_pylist(rows, schema=ARRIVALS_SCHEMA)
    write_table(media_store, keys.table_key(keys.Tables.ARRIVALS, day), table)
    if failed:
        raise dg.Failure(
            description=f"{len(failed)} file(s) could not be taken in (see the log); the other"
            f" {len(pending) - len(failed)} were, and the failed ones stay pending",
            metadata={**counts},
        )
    return dg.MaterializeResult(
        metadata={
            **counts,
            "batches": dg.MetadataValue.json(sorted(touched)),
            "arrivals_of_the_day": len(rows),
            "arrivals": table_preview(
                table,
                ["display_name", "kind", "outcome", "reason", "size"],
                empty="(nothing landed)",
            ),
        }
    )


def dt_iso(mtime: float) -> str:
    from medvid.intake.ledger import landed_at

    return landed_at(mtime)
