"""The Infinity family's own settings (`policy.infinity` in a config), validated by the family.

The config schema holds `policy.infinity` as a plain mapping; `settings(cfg)` builds this dataclass
from it with the schema's own checks (types, bounds, unknown keys with a suggestion), naming keys as
`policy.infinity.KEY`. docs/config.md lists the fields (scripts/gen_config_docs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from rlalign.config.loading import bounded, build_section


@dataclass
class InfinitySettings:
    text_encoder: str = ""
    """Local directory of the T5 encoder and its tokenizer (transformers' `from_pretrained` layout, e.g. a
    downloaded flan-t5-xl); empty: `text_encoder/` inside policy.checkpoint when that is a directory."""
    text_encoder_dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Dtype of the frozen T5 encoder (the reference runs it in fp16 on a GPU); features are used in float32."""
    resolution: str = ""
    """Named schedule `0.06M`, `0.25M`, `0.60M` or `1M` (7, 10, 12, 13 scales; 1M is 1024² at 1:1); empty:
    the checkpoint directory's own schedule (its config.json), else 1M."""
    aspect_ratio: float | None = bounded(None, gt=0)
    """Image height / width; the nearest of the reference's templates (1:3 … 3:1) gives the maps. null: the
    checkpoint directory's own, else 1:1."""
    num_scales: int = bounded(0, ge=0)
    """Use only the first this-many scales of the schedule (a smaller image, fewer steps T); 0: all."""
    cross_attention_bf16_rounding: bool = True
    """Round cross-attention's q, k, v and output through bf16 as the reference's flash-attn call does
    (its float32 results agree with the reference to ~1e-5 with it, ~2e-3 without)."""


def settings(cfg: Any) -> InfinitySettings:
    """The `policy.infinity` mapping of a PolicyConfig as checked InfinitySettings."""
    return build_section(InfinitySettings, cfg.infinity, "policy.infinity")
