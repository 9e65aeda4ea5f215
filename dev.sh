#!/usr/bin/env bash
# medvid developer entry point.
#   ./dev.sh demo   set up (or reuse) .venv, then run `medvid demo` on the bundled sample clips
#   ./dev.sh test   set up (or reuse) .venv, then run the test suite (--stack: the deployment stack tests too)
#   ./dev.sh setup  only set up
# MEDVID_VENV overrides the virtualenv folder (default: .venv in the repo).
set -euo pipefail
cd "$(dirname "$0")"
VENV="${MEDVID_VENV:-.venv}"
# medvid.memory.MALLOC_TUNABLES for everything started from here (tests, demo); kept if set
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=8388608}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  # reinstall only when the dependency list changed since the last install
  local stamp="$VENV/.medvid-installed"
  local want
  want=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c "import medvid_assets" 2>/dev/null; then
    echo "installing medvid and its pinned dependencies into $VENV (torch comes from local disk)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
  # optional system tools: the tesseract OCR engine, the ffmpeg CLI (benchmarks' peer) and
  # docker-compose (the deployment tests validate docker/compose.yaml with `docker-compose config`)
  if ! command -v tesseract >/dev/null 2>&1 || ! command -v ffmpeg >/dev/null 2>&1 \
    || ! command -v docker-compose >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr ffmpeg docker-compose) >/dev/null 2>&1 \
        || echo "note: could not install tesseract-ocr/ffmpeg/docker-compose; tests that need them are skipped"
    fi
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo)
    setup
    shift
    exec "$VENV/bin/medvid" demo "$@"
    ;;
  test)
    setup
    shift
    exec "$VENV/bin/python" -m pytest -n 2 --dist loadfile -q "$@"
    ;;
  *)
    echo "usage: ./dev.sh {demo|test|setup}" >&2
    exit 2
    ;;
esac
