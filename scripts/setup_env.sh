#!/usr/bin/env bash
# Create the project's virtual environment on first use and (re)install rlalign into it.
# Sourced by scripts/demo.sh and scripts/test.sh; needs only python3 (3.10+) on PATH.
# Set RLALIGN_VENV to use another location, PYTHON to use another interpreter.
set -euo pipefail
RLALIGN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RLALIGN_VENV="${RLALIGN_VENV:-$RLALIGN_ROOT/.venv}"
_python="${PYTHON:-python3}"

if [ ! -x "$RLALIGN_VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $RLALIGN_VENV"
  if ! "$_python" -m venv "$RLALIGN_VENV"; then
    echo "[setup] 'python3 -m venv' is unavailable; falling back to virtualenv"
    "$_python" -m pip install --user -q virtualenv
    "$_python" -m virtualenv -q "$RLALIGN_VENV"
  fi
fi

# Reinstall whenever pyproject.toml or setup.py changes (its hash is stamped into the environment).
_want="$("$RLALIGN_VENV/bin/python" -c 'import hashlib, sys; print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())' "$RLALIGN_ROOT/pyproject.toml" "$RLALIGN_ROOT/setup.py")"
_stamp="$RLALIGN_VENV/.rlalign-installed"
if [ "$(cat "$_stamp" 2>/dev/null || true)" != "$_want" ]; then
  echo "[setup] installing rlalign and its dependencies (first run: a few minutes, ~6 GB)"
  "$RLALIGN_VENV/bin/python" -m pip install -q --upgrade pip
  "$RLALIGN_VENV/bin/python" -m pip install -q -e "$RLALIGN_ROOT[dev]"
  echo "$_want" > "$_stamp"
fi
export RLALIGN_ROOT RLALIGN_VENV
