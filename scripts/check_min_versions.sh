#!/usr/bin/env bash
# Check that the lower bounds in pyproject.toml are true: install rlalign[dev] into a throwaway
# virtual environment with every `name>=X` bound of [project] dependencies and the `dev` extra pinned
# to exactly X (as pip constraints), torchvision pinned to the release that matches the minimum torch
# (torch 2.N pairs with torchvision 0.(N+15)), and run a fast, representative subset of the tests
# (rewards incl. trl.rewards, the Edit Flow family on ModernBERT + peft, config, GRPO vs TRL's oracle).
# Packages pyproject does not bound (transitive ones) resolve as pip chooses.
#
# Takes about 2–3 minutes with pip's cache warm (measured on 2 CPU cores: install 91 s, tests 32 s);
# the first run also downloads torch with its CUDA libraries from PyPI (several GB), which adds
# minutes to a quarter of an hour depending on bandwidth. Needs PyPI and ~8 GB of disk in $TMPDIR.
# Nothing in the repository is changed except rlalign.egg-info/ (the editable install's metadata).
#
# Usage: scripts/check_min_versions.sh [pytest args]     (default: the subset below)
#   KEEP=1            keep the environment (its path is printed) instead of deleting it
#   PYTHON=python3.10 the interpreter to build the environment with (default: python3)
#   EXTRA_CONSTRAINTS="pkg==X other==Y"  more (or overriding) pins, e.g. to bisect a bound
# Exit status: pytest's (0 = the minimums pass), or pip's when they cannot be installed together.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/rlalign-minver.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then
  echo "[minver] keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

# name>=X bounds of [project].dependencies and [project.optional-dependencies].dev -> name==X;
# torch>=2.N also pins torchvision==0.(N+15). A pin in EXTRA_CONSTRAINTS replaces the one of its name.
"$PYTHON" - "$ROOT/pyproject.toml" "${EXTRA_CONSTRAINTS:-}" > "$WORK/constraints.txt" <<'EOF_PY'
import re, sys
path, extra = sys.argv[1], sys.argv[2].split()
try:
    import tomllib  # Python 3.11+
    project = tomllib.load(open(path, "rb"))["project"]
    requirements = project["dependencies"] + project.get("optional-dependencies", {}).get("dev", [])
except ImportError:  # Python 3.10: the two arrays by hand (no ']' inside them)
    text = re.sub(r"#[^\n]*", "", open(path).read())
    requirements = [r for name in ("dependencies", "dev")
                    for m in re.finditer(rf"^{name}\s*=\s*\[(.*?)\]", text, re.S | re.M)
                    for r in re.findall(r'"([^"]+)"', m.group(1))]
pins = {}
for requirement in requirements:
    bound = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)\s*", requirement)
    if bound:
        name = bound.group(1).lower().replace("_", "-")
        pins[name] = f"{name}=={bound.group(2)}"
given = {re.split(r"[=<>!~]", pin, maxsplit=1)[0].lower().replace("_", "-"): pin for pin in extra}
pins.update(given)
torch = re.fullmatch(r"torch==2\.(\d+)(?:\.\d+)?", pins.get("torch", ""))
if torch and "torchvision" not in given:
    pins["torchvision"] = f"torchvision==0.{int(torch.group(1)) + 15}"
print("\n".join(pins.values()))
EOF_PY
echo "[minver] constraints ($WORK/constraints.txt):"
sed 's/^/  /' "$WORK/constraints.txt"

echo "[minver] installing into $WORK/venv (the first run downloads ~3 GB)"
start=$(date +%s)
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --upgrade pip
"$WORK/venv/bin/python" -m pip install -q -e "$ROOT[dev]" -c "$WORK/constraints.txt"
echo "[minver] installed in $(( $(date +%s) - start )) s:"
"$WORK/venv/bin/python" -m pip list 2>/dev/null | grep -iE "^(torch|torchvision|trl|peft|transformers|open.clip.torch|ray|wandb|safetensors|pyyaml|tqdm|matplotlib|pillow|numpy|scipy|math.verify|pytest|ruff|datasets|accelerate|huggingface.hub|tokenizers|timm) " | sed 's/^/  /'

cd "$ROOT"
# Every direct dependency imports (a wheel built for NumPy 1 fails here even where no test reaches it).
"$WORK/venv/bin/python" -c '
import numpy, torch, torchvision, trl, trl.rewards, peft, transformers, open_clip, ray, wandb, safetensors.torch
import yaml, tqdm, PIL.Image, scipy.stats, scipy.ndimage, datasets, math_verify, matplotlib
matplotlib.use("Agg"); import matplotlib.pyplot
from trl import GRPOTrainer
assert torch.from_numpy(numpy.arange(3.0)).sum().item() == 3.0
print("[minver] imports ok: torch", torch.__version__, "trl", trl.__version__, "transformers", transformers.__version__)'
if [ $# -eq 0 ]; then
  set -- -m "not slow" tests/rewards tests/rlalign/policies/edit_flow tests/rlalign/test_config.py tests/rlalign/grpo
fi
start=$(date +%s)
status=0
"$WORK/venv/bin/python" -m pytest -q -p no:cacheprovider "$@" || status=$?
echo "[minver] tests took $(( $(date +%s) - start )) s; pytest exit status $status"
exit $status
