"""The Celery executor of medvid_assets.executors against a real RabbitMQ: two workers started
with docker/compose.yaml's commands (queues ``default`` and ``gpu``), a run on the production
storage block, each step on the worker of its queue."""

from __future__ import annotations

import os
import socket
from unittest import mock

import dagster as dg
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository

from tests.deploy.conftest import DOCKER, REPO, VENV_BIN, write_instance_yaml

# dagster-celery registers its step task again for every step it submits
pytestmark = pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered")

pytest.importorskip(
    "dagster_celery", reason="the celery extra is not installed: pip install -e '.[celery]'"
)


def compose_worker_command(service: str) -> list[str]:
    """The command docker/compose.yaml gives ``service``, with this venv's ``celery``."""
    command = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"][service]["command"]
    assert command[0] == "celery"
    return [str(VENV_BIN / "celery"), *command[1:]]


def celery_pipeline():
    """The test job as a worker rebuilds it: from its module, by name."""
    repository = ReconstructableRepository.for_module(
        "tests.deploy.celery_job", "defs", working_directory=str(REPO)
    )
    return repository.get_reconstructable_job("celery_pipeline")


def step_workers(instance: dg.DagsterInstance, run_id: str) -> dict[str, str]:
    """Step key -> the Celery worker (``name@host``) that reported executing it."""
    workers = {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        if entry.dagster_event_type != dg.DagsterEventType.ENGINE_EVENT:
            continue
        metadata = entry.dagster_event.engine_event_data.metadata
        if "Celery worker" in metadata:
            workers[entry.step_key] = metadata["Celery worker"].value
    return workers


@pytest.fixture
def celery_env(postgres_db, amqp_vhost, tmp_path):
    """Environment of the run worker (this process) and of the Celery workers: the instance on
    a fresh database, pools as in production, the broker in CELERY_BROKER_URL."""
    production = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    write_instance_yaml(tmp_path / "dagster_home", concurrency=production["concurrency"])
    env = {
        **postgres_db.env(),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "CELERY_BROKER_URL": amqp_vhost,
        "PYTHONPATH": str(REPO),
    }
    with mock.patch.dict(os.environ, env):
        yield dict(os.environ)


def test_celery_run_fails_naming_the_broker_variable_when_it_is_unset(tmp_path):
    with mock.patch.dict(os.environ), dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        os.environ.pop("CELERY_BROKER_URL", None)
        try:
            result = dg.execute_job(celery_pipeline(), instance=instance, raise_on_error=False)
        except dg.DagsterInvalidConfigError as error:
            message = str(error)
        else:
            assert not result.success
            message = " ".join(str(e.message) for e in instance.all_logs(result.run_id))
    assert 'environment variable "CELERY_BROKER_URL" which is not set' in message


def test_steps_run_on_the_worker_of_their_queue(celery_env, processes):
    for service in ("worker-default", "worker-gpu"):
        processes.start(service, compose_worker_command(service), env=celery_env, cwd=REPO)
    for worker in processes.started:
        worker.wait_for_log(r"\S+@\S+ ready\.", timeout=120)

    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(celery_pipeline(), instance=instance)
        assert result.success
        host = socket.gethostname()
        assert step_workers(instance, result.run_id) == {
            "decoded": f"default@{host}",
            "inferred": f"gpu@{host}",
        }
        latest = instance.get_latest_materialization_event(dg.AssetKey("inferred"))
        assert latest is not None and latest.run_id == result.run_id
