"""The Edit Flow family's own settings (`policy.edit_flow` in a config), validated by the family.

The config schema holds `policy.edit_flow` as a plain mapping; `settings(cfg)` builds this dataclass
from it with the schema's own checks (types, bounds, unknown keys with a suggestion), naming keys as
`policy.edit_flow.KEY`. docs/config.md lists the fields (scripts/gen_config_docs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rlalign.config.loading import bounded, build_section


@dataclass
class EditFlowSettings:
    tau: float = bounded(0.05, gt=0, le=1)
    """τ-leap step: steps at t = 0, τ, 2τ, … while t < 1 − 1e-3, so T = ⌈0.999/τ⌉ (dllm's sampler)."""
    kappa: Literal["linear", "cosine"] = "linear"
    """Schedule κ(t) whose weight w(t) = κ'(t) / (1 − κ(t) + 1e-6) scales the rates (dllm's kappa schedulers)."""
    mask_length: int = bounded(0, ge=0)
    """MASK tokens appended to every prompt before the first step (dllm's `masks[length:N]` start); 0 starts
    from the prompt alone."""
    max_length: int = bounded(64, ge=2)
    """Fixed width W of every text, prompt included. A step inserts nothing into a text whose open gaps, all
    firing, would outgrow W (dllm's sampler has no cap; give W ≥ twice the longest text and it never binds)."""
    edit_prompt: bool = False
    """Let steps delete and substitute prompt tokens and insert before the prompt's end (dllm's default: no)."""
    insertion_only: bool = False
    """Insertions only: no position is ever deleted or substituted (an insertion-only Edit Flow)."""


def settings(cfg: Any) -> EditFlowSettings:
    """The `policy.edit_flow` mapping of a PolicyConfig as checked EditFlowSettings."""
    return build_section(EditFlowSettings, cfg.edit_flow, "policy.edit_flow")
