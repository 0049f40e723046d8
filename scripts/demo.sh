#!/usr/bin/env bash
# Set up .venv if needed, then run the small end-to-end demo (extra arguments go to scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
