#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install the requirements into it; does nothing when they are current.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: Python 3.10 or newer is needed ($PY is $("$PY" --version 2>&1)); set PYTHON=/path/to/python3" >&2
    exit 2
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt requirements-ray.txt | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
    echo "setup: installing requirements into .venv (first run only)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
    touch "$stamp"
fi
