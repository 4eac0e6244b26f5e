"""The Infinity transformer (arXiv:2412.04431): bitwise next-scale prediction conditioned on text.

Sequence layout: the token maps of scales 1..K concatenated row-major, L = Σ_k h_k·w_k positions.
Position 0 (scale 1 is always 1×1) is the start token, the pooled text plus `pos_start`; scale k ≥ 2's
inputs are `word_embed` of the accumulated codes of the coarser scales resized to (h_k, w_k)
(bits.py). Every scale adds its level embedding before the first block chunk (or before every chunk,
`add_lvl_embedding_only_first_block=False`). Attention is block-causal: a token sees every token of
its own and coarser scales (infinity.py:416-418); with a KV cache, sampling is one pass per scale.
Each token has 2·b outputs, one logit pair per bit: bit j of the token reads entries (2j, 2j+1) for
the values (0, 1) (infinity.py:577-578). The layers are in layers.py.

Two passes: `forward` (teacher forcing over the first scales; with a cache, also the prefill) and
`step` (one more scale from the cache). The text side: `condition` turns encoder features into the
pooled condition, the shared AdaLN terms and the cross-attention rows (infinity.py:500-510), and
`null_condition` does the same for the learned null text `cfg_uncond` (each prompt's rows replaced by
the first len_i rows of it, infinity.py:487-494), which classifier-free guidance contrasts with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rlalign.policies.infinity.architecture import InfinityArchitecture
from rlalign.policies.infinity.layers import (
    AdaLNHead,
    Block,
    Chunk,
    Condition,
    KVCache,
    RMSNorm,
    TextFeatures,
    TextPool,
)
from rlalign.policies.infinity.schedules import check_schedule, rope_angles, scale_bounds, template_ratio

LEVELS = 15
"""Rows of the level (scale) embedding table (infinity.py:222): at most 15 scales."""


class InfinityTransformer(nn.Module):
    def __init__(self, arch: InfinityArchitecture, scales: Sequence[tuple[int, int]], h_div_w: float = 1.0):
        super().__init__()
        C, Ct5, bits = arch.embed_dim, arch.text_channels, arch.bits_per_token
        self.arch = arch
        self.cfg_uncond = nn.Parameter(torch.zeros(arch.text_maxlen, Ct5))
        self.text_norm = RMSNorm(Ct5, arch.norm_eps)
        self.text_proj_for_sos = TextPool(Ct5, C, arch.pool_heads)
        self.text_proj_for_ca = nn.Sequential(nn.Linear(Ct5, C), nn.GELU(approximate="tanh"), nn.Linear(C, C))
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        self.lvl_embed = nn.Embedding(LEVELS, C)
        self.word_embed = nn.Linear(bits, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        blocks = [Block(arch) for _ in range(arch.depth)]
        if arch.block_chunks > 1:
            per_chunk = arch.depth // arch.block_chunks
            self.block_chunks = nn.ModuleList(Chunk(blocks[i : i + per_chunk]) for i in range(0, arch.depth, per_chunk))
        else:
            self.blocks = nn.ModuleList(blocks)
        self.head_nm = AdaLNHead(C, C, arch.norm_eps)
        self.head = nn.Linear(C, 2 * bits)
        self.set_schedule(scales, h_div_w)

    # ---------------------------------------------------------------------------------------------
    # Schedule and layout
    # ---------------------------------------------------------------------------------------------

    def set_schedule(self, scales: Sequence[tuple[int, int]], h_div_w: float = 1.0) -> None:
        """Use these (h, w) token maps; rotary positions come from the nearest template's 1M table."""
        scales = [(int(h), int(w)) for h, w in scales]
        template = template_ratio(h_div_w)
        check_schedule(scales, template)
        if scales[0] != (1, 1):
            raise ValueError(f"an Infinity schedule starts with a 1x1 map (the start token), got {scales[0]}")
        if len(scales) > LEVELS:
            raise ValueError(f"at most {LEVELS} scales (rows of lvl_embed), got {len(scales)}")
        self.scales, self.h_div_w, self.template = scales, float(h_div_w), template
        self.scale_bounds = scale_bounds(scales)
        device = self.pos_start.device
        angles = rope_angles(self.arch.head_dim, template, self.arch.rope2d_normalized_by_hw)
        self.register_buffer("rope_2Lf", angles[:, : self.scale_bounds[-1]].to(device), persistent=False)
        levels = torch.cat([torch.full((h * w,), k) for k, (h, w) in enumerate(scales)])
        self.register_buffer("levels_L", levels.to(device), persistent=False)

    @property
    def layers(self) -> list[Block]:
        """Every block in order, whether stored in chunks or flat."""
        if hasattr(self, "block_chunks"):
            return [block for chunk in self.block_chunks for block in chunk.module]
        return list(self.blocks)

    def _chunk_starts(self) -> set[int]:
        """Indices of the blocks before which the level embedding is added: block 0 only, or (flag off)
        every chunk's first block, which with unchunked blocks is every block (infinity.py:434-446)."""
        if self.arch.add_lvl_embedding_only_first_block:
            return {0}
        per_chunk = self.arch.depth // self.arch.block_chunks if self.arch.block_chunks > 1 else 1
        return set(range(0, self.arch.depth, per_chunk))

    def set_bf16_rounding(self, enabled: bool) -> None:
        """Round cross-attention through bf16 as the reference's flash-attn does (layers.CrossAttention)."""
        for module in self.modules():
            if hasattr(module, "bf16_rounding"):
                module.bf16_rounding = enabled

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.arch.depth)

    # ---------------------------------------------------------------------------------------------
    # Text condition
    # ---------------------------------------------------------------------------------------------

    def condition(self, text: TextFeatures) -> Condition:
        """The transformer's condition from text-encoder features (infinity.py:500-510)."""
        T = text.features_BTC.shape[1]
        mask_BT = torch.arange(T, device=text.lens_B.device)[None, :] < text.lens_B[:, None]
        normed_BTC = self.text_norm(text.features_BTC)
        cond_BD = self.text_proj_for_sos(normed_BTC, mask_BT.to(normed_BTC.device)).float()
        with torch.autocast(device_type=cond_BD.device.type, enabled=False):  # float32, as infinity.py:509-510
            gss_B16C = self.shared_ada_lin(cond_BD.float()).view(-1, 1, 6, self.arch.embed_dim)
        return Condition(cond_BD, gss_B16C, self.text_proj_for_ca(normed_BTC), mask_BT.to(normed_BTC.device))

    def null_condition(self, lens_B: Tensor) -> Condition:
        """The condition of the learned null text for prompts of these lengths."""
        T = int(lens_B.max())
        if T > self.cfg_uncond.shape[0]:
            raise ValueError(f"a prompt of {T} tokens is longer than the null condition ({self.cfg_uncond.shape[0]} rows)")
        features = self.cfg_uncond[:T].unsqueeze(0).expand(len(lens_B), -1, -1)
        return self.condition(TextFeatures(features, lens_B))

    # ---------------------------------------------------------------------------------------------
    # Passes
    # ---------------------------------------------------------------------------------------------

    def forward(self, cond: Condition, inputs_BLd: Tensor | None, num_scales: int | None = None,
                cache: KVCache | None = None) -> Tensor:
        """Teacher-forced logits [B, L_k, 2b] of the first `num_scales` scales (default: all the inputs cover).

        `inputs_BLd` holds scales 2..k's inputs (bits.teacher_inputs), None when k = 1. With a cache,
        the pass also stores every block's keys and values (the prefill before sampling scale k + 1).
        """
        num_scales = num_scales or self._scales_of(inputs_BLd)
        L = self.scale_bounds[num_scales]
        x_BLC = self._start(cond)
        if inputs_BLd is not None:
            x_BLC = torch.cat([x_BLC, self.word_embed(inputs_BLd.to(x_BLC.dtype))], dim=1)
        levels_L = self.levels_L[:L]
        mask_LL = levels_L[:, None] >= levels_L[None, :]
        x_BLC = self._blocks(x_BLC, cond, self.rope_2Lf[:, :L], mask_LL, levels_L, cache)
        if cache is not None:
            cache.num_scales = num_scales
        return self.logits(x_BLC, cond.cond_BD)

    def step(self, cond: Condition, inputs_Bnd: Tensor | None, cache: KVCache) -> Tensor:
        """Logits [B, h_k·w_k, 2b] of the next scale k = cache.num_scales + 1, given its inputs."""
        k = cache.num_scales
        start, end = self.scale_bounds[k], self.scale_bounds[k + 1]
        x_BnC = self._start(cond) if k == 0 else self.word_embed(inputs_Bnd.to(cond.cond_BD.dtype))
        x_BnC = self._blocks(x_BnC, cond, self.rope_2Lf[:, start:end], None, self.levels_L[start:end], cache)
        cache.num_scales = k + 1
        return self.logits(x_BnC, cond.cond_BD)

    def logits(self, x_BLC: Tensor, cond_BD: Tensor) -> Tensor:
        """The head in float32, autocast off, as the reference runs it (infinity.py:333-341)."""
        with torch.autocast(device_type=x_BLC.device.type, enabled=False):
            return self.head(self.head_nm(x_BLC.float(), cond_BD.float()))

    def _scales_of(self, inputs_BLd: Tensor | None) -> int:
        """How many scales a teacher input covers (its rows are scales 2..k)."""
        if inputs_BLd is None:
            return 1
        rows = inputs_BLd.shape[1] + 1
        if rows not in self.scale_bounds:
            raise ValueError(f"teacher inputs of {rows - 1} rows do not end at a scale boundary of {self.scales}")
        return self.scale_bounds.index(rows)

    def _start(self, cond: Condition) -> Tensor:
        """The start token: pooled text + pos_start, [B, 1, C]."""
        return cond.cond_BD.unsqueeze(1) + self.pos_start

    def _blocks(self, x_BLC: Tensor, cond: Condition, rope_2Lf: Tensor, mask_LL: Tensor | None, levels_L: Tensor,
                cache: KVCache | None) -> Tensor:
        starts = self._chunk_starts()
        for index, block in enumerate(self.layers):
            if index in starts:
                x_BLC = x_BLC + self.lvl_embed(levels_L)
            x_BLC = block(x_BLC, cond, rope_2Lf, mask_LL, cache, index)
        return x_BLC


def bit_logits(logits_BnV: Tensor) -> Tensor:
    """[B, n, 2b] head outputs → [B, n, b, 2]: bit j's logits for the values 0 and 1."""
    return logits_BnV.view(*logits_BnV.shape[:-1], -1, 2)


def pad_text(features: Sequence[Tensor]) -> TextFeatures:
    """Per-prompt features [len_i, Ct5] → padded TextFeatures."""
    lens = torch.tensor([f.shape[0] for f in features])
    return TextFeatures(torch.nn.utils.rnn.pad_sequence(list(features), batch_first=True), lens)

