# Dagster's webserver and daemon for medvid: no medvid code (it lives in the code server, reached
# over gRPC), only Dagster, its PostgreSQL storage and S3 compute logs, pinned like pyproject.toml.
#   docker build -f docker/dagster.Dockerfile -t medvid-dagster .
# webserver (default): dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml
# daemon:              dagster-daemon run -w workspace.yaml
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home
COPY docker/requirements-dagster.txt /tmp/requirements-dagster.txt
RUN pip install --no-cache-dir -r /tmp/requirements-dagster.txt \
    && rm /tmp/requirements-dagster.txt \
    && groupadd --system --gid 10001 dagster \
    && useradd --system --uid 10001 --gid dagster --home-dir /opt/dagster --no-create-home dagster
COPY docker/dagster.yaml /opt/dagster/dagster_home/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/app/workspace.yaml
WORKDIR /opt/dagster/app
USER 10001:10001
EXPOSE 3000
CMD ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "workspace.yaml"]
