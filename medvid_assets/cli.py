"""The ``medvid`` command line: headless runs on the same storage as ``dagster dev``.

``medvid run LANDING_DIR --home HOME_DIR [--config FILE]`` takes in everything in LANDING_DIR
and launches, on the Dagster instance in HOME_DIR, exactly the runs medvid's sensors would
(:func:`medvid_assets.orchestration.planner.plan`: the same jobs, partitions, tags and settings),
one after another in this process, until nothing is left to do; then prints a summary.
``--config`` replaces the home config (``HOME_DIR/medvid.yaml``), which the sensors, the
schedule and the UI read too. Inputs already processed are skipped. Two invocations on one home
never run at once: the second waits for the first (``--no-wait``: it exits with status 3).
Runs left STARTED by a killed process and temporary files of dead writers are cleaned up first.
Exit status: 0 when every run succeeded (quarantined inputs are not failures), 1 otherwise.
The command first restarts itself (same PID) with medvid's glibc malloc settings
(:data:`medvid.memory.MALLOC_TUNABLES`); ``MEDVID_MALLOC_TUNABLES=0`` turns that off.

``medvid demo`` runs the same on the sample clips and sheets bundled with medvid.
"""

import argparse
import fcntl
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_SAMPLES = Path(__file__).resolve().parents[1] / "samples"
INSTANCE_TEMPLATE = Path(__file__).with_name("instance_template.yaml")
LOCK_FILE = ".medvid-run.lock"


@dataclass
class RunSummary:
    videos_total: int = 0
    videos_new: list[str] = field(default_factory=list)
    videos_quarantined: list[str] = field(default_factory=list)
    frames: int = 0
    annotations: int = 0
    predicted: int = 0
    studies: list[dict] = field(default_factory=list)
    studies_new: list[str] = field(default_factory=list)
    not_deidentified: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    quarantined: list[tuple[str, str, str]] = field(default_factory=list)
    unknown_sheet_rows: int = 0
    export_path: str | None = None
    export_counts: dict[str, int] = field(default_factory=dict)
    export_checks: dict[str, bool] = field(default_factory=dict)
    reaped_runs: int = 0
    removed_temporaries: int = 0
    settings_changed: list[str] = field(default_factory=list)
    runs: int = 0


def prepare_home(home: Path) -> Path:
    """Create HOME_DIR with a ``dagster.yaml`` (SQLite storage, gpu pool) unless it has one, and
    point ``DAGSTER_HOME`` and ``MEDVID_HOME`` at it."""
    home = home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["MEDVID_HOME"] = str(home)
    return home


class HomeLock:
    """An exclusive lock on a home folder (``flock`` on ``.medvid-run.lock``), released when the
    process ends, however it ends."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            return False
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def update_home_config(home: Path, path: Path | None) -> list[str]:
    """Make ``path`` (a ``--config`` file) the home config; returns the fields that changed.
    Raises SystemExit with the reason when the file is invalid."""
    from medvid.io import write_bytes_atomic
    from medvid.settings import (
        SETTINGS_FILE,
        SettingsError,
        changed_fields,
        dump_settings,
        load_settings,
    )

    if path is None:
        return []
    try:
        new = load_settings(path)
        old = load_settings(home / SETTINGS_FILE)
    except SettingsError as error:
        raise SystemExit(f"medvid: {error}") from None
    changed = changed_fields(old.model_dump(mode="json"), new.model_dump(mode="json"))
    if changed or not (home / SETTINGS_FILE).exists():
        write_bytes_atomic(home / SETTINGS_FILE, dump_settings(new).encode())
    return changed


def run(
    landing_dir: Path,
    home: Path,
    config: Path | None = None,
    *,
    progress: bool = True,
    wait: bool = True,
) -> RunSummary:
    """Take in and process everything in ``landing_dir``; see the module docstring."""
    home = prepare_home(home)
    lock = HomeLock(home)
    if not lock.acquire(wait):
        print(f"medvid: another medvid run is using {home}; not waiting (--no-wait)")
        raise SystemExit(3)
    try:
        summary = RunSummary(settings_changed=update_home_config(home, config))
        _run(landing_dir.expanduser().resolve(), home, summary, progress)
        return summary
    finally:
        lock.release()


def _run(landing_dir: Path, home: Path, summary: RunSummary, progress: bool) -> None:
    import dagster as dg
    from tqdm import tqdm

    from medvid.dicom.registration import registered_studies
    from medvid.intake.ledger import ledger_entries
    from medvid_assets.definitions import build_definitions
    from medvid_assets.orchestration.launch import run_until_done
    from medvid_assets.runs import reap_stale_runs, remove_stale_temporaries

    defs = build_definitions(home, landing_dir)
    instance = dg.DagsterInstance.get()
    summary.reaped_runs = len(reap_stale_runs(instance))
    summary.removed_temporaries = len(remove_stale_temporaries(home))
    keys = ("landing_zone", "media_store", "settings")
    with dg.build_resources({k: defs.resources[k] for k in keys}, instance=instance) as res:
        known_videos = {e.content_id for e in ledger_entries(res.media_store, kind="video")}
        known_studies = set(registered_studies(res.media_store))
        launched = run_until_done(
            defs,
            instance,
            res,
            on_batch=lambda kind, batch: tqdm(batch, desc=kind, unit="run", disable=not progress),
        )
        summary.runs = len(launched.runs)
        summary.failed_runs = launched.failed
        summary.given_up = launched.given_up
        summarize(instance, res.media_store, summary, known_videos, known_studies)


def summarize(instance, store, summary: RunSummary, known_videos, known_studies) -> None:
    """Fill ``summary`` from the instance and the store (display names only)."""
    import dagster as dg
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    from medvid.catalog.keys import Tables, deid_status_key, table_key
    from medvid.deid.store import study_deidentified, video_deidentified
    from medvid.dicom.registration import registered_studies
    from medvid.intake.ledger import ledger_entries, ledger_entry_or_none
    from medvid.quarantine import quarantine_records, quarantined_ids
    from medvid.store import read_table
    from medvid_assets.export.assets import EXPORT_CHECKS

    videos = sorted(e.content_id for e in ledger_entries(store, kind="video"))
    summary.videos_total = len(videos)
    summary.videos_new = [v for v in videos if v not in known_videos]
    quarantined = quarantined_ids(store)
    summary.videos_quarantined = [v for v in videos if v in quarantined]
    for video_id in videos:
        if store.exists(key := table_key(Tables.VIDEO_FRAMES, video_id)):
            summary.frames += read_table(store, key).num_rows
        for asset in (Tables.FRAME_LABELS, Tables.SEGMENT_LABELS):
            if store.exists(key := table_key(asset, video_id)):
                summary.annotations += read_table(store, key).num_rows
        if store.exists(key := table_key(Tables.PREDICTED_LABELS, video_id)):
            summary.predicted += read_table(store, key).num_rows
        checked = store.exists(deid_status_key("video", video_id))
        if checked and video_id not in quarantined and not video_deidentified(store, video_id):
            entry = ledger_entry_or_none(store, video_id)
            summary.not_deidentified.append(entry.display_name if entry else video_id)
    summary.quarantined = sorted((r.file, r.stage, r.reason) for r in quarantine_records(store))
    studies = registered_studies(store)
    summary.studies_new = [s for s in studies if s not in known_studies]
    if store.exists(table_key(Tables.DICOM_STUDIES)):
        summary.studies = read_table(store, table_key(Tables.DICOM_STUDIES)).to_pylist()
    for study in summary.studies:
        key = table_key(Tables.DICOM_PIXELS, study["study_key"])
        pixels = read_table(store, key).to_pylist() if store.exists(key) else []
        study["cine_names"] = [f"cine_{p['instance_id']}" for p in pixels if p["kind"] == "cine"]
        if study["study_key"] not in quarantined and not study_deidentified(
            store, study["study_key"]
        ):
            summary.not_deidentified.append(study["study_key"])
    sheets = instance.fetch_materializations(dg.AssetKey("label_sheets"), limit=1).records
    if sheets and sheets[0].asset_materialization:
        value = sheets[0].asset_materialization.metadata.get("rows_naming_unknown_videos")
        summary.unknown_sheet_rows = int(value.value) if value is not None else 0
    exported = instance.fetch_materializations(dg.AssetKey("training_dataset"), limit=1).records
    if exported and exported[0].asset_materialization:
        metadata = exported[0].asset_materialization.metadata
        summary.export_path = metadata["path"].value if "path" in metadata else None
        summary.export_counts = {
            name: metadata[name].value
            for name in ("annotations", "frames", "still_images")
            if name in metadata
        }
    check_keys = [dg.AssetCheckKey(dg.AssetKey("training_dataset"), c) for c in EXPORT_CHECKS]
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    for key, record in records.items():
        if record.status == AssetCheckExecutionRecordStatus.SUCCEEDED:
            summary.export_checks[key.name] = True
        elif record.status == AssetCheckExecutionRecordStatus.FAILED:
            summary.export_checks[key.name] = False


def print_summary(summary: RunSummary, home: Path) -> None:
    print()
    if summary.reaped_runs or summary.removed_temporaries:
        print(
            f"cleaned up:   {summary.reaped_runs} run(s) left STARTED by a dead process,"
            f" {summary.removed_temporaries} temporary file(s) of dead writers"
        )
    if summary.settings_changed:
        print(f"home config:  updated ({', '.join(summary.settings_changed)})")
    print(f"runs:         {summary.runs}")
    unreadable = len(summary.videos_quarantined)
    print(
        f"videos:       {summary.videos_total} ({len(summary.videos_new)} new this run"
        + (f", {unreadable} quarantined" if unreadable else "")
        + ")"
    )
    print(f"frames:       {summary.frames}")
    print(f"annotations:  {summary.annotations} (labels and segments sheets)")
    if summary.unknown_sheet_rows:
        print(f"sheet rows naming videos not seen yet: {summary.unknown_sheet_rows} (kept)")
    if summary.predicted:
        print(f"predicted:    {summary.predicted} frame labels (exported once reviewed)")
    print(f"studies:      {len(summary.studies)} ({len(summary.studies_new)} new this run)")
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
            "NOT EXPORTED (de-identification check found PHI):"
            f" {', '.join(summary.not_deidentified)}"
        )
    print(f"quarantined:  {len(summary.quarantined)} (unreadable or unsupported inputs)")
    for file, stage, reason in summary.quarantined:
        print(f"  - {file} [{stage}]: {reason}")
    counts = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.export_counts.items())
    print(f"export:       {summary.export_path or '(none)'}" + (f" ({counts})" if counts else ""))
    if summary.export_checks:
        checks = ", ".join(
            f"{k} {'ok' if v else 'FAILED'}" for k, v in sorted(summary.export_checks.items())
        )
        print(f"checks:       {checks}")
    if summary.failed_runs:
        print(f"FAILED runs:  {', '.join(summary.failed_runs)} (details: the UI's run pages)")
    if summary.given_up:
        print(f"given up:     {', '.join(summary.given_up)} (failed 3 times; fix and re-run)")
    print(f"UI:           DAGSTER_HOME={home} dagster dev -w workspace.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="medvid", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="take in and process everything in a landing folder")
    run_p.add_argument("landing_dir", type=Path)
    run_p.add_argument("--home", type=Path, required=True, help="medvid/Dagster home folder")
    run_p.add_argument("--config", type=Path, help="YAML settings; becomes the home config")
    run_p.add_argument("--no-progress", action="store_true")
    run_p.add_argument(
        "--no-wait", action="store_true", help="exit (status 3) if another run uses the home"
    )
    demo_p = sub.add_parser("demo", help="run on the sample clips bundled with medvid")
    demo_p.add_argument("--home", type=Path, default=Path("demo_home"))
    demo_p.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    if args.command == "demo":
        landing = args.home.expanduser().resolve() / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        for sample in sorted((REPO_SAMPLES / "landing").iterdir()):
            if not (landing / sample.name).exists():
                shutil.copy2(sample, landing / sample.name)
        config = REPO_SAMPLES / "demo_config.yaml"
        wait = True
    else:
        landing = args.landing_dir
        if not landing.is_dir():
            parser.error(f"landing folder not found: {landing}")
        config = args.config
        wait = not args.no_wait
    summary = run(landing, args.home, config, progress=not args.no_progress, wait=wait)
    print_summary(summary, args.home.expanduser().resolve())
    return 1 if summary.failed_runs else 0


def console() -> None:
    """The ``medvid`` command's entry point: restarted first with medvid's malloc settings
    (:func:`medvid.memory.reexec_with_malloc_tunables`, same PID), then :func:`main`."""
    from medvid.memory import reexec_with_malloc_tunables

    reexec_with_malloc_tunables()
    sys.exit(main())


if __name__ == "__main__":
    console()
