"""The sizes and switches of an Infinity transformer, the public presets, and what is supported.

The public checkpoints are built by `tools/run_infinity.py` (Infinity commit 4c27bbb): `load_transformer`
picks the sizes per model type (lines 315-318: 2B = depth 32, width 2048, 16 heads, 8 block chunks;
8B = depth 40, width 3584, 28 heads, 8 block chunks) and `load_infinity` fixes the rest (lines 179-199:
shared AdaLN, fused norm, `pad_to_multiplier` 128, text_maxlen 512). The inference scripts add
`use_bit_label=1`, `rope2d_each_sa_layer=1`, `rope2d_normalized_by_hw=2`,
`add_lvl_embeding_only_first_block=1`, text_channels 2048 (Flan-T5-XL) and the VAE: 2B uses
`vae_type=32` (32 bits per token, `scripts/infer.sh`), 8B `vae_type=14` with
`apply_spatial_patchify=1` (`tools/interactive_infer_8b.ipynb`), i.e. 4·14 = 56 bits per token.
Everything the `Infinity` constructor could switch but no public model uses (RMS norms, SwiGLU,
non-shared AdaLN, a deeper head, index labels instead of bits, …) is refused by name rather than
built wrongly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class InfinityArchitecture:
    embed_dim: int
    """Width C of the transformer (also the condition width D)."""
    depth: int
    """Number of cross-attention blocks."""
    num_heads: int
    """Self- and cross-attention heads (head_dim = C / heads)."""
    codebook_dim: int
    """Bits per VAE token, d (the VAE's `codebook_dim`, the `vae_type` of the scripts)."""
    text_channels: int = 2048
    """Width of the text encoder's features (Flan-T5-XL: 2048)."""
    text_maxlen: int = 512
    """Rows of the learned null condition `cfg_uncond` (the longest prompt in tokens)."""
    mlp_ratio: float = 4.0
    """FFN width = round(C · mlp_ratio / 256) · 256."""
    block_chunks: int = 1
    """Blocks are stored in this many chunks (`block_chunks.{c}.module.{j}`); 1 stores `blocks.{i}`."""
    apply_spatial_patchify: bool = False
    """Each transformer token carries a 2×2 patch of VAE tokens (4·d bits; the 8B model)."""
    norm_eps: float = 1e-6
    """LayerNorm epsilon (also the text RMSNorm's)."""
    cross_attn_layer_scale: float = -1.0
    """A learned per-channel gain on the cross-attention output when ≥ 0; none (gain 1) when negative."""
    add_lvl_embedding_only_first_block: bool = True
    """Add the scale (level) embedding before the first block chunk only, else before every chunk."""
    rope2d_normalized_by_hw: int = 2
    """How a map's tokens are placed on the rotary grid (schedules.rope_angles): 0, 1 or 2."""

    @property
    def bits_per_token(self) -> int:
        """Binary actions per transformer token: d, or 4·d with spatial patchify."""
        return self.codebook_dim * (4 if self.apply_spatial_patchify else 1)

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def ffn_hidden(self) -> int:
        return round(self.embed_dim * self.mlp_ratio / 256) * 256

    @property
    def pool_heads(self) -> int:
        """Heads of the attentive text pooling: text_channels / 128 (64 when C > 4096; infinity.py:41-46)."""
        return self.text_channels // (64 if self.embed_dim > 4096 else 128)

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.depth % self.block_chunks:
            raise ValueError(f"depth {self.depth} is not divisible by block_chunks {self.block_chunks}")
        if self.pool_heads < 1 or self.embed_dim % self.pool_heads:
            raise ValueError(f"text_channels {self.text_channels} gives {self.pool_heads} text-pooling heads, which "
                             f"must divide embed_dim {self.embed_dim} (Infinity uses text_channels / 128 heads, / 64 when "
                             f"embed_dim > 4096)")
        if self.rope2d_normalized_by_hw not in (0, 1, 2):
            raise ValueError(f"rope2d_normalized_by_hw must be 0, 1 or 2, got {self.rope2d_normalized_by_hw}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, InfinityArchitecture] = {
    "infinity_2b": InfinityArchitecture(embed_dim=2048, depth=32, num_heads=16, codebook_dim=32, block_chunks=8),
    "infinity_8b": InfinityArchitecture(embed_dim=3584, depth=40, num_heads=28, codebook_dim=14, block_chunks=8,
                                        apply_spatial_patchify=True),
}
"""The public models, as `tools/run_infinity.py` and the inference scripts build them (module docstring)."""

SUPPORTED_SWITCHES: dict[str, Any] = {
    "rms_norm": False, "shared_aln": True, "head_aln": True, "cos_attn": True, "swiglu": False, "nm0": False,
    "head_depth": 1, "use_bit_label": 1, "rope2d_each_sa_layer": 1, "customized_flash_attn": False,
    "fused_mlp": False, "tau": 1, "video_frames": 1,
}
"""Constructor switches of `Infinity` this implementation builds, with the only value it supports."""


def from_reference_kwargs(kwargs: dict[str, Any], codebook_dim: int) -> InfinityArchitecture:
    """An architecture from `Infinity`'s constructor arguments (the golden set's config.json "infinity")."""
    wrong = {key: kwargs[key] for key, value in SUPPORTED_SWITCHES.items() if key in kwargs and kwargs[key] != value}
    if wrong:
        raise ValueError(f"this Infinity checkpoint uses switches rlalign does not implement: {wrong} "
                         f"(supported: {', '.join(f'{k}={SUPPORTED_SWITCHES[k]}' for k in wrong)})")
    return InfinityArchitecture(
        embed_dim=int(kwargs["embed_dim"]), depth=int(kwargs["depth"]), num_heads=int(kwargs["num_heads"]),
        codebook_dim=int(codebook_dim), text_channels=int(kwargs.get("text_channels", 2048)),
        text_maxlen=int(kwargs.get("text_maxlen", 512)), mlp_ratio=float(kwargs.get("mlp_ratio", 4.0)),
        block_chunks=int(kwargs.get("block_chunks", 1) or 1),
        apply_spatial_patchify=bool(kwargs.get("apply_spatial_patchify", 0)),
        norm_eps=float(kwargs.get("norm_eps", 1e-6)),
        cross_attn_layer_scale=float(kwargs.get("cross_attn_layer_scale", -1.0)),
        add_lvl_embedding_only_first_block=bool(kwargs.get("add_lvl_embeding_only_first_block", 1)),
        rope2d_normalized_by_hw=int(kwargs.get("rope2d_normalized_by_hw", 2)),
    )


def resolve_architecture(preset: str, overrides: dict[str, Any]) -> InfinityArchitecture:
    """A preset by name with explicit sizes on top, or explicit sizes alone (every required field given)."""
    known = {f.name for f in fields(InfinityArchitecture)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown Infinity architecture keys {unknown}; known: {', '.join(sorted(known))}")
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown Infinity preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return InfinityArchitecture(**{**PRESETS[preset].to_dict(), **overrides})
    required = {"embed_dim", "depth", "num_heads", "codebook_dim"}
    missing = sorted(required - set(overrides))
    if missing:
        raise ValueError(f"an Infinity architecture needs a preset ({', '.join(PRESETS)}) or explicit sizes; "
                         f"missing {missing}")
    return InfinityArchitecture(**overrides)
