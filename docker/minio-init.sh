#!/bin/sh
# One-off set-up of the object store (the minio-init service of docker/compose.yaml): the three
# buckets, and two users that hold only what they need:
#   medvid       read/write on the landing, media and compute-log buckets (code server, workers)
#   dagster-logs read/write on the compute-log bucket only (webserver, daemon)
# Idempotent: run again after changing a password.
set -eu

mc alias set store http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
for bucket in "$MEDVID_LANDING_BUCKET" "$MEDVID_MEDIA_BUCKET" "$DAGSTER_COMPUTE_LOG_BUCKET"; do
  mc mb --ignore-existing "store/$bucket"
done

policy() {  # policy NAME BUCKET...: read/write on these buckets and nothing else
  name=$1
  shift
  resources=""
  for bucket in "$@"; do
    resources="$resources\"arn:aws:s3:::$bucket\",\"arn:aws:s3:::$bucket/*\","
  done
  printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":[%s]}]}\n' \
    "${resources%,}" > "/tmp/$name.json"
  mc admin policy create store "$name" "/tmp/$name.json"
}

policy medvid-rw "$MEDVID_LANDING_BUCKET" "$MEDVID_MEDIA_BUCKET" "$DAGSTER_COMPUTE_LOG_BUCKET"
policy dagster-logs-rw "$DAGSTER_COMPUTE_LOG_BUCKET"
mc admin user add store "$MEDVID_S3_ACCESS_KEY_ID" "$MEDVID_S3_SECRET_ACCESS_KEY"
mc admin user add store "$DAGSTER_LOGS_S3_ACCESS_KEY_ID" "$DAGSTER_LOGS_S3_SECRET_ACCESS_KEY"
# attach fails when the policy is already attached (a second run)
mc admin policy attach store medvid-rw --user "$MEDVID_S3_ACCESS_KEY_ID" || true
mc admin policy attach store dagster-logs-rw --user "$DAGSTER_LOGS_S3_ACCESS_KEY_ID" || true
echo "object store ready"
