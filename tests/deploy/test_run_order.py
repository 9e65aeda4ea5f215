"""With a daemon, runs overlap: the pipeline sensor ticks while a labels or prediction run is
still running. The planner's order (labels, then the model and predictions, then the
export) must hold across ticks, not only within one: the export waits for them."""

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from medvid.labels.sheet_versions import labels_version
from medvid.settings import MedvidSettings
from medvid_assets.orchestration.planner import plan
from medvid_assets.runs import UNIT_TAG
from medvid_resources import LocalMediaStore

PREDICT = MedvidSettings.model_validate({"predict": {"model": {"strategy": "blitz"}}})


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def running(instance: dg.DagsterInstance, job_name: str, unit: str) -> None:
    create_run_for_test(
        instance, job_name=job_name, status=dg.DagsterRunStatus.STARTED, tags={UNIT_TAG: unit}
    )


def made(instance: dg.DagsterInstance, asset: str, **metadata) -> None:
    """A materialization of ``asset``, as its run would have recorded it."""
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, metadata=metadata))


def labels_made(instance, tmp_path, settings: MedvidSettings) -> None:
    """The labels are up to date: sheets at the current labels version, then frame labels."""
    store = LocalMediaStore(root=str(tmp_path))
    version = labels_version(store, settings.labels, settings.segments)
    made(instance, "label_sheets", labels_version=version)
    made(instance, "frame_labels")


def units(instance, tmp_path, settings=None) -> list[str]:
    store = LocalMediaStore(root=str(tmp_path))
    planned = plan(instance, store, settings or MedvidSettings(), intake=False)
    return sorted(run.unit for run in planned.runs)


def test_an_empty_home_plans_its_labels_first(instance, tmp_path):
    assert units(instance, tmp_path) == ["labels"]


def test_the_export_waits_while_the_labels_run_is_running(instance, tmp_path):
    running(instance, "labels_job", "labels")
    assert units(instance, tmp_path) == []


def test_with_labels_made_the_export_comes_next(instance, tmp_path):
    labels_made(instance, tmp_path, MedvidSettings())
    assert units(instance, tmp_path) == ["export"]


def test_the_export_waits_while_the_label_model_run_is_running(instance, tmp_path):
    labels_made(instance, tmp_path, PREDICT)
    assert units(instance, tmp_path, PREDICT) == ["model"]
    running(instance, "label_model_job", "model")
    assert units(instance, tmp_path, PREDICT) == []


def test_the_export_waits_while_a_prediction_run_is_running(instance, tmp_path):
    labels_made(instance, tmp_path, PREDICT)
    made(instance, "label_model")
    assert units(instance, tmp_path, PREDICT) == ["export"]
    running(instance, "predict_job", "predict:2026-11-30|03")
    assert units(instance, tmp_path, PREDICT) == []
