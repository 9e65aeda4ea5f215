"""medvid_assets.executors: which executor a code location gets, and how a GPU step is routed
under Celery and placed under Kubernetes."""

from __future__ import annotations

import os
from unittest import mock

import dagster as dg
import pytest
import yaml
from dagster._core.execution.api import create_execution_plan

from medvid_assets.executors import (
    CELERY_QUEUE_TAG,
    DEFAULT_QUEUE,
    GPU_OP_TAGS,
    GPU_QUEUE,
    GPU_RUN_TAGS,
    executor_from_env,
)
from tests.deploy.conftest import DOCKER


@pytest.fixture
def executor_env():
    with mock.patch.dict(os.environ):
        os.environ.pop("MEDVID_EXECUTOR", None)
        yield os.environ


def test_executor_from_env_defaults_to_multiprocess(executor_env):
    assert executor_from_env() is dg.multiprocess_executor


def test_executor_from_env_picks_celery(executor_env):
    pytest.importorskip("dagster_celery", reason="the celery extra is not installed")
    executor_env["MEDVID_EXECUTOR"] = "celery"
    assert executor_from_env().name == "celery"


def test_executor_from_env_picks_k8s(executor_env):
    dagster_k8s = pytest.importorskip("dagster_k8s", reason="the k8s extra is not installed")
    executor_env["MEDVID_EXECUTOR"] = "k8s"
    assert executor_from_env() is dagster_k8s.k8s_job_executor


def test_executor_from_env_rejects_an_unknown_executor(executor_env):
    executor_env["MEDVID_EXECUTOR"] = "dask"
    with pytest.raises(ValueError, match="multiprocess, celery, k8s"):
        executor_from_env()


def test_gpu_op_tags_send_a_step_to_the_gpu_queue():
    tags = pytest.importorskip("dagster_celery.tags", reason="the celery extra is not installed")
    assert CELERY_QUEUE_TAG == tags.DAGSTER_CELERY_QUEUE_TAG
    assert GPU_OP_TAGS[tags.DAGSTER_CELERY_QUEUE_TAG] == "gpu"


def test_gpu_op_tags_give_a_k8s_step_pod_one_gpu_and_the_gpu_node_toleration():
    job = pytest.importorskip("dagster_k8s.job", reason="the k8s extra is not installed")
    config = job.get_user_defined_k8s_config(GPU_OP_TAGS)
    assert config.container_config["resources"]["limits"] == {"nvidia.com/gpu": 1}
    assert config.pod_spec_config["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_gpu_op_tags_reach_the_step_the_executor_routes():
    """The Celery and k8s executors read ``step.tags`` of the execution plan."""

    @dg.asset(pool="gpu", op_tags=GPU_OP_TAGS)
    def inferred() -> None: ...

    job = dg.Definitions(assets=[inferred]).resolve_implicit_global_asset_job_def()
    step = create_execution_plan(job).get_step_by_key("inferred")
    assert step.tags[CELERY_QUEUE_TAG] == GPU_QUEUE
    assert step.pool == "gpu"


def test_one_gpu_run_at_a_time_is_the_limit_of_the_gpu_run_tag():
    runs = yaml.safe_load((DOCKER / "dagster.yaml").read_text())["concurrency"]["runs"]
    [(key, _)] = GPU_RUN_TAGS.items()
    assert {"key": key, "limit": 1} in runs["tag_concurrency_limits"]


def test_compose_workers_listen_on_the_executor_queues():
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]

    def queues(service: str) -> list[str]:
        command = services[service]["command"]
        return [command[i + 1] for i, arg in enumerate(command) if arg == "-Q"]

    assert queues("worker-default") == [DEFAULT_QUEUE]
    assert queues("worker-gpu") == [GPU_QUEUE]
