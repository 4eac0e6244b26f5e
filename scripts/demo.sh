#!/usr/bin/env bash
# The main job: the built-in demo. Sets up .venv on first use, then runs prefix-GRPO on the built-in
# Shapes generator (configs/shapes_nextscale.yaml, 19 to 22 minutes on 2 CPU cores) into a fresh run
# directory runs/demo-<time>/, and ends with GenEval-style tables (base vs final per category on the held-out and
# train eval prompts with 95% intervals, trained reward, KL, time split) and before_after.png.
# `bash scripts/demo.sh captions` runs the caption demo instead (configs/shapes_insertion.yaml, the
# built-in captioner, about 14 minutes) into runs/captions-<time>/, and `bash scripts/demo.sh text` the
# text Edit Flow demo (configs/editflow_text.yaml, the built-in dllm-format Edit Flow on the Sums task)
# into runs/text-<time>/.
# Extra arguments are config overrides (section.key=value), e.g. train.steps=100 for a quick look.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$RLALIGN_ROOT"
config=configs/shapes_nextscale.yaml name=demo
if [[ "${1:-}" == "captions" ]]; then
  config=configs/shapes_insertion.yaml name=captions
  shift
elif [[ "${1:-}" == "text" ]]; then
  config=configs/editflow_text.yaml name=text
  shift
fi
exec "$RLALIGN_VENV/bin/rlalign" train "$config" "output_dir=runs/$name-$(date +%Y%m%d-%H%M%S)" "$@"
