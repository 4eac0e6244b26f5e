"""`rlalign score`: score existing images or captions with a config's rewards, without a policy.

For checking a reward before training on it (does CLIP prefer the true renders? how slow is it?)
and for scoring samples from elsewhere. Inputs:

- a **folder of images** (`.png`, `.jpg`, `.jpeg`, not recursive, sorted by name; all of one size):
  each is loaded as [3, H, W] in [0, 1] (RGB; alpha and palettes are dropped). The prompt of each
  image comes from a sidecar `prompts.json` in the folder, `{"file.png": "prompt", ...}` (every
  image must be listed; extra entries are ignored), or, without one, from the file name: the stem
  up to an optional `__` suffix, underscores read as spaces (`a_red_circle__3.png` -> "a red circle").
- a **text file of captions**: one `prompt<TAB>caption` per line; blank lines and lines starting
  with `#` are skipped.

Trained rewards (`rewards.functions`) are combined with the config's `rewards.combine` into a total
over the whole input; evaluation rewards (`--eval`, `rewards.eval`) are only reported. Inputs are
scored in batches, and every statistic is over all items.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rlalign.rewards.combine import combine, reward_stats
from rlalign.config import load_config
from rlalign.rewards.worker import RewardWorker
from rlalign.utils.tables import markdown_table

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SIDECAR = "prompts.json"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def prompt_from_name(path: Path) -> str:
    """`a_red_circle__3.png` -> "a red circle": the `__` suffix lets one prompt have many files."""
    return path.stem.split("__")[0].replace("_", " ").strip()


def image_prompts(folder: Path) -> tuple[list[Path], list[str], str]:
    """The folder's images (sorted), their prompts, and where the prompts came from."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images or a captions file")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                         "give a folder of images or a prompt<TAB>caption text file")
    sidecar = folder / SIDECAR
    if not sidecar.is_file():
        prompts = [prompt_from_name(p) for p in paths]
        unnamed = [p.name for p, prompt in zip(paths, prompts) if not prompt]
        if unnamed:
            raise ValueError(f"no prompt for {unnamed[:5]}: without {SIDECAR} the file name is the prompt")
        return paths, prompts, "file names"
    try:
        table = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{sidecar} is not readable JSON: {error}") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f"{sidecar} must be one JSON object {{\"file.png\": \"prompt\", ...}}")
    missing = [p.name for p in paths if p.name not in table]
    if missing:
        raise ValueError(f"{sidecar} has no prompt for {len(missing)} image(s), e.g. {missing[:5]}; "
                         "add them (or delete the sidecar to use file names as prompts)")
    return paths, [table[p.name] for p in paths], SIDECAR


def check_image_sizes(paths: list[Path]) -> tuple[int, int]:
    """(width, height) shared by all images; reads headers only, so bad files fail before scoring."""
    sizes: dict[tuple[int, int], list[str]] = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, []).append(path.name)
        except OSError as error:
            raise ValueError(f"cannot read image {path}: {error}") from None
    if len(sizes) > 1:
        summary = ", ".join(f"{w}×{h}: {len(names)} (e.g. {names[0]})" for (w, h), names in sizes.items())
        raise ValueError(f"images must all have one size to be scored as a batch; found {summary}")
    return next(iter(sizes))


def load_image(path: Path) -> torch.Tensor:
    """One image as [3, H, W] float32 in [0, 1]."""
    try:
        with Image.open(path) as image:
            pixels_HW3 = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
    return torch.from_numpy(pixels_HW3).permute(2, 0, 1).contiguous()


def read_captions(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Item names (`line N`), prompts and captions of a `prompt<TAB>caption` file."""
    names, prompts, captions = [], [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        prompt, tab, caption = line.partition("\t")
        if not tab:
            raise ValueError(f"{path}:{number} has no TAB; write each line as prompt<TAB>caption")
        names.append(f"line {number}")
        prompts.append(prompt.strip())
        captions.append(caption.strip())
    if not captions:
        raise ValueError(f"{path} holds no captions; write each line as prompt<TAB>caption")
    return names, prompts, captions


# ---------------------------------------------------------------------------------------------
# Scoring and the table
# ---------------------------------------------------------------------------------------------


def _score_all(worker: RewardWorker, prompts: list[str], load_batch, count: int,
               batch_size: int) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, int]]:
    """Per-reward values [N], total seconds and skips over all batches."""
    chunks: dict[str, list[torch.Tensor]] = {label: [] for label in worker.labels}
    seconds = dict.fromkeys(worker.labels, 0.0)
    skipped = dict.fromkeys(worker.labels, 0)
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        result = worker.score(prompts[start:stop], load_batch(start, stop))
        for label in worker.labels:
            chunks[label].append(result.per_reward[label])
            seconds[label] += result.seconds[label]
            skipped[label] += result.skipped[label]
    return {label: torch.cat(parts) for label, parts in chunks.items()}, seconds, skipped


def _number(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def format_table(per_reward: dict[str, torch.Tensor], weights: dict[str, float] | None,
                 seconds: dict[str, float], skipped: dict[str, int], total: torch.Tensor | None) -> str:
    """One row per reward (and the total): weight, mean, std, min, max, valid, NaN, skipped, time."""
    entries = [(label, values, weights[label] if weights else None, skipped[label], seconds[label])
               for label, values in per_reward.items()]
    if total is not None:
        entries.append(("total", total, None, None, sum(seconds.values())))
    rows = []
    for label, values, weight, skips, time_s in entries:
        stats = reward_stats(values)
        rows.append([label, "-" if weight is None else f"{weight:.2f}",
                     *(_number(stats[key]) for key in ("mean", "std", "min", "max")),
                     stats["count"], stats["nan_count"], "-" if skips is None else skips, f"{time_s:.3f}"])
    header = ["reward", "weight", "mean", "std", "min", "max", "valid", "NaN", "skipped", "time s"]
    return markdown_table(header, rows, aligned=True)


def format_items(names: list[str], prompts: list[str], per_reward: dict[str, torch.Tensor],
                 total: torch.Tensor | None) -> str:
    """One row per item: name, prompt, each reward's value and the total."""
    columns = dict(per_reward, **({"total": total} if total is not None else {}))
    rows = []
    for index, (name, prompt) in enumerate(zip(names, prompts)):
        shown = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        rows.append([name, shown, *(_number(float(values[index])) for values in columns.values())])
    return markdown_table(["item", "prompt", *columns], rows, aligned=True)


def _caption_tokenizer(policy_cfg):
    """A text family's word ids (rewards' `completion_ids`), read without building a policy; None for a
    family that has none (images) or cannot give them without loading itself."""
    from rlalign.policies.registry import policy_family

    read = getattr(policy_family(policy_cfg.kind), "completion_tokenizer_from_config", None)
    return read(policy_cfg) if read else None


def run_score(config: str, path: str, overrides: list[str], *, eval_rewards: bool = False,
              per_item: bool = False, batch_size: int = 32) -> str:
    """Score the images or captions at `path` with the config's rewards; returns the printed report."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be ≥ 1, got {batch_size}")
    cfg = load_config(config, overrides)
    specs = cfg.rewards.eval if eval_rewards else cfg.rewards.functions
    if not specs:
        raise ValueError("the config lists no rewards.eval to score with --eval")
    target = Path(path)
    if target.is_file():
        names, prompts, captions = read_captions(target)
        kind, source = "captions", "the captions file"

        def load_batch(start: int, stop: int) -> list[str]:
            return captions[start:stop]
    else:
        paths, prompts, source = image_prompts(target)
        check_image_sizes(paths)  # fail on a bad file before any reward runs
        names, kind = [p.name for p in paths], "images"

        def load_batch(start: int, stop: int) -> torch.Tensor:  # [b, 3, H, W], loaded lazily per batch
            return torch.stack([load_image(p) for p in paths[start:stop]])
    # Rewards are combined here over all items, not per batch, so the total never depends on batch size.
    worker = RewardWorker(specs, combine=None, tokenizer=_caption_tokenizer(cfg.policy) if kind == "captions" else None)
    per_reward, seconds, skipped = _score_all(worker, prompts, load_batch, len(prompts), batch_size)
    weights = total = None
    if not eval_rewards:
        weights = {label: spec.weight for label, spec in zip(worker.labels, worker.specs)}
        total = combine(per_reward, weights, cfg.rewards.combine, cfg.grpo.advantage_eps)
    which = "evaluation rewards" if eval_rewards else f"trained rewards (combine: {cfg.rewards.combine})"
    lines = [f"scored {len(prompts)} {kind} in {target} with the {which}; prompts from {source}",
             format_table(per_reward, weights, seconds, skipped, total)]
    if per_item:
        lines += ["", format_items(names, prompts, per_reward, total)]
    return "\n".join(lines)
