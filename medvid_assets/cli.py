"""The ``medvid`` command line: headless runs on the same storage as ``dagster dev``.

``medvid run LANDING_DIR --home HOME_DIR [--config FILE]`` registers everything in LANDING_DIR,
materializes every asset it needs in-process on the Dagster instance in HOME_DIR (the same one
``dagster dev`` shows when ``DAGSTER_HOME=HOME_DIR``), shows progress and prints a summary.
Inputs already processed are skipped, so adding one file and running again processes only it.
Exit status: 0 when every run succeeded (quarantined inputs are not failures), 1 otherwise.

``medvid demo`` runs the same on the sample clips and sheets bundled with medvid.
"""

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO_SAMPLES = Path(__file__).resolve().parents[1] / "samples"
INSTANCE_TEMPLATE = Path(__file__).with_name("instance_template.yaml")
CLI_CURSOR = "cli_cursor.json"


@dataclass
class RunSummary:
    videos_new: list[str] = field(default_factory=list)
    videos_total: int = 0
    frames: int = 0
    annotations: int = 0
    predicted: int = 0
    studies: list[dict] = field(default_factory=list)
    studies_new: list[str] = field(default_factory=list)
    not_deidentified: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)
    export_path: str | None = None
    export_counts: dict[str, int] = field(default_factory=dict)
    export_checks: dict[str, bool] = field(default_factory=dict)


def prepare_home(home: Path) -> Path:
    """Create HOME_DIR with a ``dagster.yaml`` (SQLite storage, gpu pool) unless it has one, and
    point ``DAGSTER_HOME`` at it."""
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["MEDVID_HOME"] = str(home)
    return home


#: ``--config`` sections and the Dagster ``Config`` classes whose fields they set.
CONFIG_SECTIONS = {
    "normalize": "NormalizeConfig",
    "frames": "FrameSamplingConfig",
    "labels": "LabelSheetsConfig",
    "segments": "SegmentLabelsConfig",
    "predict": "model: LabelModelConfig, predicted_labels: PredictedLabelsConfig,"
    " custom_model: CustomModelConfig",
    "export": "TrainingDatasetConfig",
}


def load_config(path: Path | None) -> dict:
    """The ``--config`` YAML: optional sections (:data:`CONFIG_SECTIONS`) whose keys are the
    fields of the Dagster ``Config`` classes shown in the UI's launchpad."""
    if path is None:
        return {}
    config = yaml.safe_load(path.read_text()) or {}
    unknown = set(config) - set(CONFIG_SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) in {path}: {', '.join(sorted(unknown))}")
    return config


def predict_labels(execute, predict: dict, video_ids: list[str], progress: bool) -> None:
    """The ``predict`` section: train a label model (``model``: cold or blitz, see
    LabelModelConfig) and predict every video (``predicted_labels``), and/or run a user's
    ``custom_model`` on every video. Quarantined videos skip themselves."""
    from tqdm import tqdm

    if "custom_model" not in predict or "model" in predict:
        model_config = {"ops": {"label_model": {"config": predict.get("model", {})}}}
        if execute("label_model_job", model_config):
            run_config = {
                "ops": {"predicted_labels": {"config": predict.get("predicted_labels", {})}}
            }
            for video_id in tqdm(video_ids, desc="predict", unit="video", disable=not progress):
                execute("predict_job", run_config, partition_key=video_id)
    if "custom_model" in predict:
        run_config = {"ops": {"custom_model_labels": {"config": predict["custom_model"]}}}
        for video_id in tqdm(video_ids, desc="custom model", unit="video", disable=not progress):
            execute("custom_model_job", run_config, partition_key=video_id)


def _quiet(run_config: dict) -> dict:
    return {**run_config, "loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run(landing_dir: Path, home: Path, config: dict, *, progress: bool = True) -> RunSummary:
    """Register, process and export everything in ``landing_dir``; see the module docstring."""
    import dagster as dg

    home = prepare_home(home)
    os.environ["MEDVID_LANDING_DIR"] = str(landing_dir.expanduser().resolve())
    from medvid_assets.definitions import build_definitions

    defs = build_definitions(home)
    # Resolved as in a run: EnvVar values read (the salt), nested resources built.
    with dg.build_resources(
        {key: defs.resources[key] for key in ("landing_zone", "media_store", "deid")},
        instance=dg.DagsterInstance.get(),
    ) as resources:
        return _run(defs, resources, home, config, progress)


def _run(defs, resources, home: Path, config: dict, progress: bool) -> RunSummary:
    import dagster as dg
    from tqdm import tqdm

    from medvid_assets.deid import study_deidentified, video_deidentified
    from medvid_assets.dicom import registered_studies
    from medvid_assets.export import EXPORT_CHECKS
    from medvid_assets.landing import ledger_entries
    from medvid_assets.partitions import study_partitions
    from medvid_assets.quarantine import quarantine_records
    from medvid_assets.schedules import unprocessed
    from medvid_assets.sensors import scan_and_register
    from medvid_assets.storage import read_table, table_key

    zone, store, deid = resources.landing_zone, resources.media_store, resources.deid
    instance = dg.DagsterInstance.get()
    summary = RunSummary()

    cursor_path = home / CLI_CURSOR
    cursor = json.loads(cursor_path.read_text()) if cursor_path.exists() else None
    outcome, _ = scan_and_register(zone, store, deid, cursor, now=time.time(), require_stable=False)
    cursor_path.write_text(json.dumps(outcome.cursor))

    def execute(job_name: str, run_config: dict, **kwargs) -> bool:
        result = defs.resolve_job_def(job_name).execute_in_process(
            instance=instance, run_config=_quiet(run_config), raise_on_error=False, **kwargs
        )
        if not result.success:
            summary.failed_runs.append(f"{job_name} {kwargs.get('partition_key', '')}".strip())
        return result.success

    # DICOM studies first: their cine loops join the videos below.
    studies = registered_studies(store)
    known_studies = set(instance.get_dynamic_partitions(study_partitions.name))
    if missing := [s for s in studies if s not in known_studies]:
        instance.add_dynamic_partitions(study_partitions.name, missing)
    summary.studies_new = unprocessed(instance, study_partitions.name, "dicom_images")
    for study in tqdm(summary.studies_new, desc="studies", unit="study", disable=not progress):
        execute("dicom_pipeline", {}, partition_key=study)

    video_ids = [e.content_id for e in ledger_entries(store, kind="video")]
    known = set(instance.get_dynamic_partitions("videos"))
    if missing := [v for v in video_ids if v not in known]:
        instance.add_dynamic_partitions("videos", missing)
    done = instance.get_materialized_partitions(dg.AssetKey("frame_labels"))
    pending = [v for v in video_ids if v not in done]
    summary.videos_total = len(video_ids)
    summary.videos_new = pending

    new_sheets = outcome.new_of_kind("sheet")
    first_time = not instance.get_latest_materialization_event(dg.AssetKey("label_sheets"))
    if new_sheets or first_time or "labels" in config:  # changed label ids take effect too
        execute("labels_job", {"ops": {"label_sheets": {"config": config.get("labels", {})}}})
    segments_config = {"segment_labels": {"config": config.get("segments", {})}}
    video_config = {
        "ops": {
            "normalized_videos": {"config": config.get("normalize", {})},
            "video_frames": {"config": config.get("frames", {})},
            **segments_config,
        }
    }
    bar = tqdm(pending, desc="videos", unit="video", disable=not progress)
    for video_id in bar:
        bar.set_postfix_str(
            next(
                e.original_name for e in ledger_entries(store, "video") if e.content_id == video_id
            )[:40]
        )
        execute("video_pipeline", video_config, partition_key=video_id)
    if new_sheets:  # labels of videos processed earlier follow the new sheets
        for video_id in tqdm(
            [v for v in video_ids if v in done], desc="relabel", disable=not progress
        ):
            execute(
                "video_pipeline",
                {"ops": segments_config},
                partition_key=video_id,
                asset_selection=[dg.AssetKey("frame_labels"), dg.AssetKey("segment_labels")],
            )
    if (predict := config.get("predict")) is not None:
        predict_labels(execute, predict, video_ids, progress)
    export_config = {"ops": {"training_dataset": {"config": config.get("export", {})}}}
    execute("export_job", export_config)

    for video_id in video_ids:
        key = table_key("video_frames", video_id)
        if store.exists(key):
            summary.frames += read_table(store, key).num_rows
        for asset in ("frame_labels", "segment_labels"):
            if store.exists(key := table_key(asset, video_id)):
                summary.annotations += read_table(store, key).num_rows
        if store.exists(key := table_key("predicted_labels", video_id)):
            summary.predicted += read_table(store, key).num_rows
    summary.quarantined = sorted((r.file, r.stage, r.reason) for r in quarantine_records(store))
    if store.exists(table_key("dicom_studies")):
        summary.studies = read_table(store, table_key("dicom_studies")).to_pylist()
    for study in summary.studies:
        key = table_key("dicom_pixels", study["study_key"])
        pixels = read_table(store, key).to_pylist() if store.exists(key) else []
        study["cine_names"] = [f"cine_{p['instance_id']}" for p in pixels if p["kind"] == "cine"]
    processed = instance.get_materialized_partitions(dg.AssetKey("video_frames"))
    summary.not_deidentified = [
        v for v in video_ids if v in processed and not video_deidentified(store, v)
    ] + [s["study_key"] for s in summary.studies if not study_deidentified(store, s["study_key"])]
    event = instance.get_latest_materialization_event(dg.AssetKey("training_dataset"))
    if event and event.asset_materialization:
        metadata = event.asset_materialization.metadata
        summary.export_path = metadata["path"].value if "path" in metadata else None
        summary.export_counts = {
            name: metadata[name].value
            for name in ("annotations", "frames", "still_images")
            if name in metadata
        }
    for check in EXPORT_CHECKS:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("training_dataset"), check)]
        ).get(dg.AssetCheckKey(dg.AssetKey("training_dataset"), check))
        if record is not None and record.evaluation is not None:
            summary.export_checks[check] = record.evaluation.passed
    return summary


def print_summary(summary: RunSummary, home: Path) -> None:
    print()
    print(f"videos:       {summary.videos_total} ({len(summary.videos_new)} processed this run)")
    print(f"frames:       {summary.frames}")
    print(f"annotations:  {summary.annotations} (labels and segments sheets)")
    if summary.predicted:
        print(f"predicted:    {summary.predicted} frame labels (exported once reviewed)")
    print(f"studies:      {len(summary.studies)} ({len(summary.studies_new)} processed this run)")
    for study in summary.studies:
        ok = study["header_deidentified"] and study["pixels_deidentified"]
        print(
            f"  - {study['study_key']} patient {study['patient_pseudonym']}"
            f" {study['Modality'] or '?'}: {study['images']} images, {study['cine_loops']} cine"
            f" loops, {study['frames']} frames, de-identified: {'yes' if ok else 'NO'}"
        )
        if study.get("cine_names"):  # the names a labels sheet can use for them
            print(f"      cine loops: {', '.join(study['cine_names'])}")
    if summary.not_deidentified:
        print(
            f"NOT EXPORTED (de-identification check failed): {', '.join(summary.not_deidentified)}"
        )
    print(f"quarantined:  {len(summary.quarantined)}")
    for file, stage, reason in summary.quarantined:
        print(f"  - {file} [{stage}]: {reason}")
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.export_counts.items())
    print(f"export:       {summary.export_path or '(none)'}" + (f" ({counts})" if counts else ""))
    if summary.export_checks:
        checks = ", ".join(
            f"{k} {'ok' if v else 'FAILED'}" for k, v in summary.export_checks.items()
        )
        print(f"checks:       {checks}")
    if summary.failed_runs:
        print(f"FAILED runs:  {', '.join(summary.failed_runs)}")
    print(f"UI:           DAGSTER_HOME={home} dagster dev -w workspace.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medvid", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="process everything in a landing folder")
    run_p.add_argument("landing_dir", type=Path)
    run_p.add_argument("--home", type=Path, required=True, help="medvid/Dagster home folder")
    run_p.add_argument("--config", type=Path, help="YAML with normalize/frames/export sections")
    run_p.add_argument("--no-progress", action="store_true")
    demo_p = sub.add_parser("demo", help="run on the sample clips bundled with medvid")
    demo_p.add_argument("--home", type=Path, default=Path("demo_home"))
    demo_p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "demo":
        landing = args.home.expanduser().resolve() / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        for sample in sorted((REPO_SAMPLES / "landing").iterdir()):
            if not (landing / sample.name).exists():
                shutil.copyfile(sample, landing / sample.name)
        config = load_config(REPO_SAMPLES / "demo_config.yaml")
    else:
        landing = args.landing_dir
        if not landing.is_dir():
            parser.error(f"landing folder not found: {landing}")
        config = load_config(args.config)
    summary = run(landing, args.home, config, progress=not args.no_progress)
    print_summary(summary, args.home.expanduser().resolve())
    return 1 if summary.failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
