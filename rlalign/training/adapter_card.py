"""Adapters that describe themselves: what a checkpoint's adapter was trained on, beside peft's files.

    adapter/
        adapter_config.json        peft's (rank, alpha, target modules); base_model_name_or_path is the
                                   base's identity below, not a path of the machine that trained it
        adapter_model.safetensors  peft's
        rlalign_adapter.json       the card's numbers: base identity, family, m and T, LoRA, rewards, the
                                   latest evaluation (GenEval-style numbers per eval set)
        README.md                  the same as a model card

The base's identity is `builtin:NAME` or the file or directory name, with a fingerprint: SHA-256 over
the size and the first and last MiB of each weights file (the whole of a 9 GB checkpoint would take a
minute to hash, and these bytes already tell two checkpoints apart). `rlalign sample` and `rlalign eval`
read the card: they take m from it unless told otherwise and say when it differs from the config.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from rlalign.utils.files import write_text_atomic

CARD = "rlalign_adapter.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json", ".model")
_MIB = 1 << 20


def _file_fingerprint(digest: Any, path: Path) -> None:
    size = path.stat().st_size
    digest.update(f"{path.name}:{size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(_MIB))
        if size > 2 * _MIB:
            handle.seek(size - _MIB)
            digest.update(handle.read(_MIB))


@cache
def base_identity(checkpoint: str) -> str:
    """`builtin:NAME@sha256:…`, or `NAME@sha256:…` of a local file or directory (no machine path)."""
    from rlalign.assets import ASSETS_DIR

    if checkpoint.startswith("builtin:"):  # a file NAME.safetensors or a directory NAME/ of the assets
        name = checkpoint.split(":", 1)[1]
        file = ASSETS_DIR / f"{name}.safetensors"
        path, name = (file if file.is_file() else ASSETS_DIR / name), checkpoint
    else:
        path = Path(checkpoint).expanduser()
        name = path.name
    if not path.exists():
        return name
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    for file in files:
        _file_fingerprint(digest, file)
    return f"{name}@sha256:{digest.hexdigest()[:16]}"


def card_values(cfg: Any, *, num_steps: int, prefix_steps: int, step: int, evaluation: dict | None) -> dict:
    """The card of an adapter saved at `step`: `evaluation` is {"step": N, "sets": {name: numbers}}."""
    lora = cfg.policy.lora
    return {
        "base_model": base_identity(cfg.policy.checkpoint),
        "family": cfg.policy.kind,
        "prefix_steps": prefix_steps,
        "num_steps": num_steps,
        "lora": {"rank": lora.rank, "alpha": lora.alpha, "target_modules": lora.target_modules},
        "rewards": [{"name": s.name, "label": s.label or s.name, "weight": s.weight, "args": s.args}
                    for s in cfg.rewards.functions],
        "trained_steps": step,
        "train_steps": cfg.train.steps,
        "evaluation": evaluation,
    }


def write_card(adapter_dir: str | Path, values: dict) -> None:
    """rlalign_adapter.json and README.md beside peft's files; adapter_config.json names the base."""
    adapter_dir = Path(adapter_dir)
    write_text_atomic(adapter_dir / CARD, json.dumps(values, indent=1, default=str) + "\n")
    write_text_atomic(adapter_dir / "README.md", model_card(values))
    config_path = adapter_dir / "adapter_config.json"
    if config_path.is_file():
        peft_config = json.loads(config_path.read_text())
        peft_config["base_model_name_or_path"] = values["base_model"]
        write_text_atomic(config_path, json.dumps(peft_config, indent=2, sort_keys=True) + "\n")


def read_card(adapter_dir: str | Path) -> dict | None:
    """The card of an adapter directory, or None for an adapter saved without one."""
    path = Path(adapter_dir) / CARD
    return json.loads(path.read_text()) if path.is_file() else None


def model_card(values: dict) -> str:
    """The README.md of an adapter: front matter as Hugging Face model cards have it, then the card."""
    m, t = values["prefix_steps"], values["num_steps"]
    lora = values["lora"]
    lines = ["---", "library_name: peft", f"base_model: {values['base_model']}",
             "tags: [rlalign, prefix-grpo, lora]", "---", "",
             "# A prefix-GRPO LoRA adapter (rlalign)", "",
             f"- base model: `{values['base_model']}` (family `{values['family']}`)",
             f"- trained steps: the first m = {m} of T = {t} generation steps; the frozen base (adapter off) "
             f"samples steps {m + 1}..{t}" if m < t else f"- trained steps: all T = {t} generation steps",
             f"- LoRA: rank {lora['rank']}, alpha {lora['alpha']}, target modules {lora['target_modules'] or 'the family default'}",
             f"- training: {values['trained_steps']} of {values['train_steps']} steps", "",
             "## Rewards", "", "| reward | label | weight | args |", "|---|---|---|---|"]
    lines += [f"| `{r['name']}` | {r['label']} | {r['weight']:g} | {json.dumps(r['args']) if r['args'] else ''} |"
              for r in values["rewards"]]
    evaluation = values.get("evaluation")
    if evaluation and evaluation.get("sets"):
        lines += ["", f"## Evaluation at step {evaluation['step']} (verifier exact match, base → adapter, 95% intervals)", ""]
        for name, rows in evaluation["sets"].items():
            lines += [f"**{name}**", "", "| category | samples | base | adapter |", "|---|---|---|---|"]
            lines += [f"| {group} | {row['samples']} | {_with_ci(row['base'], row['base_ci95'])} | "
                      f"{_with_ci(row['final'], row['final_ci95'])} |" for group, row in rows.items()]
            lines.append("")
    lines += ["", "## Use", "", "```python",
              "# rlalign: the config that trained it, m read from this directory",
              "#   rlalign sample CONFIG --adapter THIS_DIR --prompts ...",
              "from peft import PeftModel  # peft: the adapter is in peft's own format",
              "model = PeftModel.from_pretrained(base_module, THIS_DIR)", "```", ""]
    return "\n".join(lines)


def _with_ci(value: float | None, ci: list | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
