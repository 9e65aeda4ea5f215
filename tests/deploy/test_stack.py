"""The whole deployment as processes on this machine: PostgreSQL (a fresh database), moto_server
as S3 (landing, media and compute-log buckets), RabbitMQ (a fresh virtual host), the medvid code
server, ``dagster-daemon``, ``dagster-webserver`` and two Celery workers (queues ``default`` and
``gpu``), each started with docker/compose.yaml's command and loading docker/dagster.yaml as it
is, its ``env:`` values pointing at the local services.

One clip and its two sheets are put into the landing bucket; the landing sensor takes them, the
queued run coordinator starts each run, the Celery workers execute every step (a custom model's
GPU step on the ``gpu`` worker), and the dataset is read back from the media bucket. Every
process is stopped by process group, passed or failed.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from unittest import mock

import dagster as dg
import pytest
import yaml

from tests.deploy.conftest import DOCKER, REPO, VENV_BIN
from tests.deploy.processes import Processes, free_port

pytestmark = [
    pytest.mark.stack,
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered"),
]

pytest.importorskip(
    "dagster_celery", reason="the celery extra is not installed: pip install -e '.[celery]'"
)

from tests.deploy.test_celery import compose_worker_command, step_workers  # noqa: E402

CLIP = "covid19us_Vir_whitelung_h1n1.mp4"  # H.264, 270x270, 123 frames at 25 fps
LABEL = "lung_viral_pneumonia"
LANDING_BUCKET, MEDIA_BUCKET, LOG_BUCKET = "medvid-landing", "medvid-media", "dagster-logs"
DATASET = "stack"
#: From upload to dataset; the test fails with the daemon's log and the runs' errors after it.
PIPELINE_TIMEOUT_S = 600
#: Small sampling: few frames, few text detections, one image read by the export's PHI scan;
#: a custom model (a colour rule, no weights, its labels in the schema) so that a GPU step is in
#: the path.
HOME_CONFIG = f"""\
frames: {{strategy: uniform_k, uniform_k: 4}}
text: {{detect_interval_s: 2.0}}
labels: {{label_ids: {{{LABEL}: 0, red: 1, blue: 2}}}}
predict:
  custom_model: {{function: "tests.core.custom_model_example:predict", model_id: colour-v1}}
export: {{dataset_name: {DATASET}, phi_scan_ocr_images: 1}}
"""
PATH_JOBS = ["intake_job", "batch_pipeline", "labels_job", "custom_model_job", "export_job"]
#: The step of the custom model's run (a GPU step: medvid_assets.executors.GPU_OP_TAGS).
CUSTOM_MODEL_STEPS = {"custom_model_labels"}


def gpu_steps() -> set[str]:
    """Every asset step declared with the gpu queue's op tags (custom_model_labels,
    image_marks, the label models...)."""
    from medvid_assets.definitions import defs
    from medvid_assets.executors import CELERY_QUEUE_TAG, GPU_QUEUE

    return {
        key.path[-1]
        for assets_def in defs.assets or []
        if isinstance(assets_def, dg.AssetsDefinition)
        for key in assets_def.keys
        if assets_def.op.tags.get(CELERY_QUEUE_TAG) == GPU_QUEUE
    }


def compose_command(service: str, **replace: str) -> list[str]:
    """docker/compose.yaml's command of ``service`` with this venv's executable and the
    arguments after each ``-h``/``-p`` flag in ``replace`` swapped (``{"-p": "4321"}``)."""
    command = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"][service]["command"]
    args = [str(VENV_BIN / command[0]), *command[1:]]
    for index, arg in enumerate(args[:-1]):
        if arg in replace:
            args[index + 1] = replace[arg]
    return args


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


SENSORS_QUERY = """{ sensorsOrError(repositorySelector: {repositoryLocationName: "medvid",
  repositoryName: "__repository__"}) { __typename ... on Sensors { results { name
  minIntervalSeconds sensorState { status } } } ... on PythonError { message } } }"""
RUNS_QUERY = "{ runsOrError { ... on Runs { results { runId jobName status } } } }"


@pytest.fixture
def stack_env(postgres_db, amqp_vhost, moto_s3, tmp_path):
    """The environment every process gets (the variables compose hands its services, pointing
    at the local services), with DAGSTER_HOME holding docker/dagster.yaml unchanged and the
    medvid home config; the buckets created."""
    import boto3

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(DOCKER / "dagster.yaml", home / "dagster.yaml")
    (home / "medvid.yaml").write_text(HOME_CONFIG)
    env = {
        **postgres_db.env(),
        "DAGSTER_HOME": str(home),
        "DAGSTER_COMPUTE_LOG_BUCKET": LOG_BUCKET,
        "MEDVID_S3_ENDPOINT_URL": moto_s3,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "moto-test-key",
        "AWS_SECRET_ACCESS_KEY": "moto-test-secret",
        "MEDVID_LANDING_BUCKET": LANDING_BUCKET,
        "MEDVID_MEDIA_BUCKET": MEDIA_BUCKET,
        "MEDVID_DEID_SALT": "stack-test-salt-not-a-secret",
        "MEDVID_EXECUTOR": "celery",
        "CELERY_BROKER_URL": amqp_vhost,
        "MEDVID_SENSOR_INTERVAL_S": "1",
        "PYTHONPATH": str(REPO),
    }
    with mock.patch.dict(os.environ, env):
        s3 = boto3.client("s3", endpoint_url=moto_s3, region_name="us-east-1")
        for bucket in (LANDING_BUCKET, MEDIA_BUCKET, LOG_BUCKET):
            s3.create_bucket(Bucket=bucket)
        yield dict(os.environ), s3


def start_stack(processes: Processes, env: dict, tmp_path: Path) -> int:
    """Code server, daemon, webserver and both workers; returns the webserver's port once
    every process serves."""
    code_port, web_port = free_port(), free_port()
    workspace = tmp_path / "workspace.yaml"
    rendered = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    rendered["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=code_port)
    workspace.write_text(yaml.safe_dump(rendered))

    code = processes.start(
        "code",
        compose_command("code", **{"-h": "127.0.0.1", "-p": str(code_port)}),
        env=env,
        cwd=REPO,
    )
    workers = [
        processes.start(s, compose_worker_command(s), env=env, cwd=REPO)
        for s in ("worker-default", "worker-gpu")
    ]
    code.wait_for_port(code_port, timeout=120)
    # the daemon and the webserver start once the code location answers, as compose orders it
    health = [str(VENV_BIN / "dagster"), "api", "grpc-health-check", "-p", str(code_port)]
    deadline = time.monotonic() + 120
    while subprocess.run(health, capture_output=True, check=False, env=env).returncode != 0:
        assert time.monotonic() < deadline, code.log()[-4000:]
        time.sleep(1)
    daemon_args = compose_command("daemon", **{"-w": str(workspace)})
    web_args = compose_command(
        "webserver", **{"-h": "127.0.0.1", "-p": str(web_port), "-w": str(workspace)}
    )
    daemon = processes.start("daemon", daemon_args, env=env, cwd=tmp_path)
    web = processes.start("webserver", web_args, env=env, cwd=tmp_path)
    for worker in workers:
        worker.wait_for_log(r"\S+@\S+ ready\.", timeout=120)
    web.wait_for_port(web_port, timeout=120)
    daemon.wait_for_log(r"SensorDaemon", timeout=120)
    return web_port


def upload_landing(s3, videos_dir: Path) -> None:
    """The clip and its sheets, as a site's uploader puts them into the landing bucket."""
    sheets = {
        "labels.csv": f"video,start_s,end_s,label\n{CLIP},0.0,4.92,{LABEL}\n",
        "patients.csv": f"video,patient_id,diagnosis\n{CLIP},P002,H1N1 viral pneumonia\n",
    }
    for name, text in sheets.items():
        s3.put_object(Bucket=LANDING_BUCKET, Key=name, Body=text.encode())
    s3.upload_file(str(videos_dir / CLIP), LANDING_BUCKET, CLIP)


def run_errors(instance: dg.DagsterInstance, run_id: str) -> str:
    """What a failed run logged as errors, with the tracebacks of its engine errors."""
    lines = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if entry.level >= 40 or (event is not None and event.is_failure):
            lines.append(str(entry.message))
        if event is not None and event.is_engine_event and event.engine_event_data.error:
            lines.append(event.engine_event_data.error.to_string())
    return "\n".join(lines)[-6000:]


def wait_for_dataset(instance: dg.DagsterInstance, processes: Processes) -> list[dg.DagsterRun]:
    """Every run, once ``training_dataset`` was last materialized with a dataset in it (not the
    empty one an export of an empty home makes) and nothing is queued or running; fails on a
    failed run or the timeout, with what the failed run or the daemon logged."""
    deadline = time.monotonic() + PIPELINE_TIMEOUT_S
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        for run in runs:
            if run.status == dg.DagsterRunStatus.FAILURE:
                pytest.fail(f"{run.job_name} failed:\n{run_errors(instance, run.run_id)}")
        latest = instance.fetch_materializations(dg.AssetKey("training_dataset"), limit=1).records
        status = latest[0].asset_materialization.metadata.get("status") if latest else None
        if status is not None and status.value == "ok" and all(r.is_finished for r in runs):
            return runs
        time.sleep(2)
    daemon = next(p for p in processes.started if p.name == "daemon")
    summary = [(r.job_name, r.status.value) for r in instance.get_runs()]
    pytest.fail(f"no dataset after {PIPELINE_TIMEOUT_S} s; runs {summary}\n{daemon.log()[-4000:]}")


def run_event_types(instance: dg.DagsterInstance, run_id: str) -> list[dg.DagsterEventType]:
    return [
        r.event_log_entry.dagster_event_type
        for r in instance.get_records_for_run(run_id, limit=10_000).records
        if r.event_log_entry.is_dagster_event
    ]


def started_steps(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        r.event_log_entry.step_key
        for r in instance.get_records_for_run(run_id, limit=10_000).records
        if r.event_log_entry.dagster_event_type == dg.DagsterEventType.STEP_START
    }


def read_object(s3, key: str) -> bytes:
    return s3.get_object(Bucket=MEDIA_BUCKET, Key=key)["Body"].read()


def test_a_clip_in_the_landing_bucket_becomes_a_dataset_in_the_media_bucket(
    stack_env, processes, tmp_path, videos_dir
):
    env, s3 = stack_env
    began = time.monotonic()
    try:
        web_port = start_stack(processes, env, tmp_path)
        started = time.monotonic()
        sensors = graphql(web_port, SENSORS_QUERY)["sensorsOrError"]["results"]
        # on by default (their DefaultSensorStatus): nothing to turn on; the knob is applied
        assert {
            s["name"]: (s["sensorState"]["status"], s["minIntervalSeconds"]) for s in sensors
        } == {
            "landing_sensor": ("RUNNING", 1),
            "pipeline_sensor": ("RUNNING", 1),
        }
        upload_landing(s3, videos_dir)
        with dg.DagsterInstance.get() as instance:
            runs = wait_for_dataset(instance, processes)
            finished = time.monotonic()
            host = socket.gethostname()
            by_job = {r.job_name: r for r in reversed(runs)}  # the latest run of each job
            assert set(PATH_JOBS) <= set(by_job), sorted(by_job)
            on_gpu = gpu_steps()
            assert {"custom_model_labels", "image_marks"} <= on_gpu
            for run in runs:
                assert run.status == dg.DagsterRunStatus.SUCCESS, (run.job_name, run.status)
                # requested by a sensor, then through the QueuedRunCoordinator's queue
                assert run.tags.get("dagster/sensor_name") in {"landing_sensor", "pipeline_sensor"}
                types = run_event_types(instance, run.run_id)
                assert types.index(dg.DagsterEventType.RUN_ENQUEUED) < types.index(
                    dg.DagsterEventType.RUN_START
                )
                # every step a Celery task, on the worker of its queue
                steps = started_steps(instance, run.run_id)
                assert steps, run.job_name
                assert step_workers(instance, run.run_id) == {
                    step: f"gpu@{host}" if step in on_gpu else f"default@{host}" for step in steps
                }
            assert by_job["intake_job"].tags["dagster/sensor_name"] == "landing_sensor"
            gpu_run = by_job["custom_model_job"]
            assert started_steps(instance, gpu_run.run_id) == CUSTOM_MODEL_STEPS
            assert gpu_run.tags["medvid/gpu"] == "true"  # one such run at a time (dagster.yaml)
            export_run = by_job["export_job"].run_id

        # the webserver reads the same PostgreSQL database
        web_runs = graphql(web_port, RUNS_QUERY)["runsOrError"]["results"]
        assert {r["runId"]: r["status"] for r in web_runs} == {r.run_id: "SUCCESS" for r in runs}

        # the dataset, read back from the media bucket
        prefix = f"medvid/exports/{DATASET}/"
        listed = s3.list_objects_v2(Bucket=MEDIA_BUCKET, Prefix=prefix).get("Contents", [])
        exported = {o["Key"][len(prefix) :] for o in listed}
        annotations = list(
            csv.DictReader(io.StringIO(read_object(s3, prefix + "annotations.csv").decode()))
        )
        assert annotations and {a["label_name"] for a in annotations} == {LABEL}
        assert {a["frame_relative_path"] for a in annotations} <= {
            k.removeprefix("frames/") for k in exported if k.startswith("frames/")
        }
        manifest = json.loads(read_object(s3, prefix + "manifest.json"))
        assert manifest["n_videos"] == 1
        assert manifest["n_frames"] == len({a["frame_id"] for a in annotations}) == 4
        # nothing of the protected zone is in the dataset, and the raw clip's name is not either
        assert not [k for k in exported if "protected" in k or CLIP in k]
        # step logs of the export run, uploaded by the workers' compute log manager
        logs = s3.list_objects_v2(Bucket=LOG_BUCKET, Prefix="dagster-compute-logs/")
        assert any(export_run in o["Key"] for o in logs.get("Contents", []))
        print(
            f"\nstack up in {started - began:.1f} s; upload to dataset {finished - started:.1f} s;"
            f" runs: {[r.job_name for r in reversed(runs)]}"
        )
    finally:
        processes.stop_all()
    assert not [p.name for p in processes.started if p.running()]
