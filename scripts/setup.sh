#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install the requirements into it; does nothing when they are current.
# --socnav: also the optional SocNavGym extra (--env socnav; see requirements-socnav.txt).
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
if [ "${1:-}" = "--socnav" ]; then
    socnav_stamp=".venv/.installed-socnav-$(sha1sum requirements-socnav.txt | cut -c1-12)"
    if [ ! -f "$socnav_stamp" ]; then
        if ! command -v cmake >/dev/null 2>&1 || ! command -v g++ >/dev/null 2>&1; then
            echo "setup: the SocNavGym extra builds rvo2 with cmake and g++: install them first" \
                "(Debian: apt-get install cmake g++)" >&2
            exit 2
        fi
        echo "setup: installing the SocNavGym extra into .venv (first run only)"
        .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-socnav.txt
        # Without its declared dependencies: see requirements-socnav.txt for why.
        .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps socnavgym==0.1.1
        touch "$socnav_stamp"
    fi
elif [ -n "${1:-}" ]; then
    echo "setup: unknown option $1 (the only one is --socnav)" >&2
    exit 2
fi
