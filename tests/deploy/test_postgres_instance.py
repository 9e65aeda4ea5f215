"""The production instance's storage block (docker/dagster.yaml) on a real PostgreSQL, with
dagster-postgres 0.29 and SQLAlchemy 2.1 as pinned."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value
from dagster_postgres.utils import pg_url_from_config
from sqlalchemy.engine import make_url

from tests.deploy.conftest import DOCKER, PostgresDatabase, storage_block, write_instance_yaml


@dg.asset
def upstream() -> int:
    return 1


@dg.asset
def downstream(upstream: int) -> int:
    return upstream + 1


small_job = dg.define_asset_job("small_job", selection=[upstream, downstream])
small_defs = dg.Definitions(assets=[upstream, downstream], jobs=[small_job])


@pytest.fixture
def pg_env(postgres_db: PostgresDatabase):
    with mock.patch.dict(os.environ, postgres_db.env()):
        yield postgres_db


def instance_from_block(dagster_home: Path) -> dg.DagsterInstance:
    write_instance_yaml(dagster_home)
    return dg.DagsterInstance.from_config(str(dagster_home))


def test_storage_block_runs_a_job_and_reads_back_its_run_and_events(pg_env, tmp_path):
    with instance_from_block(tmp_path / "home") as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = small_defs.resolve_job_def("small_job").execute_in_process(instance=instance)
        assert result.success

    # a second instance from the same file: what a webserver or daemon would read
    with instance_from_block(tmp_path / "other_home") as reader:
        run = reader.get_run_by_id(result.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        events = [r.event_log_entry for r in reader.get_records_for_run(result.run_id).records]
        types = [e.dagster_event_type for e in events if e.is_dagster_event]
        assert dg.DagsterEventType.RUN_START in types
        assert types[-1] == dg.DagsterEventType.RUN_SUCCESS
        assert types.count(dg.DagsterEventType.STEP_SUCCESS) == 2
        assert types.count(dg.DagsterEventType.ASSET_MATERIALIZATION) == 2
        latest = reader.get_latest_materialization_event(dg.AssetKey("downstream"))
        assert latest is not None and latest.run_id == result.run_id


def test_storage_block_keeps_dynamic_partitions(pg_env, tmp_path):
    with instance_from_block(tmp_path / "home") as instance:
        instance.add_dynamic_partitions("videos", ["v2", "v1"])
        instance.add_dynamic_partitions("videos", ["v1", "v3"])
        assert sorted(instance.get_dynamic_partitions("videos")) == ["v1", "v2", "v3"]
        assert instance.has_dynamic_partition("videos", "v3")


def resolved_postgres_db(without: str | None = None) -> dict:
    """docker/dagster.yaml's ``postgres_db`` with its ``env:`` entries read from the
    environment (as the instance loader does), less the key ``without``."""
    block = storage_block()["storage"]["postgres"]["postgres_db"]
    return {
        key: os.environ[value["env"]] if isinstance(value, dict) else value
        for key, value in block.items()
        if key != without
    }


def test_storage_block_selects_the_psycopg2_driver(pg_env):
    url = pg_url_from_config({"postgres_db": resolved_postgres_db()})
    assert make_url(url).get_dialect().driver == "psycopg2"


def test_a_block_without_scheme_would_need_psycopg3(pg_env):
    """Why the block names its scheme: without it dagster-postgres builds a bare
    ``postgresql://`` URL, which SQLAlchemy 2.1 maps to psycopg 3, a driver medvid does not
    install and whose server-side parameters break dagster-postgres' ``NOTIFY run_events, $1``."""
    url = pg_url_from_config({"postgres_db": resolved_postgres_db(without="scheme")})
    assert url.startswith("postgresql://")
    assert make_url(url).get_dialect().driver == "psycopg"


def test_instance_ref_sent_to_workers_names_the_password_variable_not_its_value(pg_env, tmp_path):
    """The Celery executor sends ``instance.get_ref()`` through the broker with every step."""
    secret = "s3cret-pg-password-value"
    with mock.patch.dict(os.environ, {"DAGSTER_PG_PASSWORD": secret}):
        write_instance_yaml(tmp_path / "home")
        ref = serialize_value(InstanceRef.from_dir(str(tmp_path / "home")))
    assert "DAGSTER_PG_PASSWORD" in ref
    assert secret not in ref


def test_the_whole_production_instance_config_loads(pg_env, tmp_path):
    """Every section of docker/dagster.yaml passes Dagster's instance schema and builds."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((DOCKER / "dagster.yaml").read_text())
    env = {
        "DAGSTER_COMPUTE_LOG_BUCKET": "dagster-compute-logs",
        "MEDVID_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_REGION": "us-east-1",
    }
    with mock.patch.dict(os.environ, env), dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.max_concurrent_runs == 8
        assert concurrency.run_queue_config.tag_concurrency_limits == [
            {"key": "medvid/gpu", "limit": 1}
        ]
        assert concurrency.pool_config.default_pool_limit == 1
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
