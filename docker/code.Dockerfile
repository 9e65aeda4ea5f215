# medvid code location: the gRPC code server (`dagster code-server start`), the run workers it
# starts, and the Celery workers (same image, other command). Build from the repository root:
#   docker build -f docker/code.Dockerfile -t medvid-code .
# GPU workers: --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
# Kubernetes (docker/helm): --build-arg MEDVID_EXTRAS=celery,k8s
# No secret is baked in: salt, passwords and keys come from the environment at run time.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch 2.14.1 (pinned in pyproject.toml) from this index: CPU wheels by default (no CUDA
# libraries, ~1.5 GB smaller); a CUDA index for the GPU worker's image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# the executors' extras (medvid_assets/executors.py): celery for compose, k8s for Helm
ARG MEDVID_EXTRAS=celery
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY medvid ./medvid
COPY medvid_resources ./medvid_resources
COPY medvid_assets ./medvid_assets
# installs this project; every dependency is pinned exactly in its pyproject.toml
# hadolint ignore=DL3013
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" ".[${MEDVID_EXTRAS}]"

FROM ${PYTHON_IMAGE}
# tesseract-ocr: the optional OCR engine (MEDVID_OCR_ENGINE=tesseract); rapidocr, the default,
# ships its models in its wheel. Debian's own versions: pinning them breaks on every point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 medvid \
    && useradd --system --uid 10001 --gid medvid --home-dir /opt/dagster --no-create-home medvid
COPY --from=build /opt/venv /opt/venv
# GLIBC_TUNABLES: medvid.memory.MALLOC_TUNABLES (large blocks out of the heap, on huge pages);
# every process of the image (code server, run workers, Celery workers) starts with it
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=8388608 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    MEDVID_HOME=/opt/dagster/medvid
COPY docker/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
RUN mkdir -p /opt/dagster/dagster_home/storage /opt/dagster/medvid \
    && chown -R medvid:medvid /opt/dagster/dagster_home/storage /opt/dagster/medvid
WORKDIR /opt/dagster
USER 10001:10001
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "medvid_assets.definitions", "--location-name", "medvid"]
