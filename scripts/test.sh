#!/usr/bin/env bash
# The whole test suite. Sets up .venv on first use; extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$RLALIGN_ROOT"
exec "$RLALIGN_VENV/bin/python" -m pytest "$@"
