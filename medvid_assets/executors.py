"""Executors: where the steps of a run execute.

- ``multiprocess`` (default, one machine): every step in its own process beside the run worker;
  Dagster's ``multiprocess_executor`` unchanged.
- ``celery`` (several machines, docker/compose.yaml): every step is a task on a Celery broker
  (RabbitMQ) and runs on whichever worker listens to the step's queue; dagster-celery's
  ``celery_executor``, configured here once. Steps go to the ``default`` queue unless their op
  carries :data:`GPU_OP_TAGS` (``dagster-celery/queue: gpu``), which sends them to the workers
  started with ``-Q gpu``.
- ``k8s`` (Kubernetes, docker/helm/values.yaml): every step is a Kubernetes Job from the run's
  image; dagster-k8s's ``k8s_job_executor`` unchanged. :data:`GPU_OP_TAGS` also carries the
  ``dagster-k8s/config`` that gives a GPU step's pod one ``nvidia.com/gpu`` and lets it onto
  nodes tainted ``nvidia.com/gpu``.

Pools apply under every executor: ``pool="gpu"`` with the instance's pool limit of 1 keeps one
GPU step at a time however many GPU workers or nodes there are. ``MEDVID_EXECUTOR``
(``multiprocess`` | ``celery`` | ``k8s``) picks the one :func:`executor_from_env` returns, so
the same code image serves all three. The Celery executor reads the broker URL from
``CELERY_BROKER_URL`` when a run starts (it may hold a password: never written into config or
logs); results come back over the broker (``rpc://``) unless ``CELERY_RESULT_BACKEND`` names
another backend (Celery itself reads both variables, in the run worker and in every Celery
worker). Celery needs the ``celery`` extra (``pip install 'medvid[celery]'``), Kubernetes the
``k8s`` extra; each is imported only when chosen.

Workers (one command per queue, from the code image, with the same ``DAGSTER_HOME`` and
environment as the code server)::

    celery -A dagster_celery.app worker -Q default -n default@%h --prefetch-multiplier=1
    celery -A dagster_celery.app worker -Q gpu -n gpu@%h --prefetch-multiplier=1 --concurrency=1
"""

from __future__ import annotations

import json
import os

import dagster as dg

#: The op tag dagster-celery routes by (``dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG``).
CELERY_QUEUE_TAG = "dagster-celery/queue"
#: The op tag dagster-k8s reads a step pod's spec from
#: (``dagster_k8s.job.USER_DEFINED_K8S_CONFIG_KEY``).
K8S_CONFIG_TAG = "dagster-k8s/config"
DEFAULT_QUEUE = "default"
GPU_QUEUE = "gpu"

#: What a GPU step's pod gets on Kubernetes: one GPU, and a toleration for GPU nodes' taint.
GPU_POD_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": 1}}},
    "pod_spec_config": {
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    },
}

#: ``op_tags`` of every asset that declares ``pool="gpu"``: under Celery its step goes to the
#: ``gpu`` queue, under Kubernetes its pod gets :data:`GPU_POD_CONFIG`.
GPU_OP_TAGS: dict[str, str] = {
    CELERY_QUEUE_TAG: GPU_QUEUE,
    K8S_CONFIG_TAG: json.dumps(GPU_POD_CONFIG),
}

#: Run tag of jobs that hold a GPU step; docker/dagster.yaml queues one such run at a time.
GPU_RUN_TAGS: dict[str, str] = {"medvid/gpu": "true"}

EXECUTORS = ("multiprocess", "celery", "k8s")

#: Celery app settings for the run worker (the client side). ``task_default_queue`` is the queue
#: of every step without a queue tag; one task per worker process at a time, because a medvid
#: step takes seconds to minutes and prefetching would hold steps back from idle workers.
CELERY_CONFIG_SOURCE = {
    "task_default_queue": DEFAULT_QUEUE,
    "worker_prefetch_multiplier": 1,
}


def multiprocess_executor_def() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor: one process per step on the run worker's machine."""
    return dg.multiprocess_executor


def celery_executor_def() -> dg.ExecutorDefinition:
    """dagster-celery's executor: the broker from ``CELERY_BROKER_URL`` (resolved when a run
    starts), results over the broker, untagged steps on the ``default`` queue.

    Raises ``ImportError`` naming the extra when dagster-celery is not installed.
    """
    try:
        from dagster_celery import celery_executor
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the Celery executor needs the celery extra: pip install 'medvid[celery]'"
        ) from error
    return celery_executor.configured(
        {
            "broker": {"env": "CELERY_BROKER_URL"},
            "backend": "rpc://",
            "config_source": CELERY_CONFIG_SOURCE,
        },
        name="celery",
    )


def k8s_executor_def() -> dg.ExecutorDefinition:
    """dagster-k8s's executor: one Kubernetes Job per step, configured from the run launcher
    (image, namespace, secrets) and from each step's ``dagster-k8s/config`` tag.

    Raises ``ImportError`` naming the extra when dagster-k8s is not installed.
    """
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the k8s executor needs the k8s extra: pip install 'medvid[k8s]'"
        ) from error
    return k8s_job_executor


def executor_from_env() -> dg.ExecutorDefinition:
    """The executor ``MEDVID_EXECUTOR`` names (default ``multiprocess``)."""
    name = os.environ.get("MEDVID_EXECUTOR", "multiprocess").strip().lower() or "multiprocess"
    if name not in EXECUTORS:
        raise ValueError(f"MEDVID_EXECUTOR must be one of {', '.join(EXECUTORS)}, not {name!r}")
    if name == "celery":
        return celery_executor_def()
    if name == "k8s":
        return k8s_executor_def()
    return multiprocess_executor_def()
