#!/usr/bin/env bash
# The main job: the built-in demo. Sets up .venv on first use.
# Until the GRPO trainer lands, the demo renders the Shapes showcase: a labelled grid of scenes
# (outputs/showcase/showcase.png) and the verifier's report (outputs/showcase/report.json).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$RLALIGN_ROOT"
exec "$RLALIGN_VENV/bin/rlalign" showcase --out outputs/showcase "$@"
