"""Fixtures of the deployment tests: a fresh PostgreSQL database, a fresh RabbitMQ virtual host,
and the processes a test starts (always stopped). The services are the local ones (PostgreSQL on
127.0.0.1:5432 with trust auth, RabbitMQ on 127.0.0.1:5672 with guest/guest), overridable with
MEDVID_TEST_PG_* and MEDVID_TEST_AMQP_*; a test whose service is missing skips, saying which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.deploy.processes import Processes, port_open

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
VENV_BIN = Path(sys.executable).parent

PG_HOST = os.environ.get("MEDVID_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MEDVID_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MEDVID_TEST_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("MEDVID_TEST_PG_PASSWORD", "")
AMQP_HOST = os.environ.get("MEDVID_TEST_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("MEDVID_TEST_AMQP_PORT", "5672"))
AMQP_USER = os.environ.get("MEDVID_TEST_AMQP_USER", "guest")
AMQP_PASSWORD = os.environ.get("MEDVID_TEST_AMQP_PASSWORD", "guest")


@dataclass(frozen=True)
class PostgresDatabase:
    name: str
    host: str = PG_HOST
    port: int = PG_PORT
    username: str = PG_USER
    password: str = PG_PASSWORD

    def env(self) -> dict[str, str]:
        """The variables docker/dagster.yaml's storage block reads, pointing at this database."""
        return {
            "DAGSTER_PG_USERNAME": self.username,
            # trust auth ignores it; the block reads it all the same, as in production
            "DAGSTER_PG_PASSWORD": self.password or "unused-with-trust-auth",
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_DB": self.name,
        }


def admin_execute(sql: str) -> None:
    """Run one statement on the server's ``postgres`` database, outside a transaction (as
    CREATE/DROP DATABASE require)."""
    import psycopg2

    connection = psycopg2.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD or None,
        dbname="postgres",
        connect_timeout=5,
    )
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
    finally:
        connection.close()


@pytest.fixture
def postgres_db() -> Iterator[PostgresDatabase]:
    """A new, empty database named ``medvid_test_<random>``, dropped afterwards."""
    if not port_open(PG_PORT, PG_HOST):
        pytest.skip(f"no PostgreSQL on {PG_HOST}:{PG_PORT}")
    database = PostgresDatabase(name=f"medvid_test_{uuid.uuid4().hex[:12]}")
    admin_execute(f'CREATE DATABASE "{database.name}"')
    try:
        yield database
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')


def storage_block() -> dict:
    """The ``storage:`` block of docker/dagster.yaml, as the production instance has it."""
    return {"storage": yaml.safe_load((DOCKER / "dagster.yaml").read_text())["storage"]}


def write_instance_yaml(dagster_home: Path, **sections) -> Path:
    """``dagster_home/dagster.yaml`` with docker/dagster.yaml's storage block plus ``sections``."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = {**storage_block(), "telemetry": {"enabled": False}, **sections}
    path = dagster_home / "dagster.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Start children with ``processes.start(name, args, env=...)``; all of them are stopped
    (by process group, SIGTERM then SIGKILL) when the test ends, passed or failed. Their logs
    stay in ``tmp_path/logs``."""
    started = Processes(tmp_path / "logs")
    try:
        yield started
    finally:
        started.stop_all()


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def amqp_vhost() -> Iterator[str]:
    """A new RabbitMQ virtual host for the guest user, so that this test's queues (``default``,
    ``gpu``) and workers never meet another test's; deleted afterwards. Returns the broker URL."""
    if not port_open(AMQP_PORT, AMQP_HOST):
        pytest.skip(f"no RabbitMQ on {AMQP_HOST}:{AMQP_PORT}")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl not on PATH: cannot create a private virtual host")
    vhost = f"medvid-test-{uuid.uuid4().hex[:12]}"
    created = _rabbitmqctl("add_vhost", vhost)
    if created.returncode != 0:
        pytest.skip(f"rabbitmqctl add_vhost failed: {created.stderr.strip()[:300]}")
    try:
        granted = _rabbitmqctl("set_permissions", "-p", vhost, AMQP_USER, ".*", ".*", ".*")
        assert granted.returncode == 0, granted.stderr
        yield f"amqp://{AMQP_USER}:{AMQP_PASSWORD}@{AMQP_HOST}:{AMQP_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture
def moto_s3(processes) -> str:
    """An S3 endpoint (``moto_server`` on a free port) for this test; its URL."""
    from tests.deploy.processes import free_port

    executable = VENV_BIN / "moto_server"
    if not executable.exists():
        pytest.skip("moto_server is not installed: pip install -e '.[dev]'")
    port = free_port()
    server = processes.start("moto_server", [str(executable), "-H", "127.0.0.1", "-p", str(port)])
    server.wait_for_port(port, timeout=60)
    return f"http://127.0.0.1:{port}"
