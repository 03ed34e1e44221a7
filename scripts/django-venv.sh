#!/usr/bin/env bash
# Prints the Python of a virtualenv with Django and the rest of the import tests' requirements
# (import/tests/django/requirements.txt), from PyPI: target/tmp/django-venv, the one the import
# tests (cargo's CARGO_TARGET_TMPDIR), the browser flow and bench/import.sh share. Made when it
# is missing or the requirements changed; pip's output goes to stderr.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=$ROOT/target/tmp/django-venv
REQ=$ROOT/import/tests/django/requirements.txt
if ! cmp -s "$REQ" "$VENV/requirements.txt" 2>/dev/null; then
  echo "making $VENV (Django from PyPI)" >&2
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ" >&2
  cp "$REQ" "$VENV/requirements.txt"
fi
echo "$VENV/bin/python"
