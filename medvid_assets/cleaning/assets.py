"""The cleaning stage: which de-identified images are copies of each other, and which carry
on-image marks (``image_marks``: found by the mark finder, inpainted, caliper twins).

``duplicate_groups`` runs in ``export_job`` before ``training_dataset``, which reads its tables
to keep one image per group and patient and to keep a group on one side of the split. It keeps a
persisted duplicate index (``tables/duplicate_index.parquet``) and adds only what is new since
the last run, so its cost follows the new frames and stills, not the archive.
"""

import dagster as dg
import pandas as pd
import pyarrow as pa

from medvid.cleaning.dedup import DuplicateIndex
from medvid.cleaning.dedup_policy import groups_spanning_patients
from medvid.cleaning.marks_store import (
    IMAGE_MARKS_SCHEMA,
    image_marks_table,
    marks_preview,
    read_image_marks,
    write_image_marks,
)
from medvid.cleaning.store import (
    cleanable_videos,
    fields_of_view_table,
    frame_items_of,
    groups_table,
    largest_groups,
    load_duplicate_index,
    pairs_table,
    patients_of_videos,
    read_fields_of_view,
    save_duplicate_index,
    still_images_of,
    still_items_of,
    sync_index,
    write_duplicate_tables,
    write_fields_of_view,
)
from medvid.cleaning.video_dedup import find_near_duplicate_videos
from medvid.dicom.registration import registered_studies
from medvid.export.gate import exportable_studies
from medvid.intake.ledger import ledger_entries
from medvid.settings import CleaningSettings
from medvid_assets.executors import GPU_OP_TAGS
from medvid_assets.policy import (
    SettingsResource,
    markdown_image,
    resolve_settings,
    settings_config,
    table_preview,
)
from medvid_assets.runs import record_worker
from medvid_resources import MediaStore
from medvid_resources.torch_device import TorchDeviceResource

CleaningConfig = settings_config(CleaningSettings, "CleaningConfig")
PREVIEW_GROUPS = 10


@dg.asset(
    group_name="cleaning",
    kinds={"parquet"},
    deps=["video_frames", "dicom_images", "frame_labels"],
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec(
            "no_group_spans_patients",
            asset="duplicate_groups",
            blocking=False,
            description="No duplicate group holds images of two patients (a copy filed under"
            " two patients, or two patients' images within the pHash radius). Such groups keep"
            " one representative per patient and are listed here.",
        )
    ],
    description="Duplicate groups of every de-identified DICOM still and extracted frame: exact"
    " copies by decoded-pixel digest, near copies by 64-bit pHash within cleaning."
    "duplicate_radius bits (connected components), one representative per group and patient;"
    " plus near-duplicate videos (aligned frame-hash sequences). Tables duplicate_groups"
    " (item -> group_id, representative) and duplicate_videos.",
)
def duplicate_groups(
    context: dg.AssetExecutionContext,
    config: CleaningConfig,  # type: ignore[valid-type]
    media_store: MediaStore,
    settings: SettingsResource,
):
    record_worker(context)
    options, recorded = resolve_settings(context, settings, "cleaning", config)
    video_ids = cleanable_videos(
        media_store, [e.content_id for e in ledger_entries(media_store, kind="video")]
    )
    patients = patients_of_videos(media_store, video_ids)
    frames, sequences = frame_items_of(media_store, video_ids, patients)
    stills = still_images_of(
        media_store, exportable_studies(media_store, registered_studies(media_store))
    )
    previous = load_duplicate_index(media_store)
    known = previous if previous is not None else DuplicateIndex()
    images = still_items_of(media_store, stills, known)
    items = pd.concat([t for t in (frames, images) if len(t)] or [frames], ignore_index=True)
    sync = sync_index(previous, items, radius=options.duplicate_radius)
    save_duplicate_index(media_store, sync.index)
    groups = groups_table(sync.index, items)
    pairs = pairs_table(
        find_near_duplicate_videos(sequences, frame_radius=options.duplicate_radius)
    )
    write_duplicate_tables(media_store, groups, pairs)

    frame = groups.to_pandas()
    spans = groups_spanning_patients(frame, frame.set_index("item_id")["patient_id"])
    sizes = frame.drop_duplicates("group_id")["group_size"]
    yield dg.MaterializeResult(
        metadata={
            "items": len(frame),
            "frames": int((frame["kind"] == "frame").sum()),
            "still_images": int((frame["kind"] == "image").sum()),
            "groups": int(frame["group_id"].nunique()),
            "groups_with_copies": int((sizes > 1).sum()),
            "items_added": sync.added,
            "index_rebuilt": sync.rebuilt,
            "largest_group": int(sizes.max()) if len(sizes) else 0,
            "not_representative": int((~frame["representative"]).sum()),
            "near_duplicate_video_pairs": pairs.num_rows,
            "groups_spanning_patients": len(spans),
            "largest_groups": table_preview(
                pa.Table.from_pandas(largest_groups(frame, PREVIEW_GROUPS), preserve_index=False),
                empty="(no duplicates)",
            ),
            "video_pairs": table_preview(
                pairs, ["video_a", "video_b", "score", "offset"], empty="(none)"
            ),
            **recorded,
        }
    )
    yield dg.AssetCheckResult(
        check_name="no_group_spans_patients",
        passed=not spans,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "groups": len(spans),
            "spanning": dg.MetadataValue.json(
                [
                    {
                        "group_id": s.group_id,
                        "patients": list(s.patient_ids),
                        "items": len(s.item_ids),
                    }
                    for s in spans[:50]
                ]
            ),
        },
        description=f"{len(spans)} group(s) hold images of two or more patients"
        if spans
        else "every duplicate group holds one patient's images",
    )


@dg.asset(
    group_name="cleaning",
    kinds={"parquet"},
    deps=["video_frames", "frame_labels"],
    code_version="1",
    description="Per video, the box of its frames that holds the image (the export crops frames"
    " to it): a DICOM cine loop's SequenceOfUltrasoundRegions region, else the pixels that vary"
    " over up to 24 of its redacted frames, else the largest lit region of its middle frame."
    " Measured again only when a video's frames change.",
)
def fields_of_view(context: dg.AssetExecutionContext, media_store: MediaStore):
    record_worker(context)
    video_ids = cleanable_videos(
        media_store, [e.content_id for e in ledger_entries(media_store, kind="video")]
    )
    table, measured = fields_of_view_table(media_store, video_ids, read_fields_of_view(media_store))
    write_fields_of_view(media_store, table)
    sources = table.column("source").to_pylist()
    return dg.MaterializeResult(
        metadata={
            "videos": table.num_rows,
            "measured": measured,
            "by_source": dg.MetadataValue.json({s: sources.count(s) for s in sorted(set(sources))}),
            "table": table_preview(
                table, ["video_id", "x0", "y0", "x1", "y1", "source"], empty="(no videos)"
            ),
        }
    )


@dg.asset(
    group_name="cleaning",
    kinds={"onnx", "pytorch", "parquet", "png"},
    pool="gpu",
    op_tags=GPU_OP_TAGS,
    deps=["dicom_images"],
    code_version="1",
    description="On-image marks (calipers, dotted lines, arrows, body markers) of every"
    " de-identified DICOM still: the shipped mark finder (tiny U-Net; onnxruntime, torch only"
    " for a GPU onnxruntime lacks) per still and model_id"
    " (has_calipers, mark pixels, the mask as a PNG), caliper twins within a study (the clean"
    " twin of a marked still) and, where marks were found, the still inpainted (Telea, full"
    " resolution) as a PNG. Table image_marks. Incremental: a still is read again only for a"
    " new model; nothing is dropped here (the export decides, cleaning.marks).",
)
def image_marks(
    context: dg.AssetExecutionContext,
    media_store: MediaStore,
    torch_device: TorchDeviceResource,
):
    record_worker(context)
    stills = still_images_of(
        media_store, exportable_studies(media_store, registered_studies(media_store))
    )
    if stills.empty:
        # nothing for the finder to read (the table of no stills is empty whatever the model),
        # so no finder is loaded
        write_image_marks(media_store, IMAGE_MARKS_SCHEMA.empty_table())
        context.log.info("no de-identified stills: mark finder not loaded")
        return dg.MaterializeResult(metadata={"still_images": 0, "read_now": 0})
    from medvid.cleaning.mark_onnx import load_mark_finder

    # onnxruntime unless a GPU asks for torch: torch alone is ~0.8 GiB resident
    chosen = load_mark_finder(
        torch_device.device, threads=torch_device.cpu_threads, log=context.log.warning
    )
    finder, device = chosen.finder, chosen.device
    context.log.info(f"mark finder {finder.model_id} on {chosen.runtime}: {len(stills)} stills")
    update = image_marks_table(
        media_store,
        stills,
        read_image_marks(media_store),
        finder,
        device=device,
        num_threads=torch_device.cpu_threads or None,
    )
    write_image_marks(media_store, update.table)
    table = update.table.to_pandas()
    preview = marks_preview(media_store, table)
    return dg.MaterializeResult(
        metadata={
            "model_id": finder.model_id,
            "device": device,
            "runtime": chosen.runtime,
            "still_images": len(table),
            "read_now": len(update.found),
            "studies_twinned_now": len(update.studies),
            "with_calipers": int(table["has_calipers"].sum()),
            "with_marks": int((table["mark_pixels"] > 0).sum()),
            "with_clean_twin": int(table["clean_twin"].notna().sum()),
            "inpainted": int(table["inpainted_key"].notna().sum()),
            "table": table_preview(
                update.table,
                ["image_id", "has_calipers", "mark_pixels", "clean_twin", "inpainted_key"],
                empty="(no stills)",
            ),
            **(
                {"preview": markdown_image(preview, "still | marks | inpainted")} if preview else {}
            ),
        }
    )
