"""The one planner: which runs medvid needs next, from what the instance and the store say.

The landing and pipeline sensors, the daily schedule and the ``medvid`` command all call
:func:`plan`; it only looks (runs, materializations, partitions, the store's records) and
returns :class:`PlannedRun` s. Rules, in order:

1. **intake**: every UTC day with settled landing files that have no outcome yet gets an
   ``intake_job`` run for exactly those file versions.
2. **batches**: every batch (:mod:`medvid.batches`) that was never through the pipeline, or
   whose members changed since (a video or study added by a later intake), gets a
   ``batch_pipeline`` run; its members already done are reused, quarantined ones skipped.
3. When nothing of 1-2 is planned or running (the work is *drained*): ``labels_job`` when a
   sheet version, the label settings or any video's frames changed since the labels were last
   made; then the label model and the predictions of every batch when the home config has a
   ``predict`` section; then ``export_job`` (``duplicate_groups``, ``fields_of_view``, then
   ``training_dataset`` and its tables) when anything the dataset reads, or the export or
   cleaning settings, changed since the last export.

A unit already running is never planned twice. A unit whose runs failed
:data:`MAX_ATTEMPTS` times at the same input version is left alone (the summary and the sensor's
log say so) until its inputs change. Run keys carry the attempt number, so Dagster's run-key
deduplication never blocks a retry and never launches the same attempt twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import dagster as dg

from medvid.batches import members_digest, nonempty_batches
from medvid.intake.pending import Look
from medvid.labels.sheet_versions import labels_version
from medvid.settings import MedvidSettings, fingerprint
from medvid_assets.orchestration.jobs import BATCH_TERMINAL_ASSET
from medvid_assets.runs import (
    UNIT_TAG,
    VERSION_TAG,
    failures,
    in_progress_runs,
)
from medvid_resources import MediaStore

MAX_ATTEMPTS = 3

#: What the labels read, and what the export reads (asset keys).
LABEL_INPUTS = ("video_frames",)
#: A new label model is trained when its labels, the patients (label_sheets: which frames are
#: held out) or the pretrained backbone it may start from change.
MODEL_INPUTS = (
    "frame_labels",
    "segment_labels",
    "labelbox_labels",
    "cold_label_answers",
    "label_sheets",
    "pretrained_backbone",
)
EXPORT_INPUTS = (
    "video_frames",
    "frame_labels",
    "segment_labels",
    "dicom_images",
    "dicom_instances",
    "predicted_labels",
    "custom_model_labels",
    "labelbox_labels",
    "cold_label_answers",
    "duplicate_groups",
    "fields_of_view",
)


@dataclass(frozen=True)
class PlannedRun:
    """One run to launch: which ``unit`` of work, the job and partition, its run config, the
    input ``version`` it was planned at, the ``attempt`` number and why."""

    unit: str
    job_name: str
    partition_key: str | None
    version: str
    attempt: int
    reason: str
    run_config: dict = field(default_factory=dict)

    @property
    def run_key(self) -> str:
        return f"{self.unit}:{self.version}:{self.attempt}"

    @property
    def tags(self) -> dict[str, str]:
        return {UNIT_TAG: self.unit, VERSION_TAG: self.version}

    def run_request(self) -> dg.RunRequest:
        return dg.RunRequest(
            run_key=self.run_key,
            job_name=self.job_name,
            partition_key=self.partition_key,
            run_config=self.run_config,
            tags=self.tags,
        )


@dataclass
class Plan:
    """What :func:`plan` decided: the runs, the units running now, and the units given up."""

    runs: list[PlannedRun] = field(default_factory=list)
    running: set[str] = field(default_factory=set)
    given_up: list[str] = field(default_factory=list)
    pending_batches: set[str] = field(default_factory=set)

    def units(self) -> set[str]:
        return {r.unit for r in self.runs}


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


class _Planner:
    def __init__(self, instance: dg.DagsterInstance, store: MediaStore, settings: MedvidSettings):
        self.instance, self.store, self.settings = instance, store, settings
        self.plan = Plan()
        running = in_progress_runs(instance)
        self.plan.running = {r.tags[UNIT_TAG] for r in running if UNIT_TAG in r.tags}

    def add(self, unit, job_name, partition_key, version, reason, run_config=None) -> bool:
        if unit in self.plan.running:
            return False
        attempt = failures(self.instance, unit, version)
        if attempt >= MAX_ATTEMPTS:
            self.plan.given_up.append(unit)
            return False
        self.plan.runs.append(
            PlannedRun(unit, job_name, partition_key, version, attempt, reason, run_config or {})
        )
        return True

    def latest(self, asset: str) -> dg.EventLogRecord | None:
        records = self.instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        return records[0] if records else None

    def changed_since(self, assets, storage_id: int | None) -> bool:
        """Whether any of ``assets`` was materialized after ``storage_id`` (or ever, if None)."""
        for asset in assets:
            records = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=storage_id),
                limit=1,
            ).records
            if records:
                return True
        return False

    @staticmethod
    def metadata(record: dg.EventLogRecord | None, name: str):
        if record is None or record.asset_materialization is None:
            return None
        value = record.asset_materialization.metadata.get(name)
        return value.value if value is not None else None

    # --- the rules ---------------------------------------------------------------------------

    def intake(self, look: Look) -> None:
        for day in look.days():
            versions = sorted(p.fingerprint for p in look.ready if p.day == day)
            self.add(
                f"intake:{day}",
                "intake_job",
                day,
                _digest(versions),
                f"{len(versions)} landing file(s) to take in",
                {"ops": {"landing_intake": {"config": {"fingerprints": versions}}}},
            )

    def batches(self, touched: set[str] | None) -> set[str]:
        """Plan the batches that need the pipeline; returns those not known to be done (so a
        sensor can look at them again next tick). ``touched``: the batches whose membership may
        have changed (None: look at every batch)."""
        partitions = nonempty_batches(self.store)
        done = set(self.instance.get_materialized_partitions(dg.AssetKey(BATCH_TERMINAL_ASSET)))
        candidates = set(partitions) - done
        candidates |= (set(partitions) if touched is None else touched) & done
        pending = set()
        for batch in sorted(candidates):
            digest = members_digest(self.store, batch)
            if batch in done:
                records = self.instance.fetch_materializations(
                    dg.AssetRecordsFilter(
                        asset_key=dg.AssetKey(BATCH_TERMINAL_ASSET), asset_partitions=[batch]
                    ),
                    limit=1,
                ).records
                if self.metadata(records[0] if records else None, "members_digest") == digest:
                    continue
            reason = "new batch" if batch not in done else "members added"
            pending.add(batch)
            self.add(f"batch:{batch}", "batch_pipeline", batch, digest, reason)
        return pending

    def drained(self, look: Look | None) -> bool:
        busy = {u.split(":", 1)[0] for u in self.plan.units() | self.plan.running}
        pending_landing = bool(look and (look.ready or look.waiting))
        return not (busy & {"intake", "batch"}) and not pending_landing

    def labels(self) -> bool:
        """Whether the labels are planned now or still being made (later rules wait)."""
        if "labels" in self.plan.running:
            return True
        version = labels_version(self.store, self.settings.labels, self.settings.segments)
        last = self.latest("frame_labels")
        made = self.metadata(self.latest("label_sheets"), "labels_version")
        if made != version:
            return self.add("labels", "labels_job", None, version, "sheets or label settings")
        if last is None or self.changed_since(LABEL_INPUTS, last.storage_id):
            version = _digest(version, last.storage_id if last else None)
            return self.add("labels", "labels_job", None, version, "frames of new videos")
        return False

    def predictions(self) -> bool:
        """Whether the label model or predictions are planned now or still being made (the
        export waits for them)."""
        predict = self.settings.predict
        if predict is None:
            return False
        if any(u == "model" or u.startswith(("predict:", "custom:")) for u in self.plan.running):
            return True
        planned = False
        done = set(self.instance.get_materialized_partitions(dg.AssetKey(BATCH_TERMINAL_ASSET)))
        if predict.model is not None:
            model = self.latest("label_model")
            if model is None or self.changed_since(MODEL_INPUTS, model.storage_id):
                version = _digest(fingerprint(predict.model), model.storage_id if model else None)
                return self.add("model", "label_model_job", None, version, "labels changed")
            predicted = self._materialized_after("predicted_labels", model.storage_id)
            for batch in sorted(done - predicted):
                planned |= self.add(
                    f"predict:{batch}", "predict_job", batch, str(model.storage_id), "new model"
                )
        if predict.custom_model is not None:
            labelled = set(
                self.instance.get_materialized_partitions(dg.AssetKey("custom_model_labels"))
            )
            version = fingerprint(predict.custom_model)
            for batch in sorted(done - labelled):
                planned |= self.add(
                    f"custom:{batch}", "custom_model_job", batch, version, "new batch"
                )
        return planned

    def export(self) -> None:
        last = self.latest("training_dataset")
        made = self.metadata(last, "settings_fingerprint")
        cleaned = self.metadata(last, "cleaning_settings_fingerprint")
        if (
            last is None
            or made != fingerprint(self.settings.export)
            or cleaned != fingerprint(self.settings.cleaning)
        ):
            self.add("export", "export_job", None, _digest(None), "no dataset with these settings")
        elif self.changed_since(EXPORT_INPUTS, last.storage_id):
            self.add("export", "export_job", None, _digest(last.storage_id), "inputs changed")

    # --- helpers -----------------------------------------------------------------------------

    def _materialized_after(self, asset: str, storage_id: int) -> set[str]:
        # pages of the event storage's maximum (10,000 records per fetch)
        found: set[str] = set()
        cursor = None
        while True:
            page = self.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=storage_id),
                limit=10_000,
                cursor=cursor,
            )
            found.update(r.partition_key for r in page.records if r.partition_key)
            if not page.has_more:
                return found
            cursor = page.cursor


def plan(
    instance: dg.DagsterInstance,
    store: MediaStore,
    settings: MedvidSettings,
    *,
    look: Look | None = None,
    intake: bool = True,
    pipelines: bool = True,
    touched: set[str] | None = None,
) -> Plan:
    """The runs medvid needs now (see the module docstring). ``look`` is what a look at the
    landing zone found (None: do not plan intake, and do not wait for the landing zone);
    ``touched``: the batches whose members may have changed since the caller last looked (None:
    every batch is looked at). :attr:`Plan.pending_batches` says which are not done yet."""
    planner = _Planner(instance, store, settings)
    if intake and look is not None:
        planner.intake(look)
    if pipelines:
        planner.plan.pending_batches = planner.batches(touched)
        if planner.drained(look) and not planner.labels() and not planner.predictions():
            planner.export()
    return planner.plan
