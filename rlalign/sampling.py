"""`rlalign sample`: draw samples of a policy (base, or with a trained adapter) into a labelled grid."""

from __future__ import annotations

from pathlib import Path

from rlalign.config import load_config
from rlalign.evaluation import generate
from rlalign.policies.base import load_policy
from rlalign.prompts import prompts_from_arguments
from rlalign.viz import save_grid


def run_sample(config: str, overrides: list[str], *, prompts: list[str], prefix_steps: str, adapter: str | None,
               samples: int, seed: int, out: str) -> str:
    """Sample `samples` images per prompt and save them as a PNG grid; returns a one-line summary.

    Steps 1..m use the adapter (when one is given), steps m+1..T the base model, exactly as in
    training rollouts; without an adapter every step is the base model whatever m is.
    """
    cfg = load_config(config, overrides)
    policy = load_policy(cfg.policy)
    if adapter:
        policy.load_adapter(adapter)
    m = int(prefix_steps) if str(prefix_steps).isdigit() else prefix_steps
    chosen = prompts_from_arguments(prompts)
    if samples < 1:
        raise ValueError(f"--samples must be ≥ 1, got {samples}")
    images, repeated = generate(policy, chosen, samples_per_prompt=samples, seed=seed, prefix_steps=m,
                                adapter=bool(adapter), purpose="sample")
    if not hasattr(images, "ndim"):
        raise ValueError(f"policy.kind={cfg.policy.kind!r} produces text; rlalign sample draws image grids")
    labels = [f"class {p}" if isinstance(p, int) else str(p) for p in repeated]
    columns = samples if 2 <= samples <= 16 else 8
    path = save_grid(images, labels, Path(out), columns=columns)
    which = f"adapter {adapter} on steps 1..{m}" if adapter else "base model"
    return f"wrote {path} ({len(repeated)} samples of {len(chosen)} prompts, {which}, seed {seed})"
