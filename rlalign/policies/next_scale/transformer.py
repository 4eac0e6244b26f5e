"""The VAR next-scale transformer (VAR paper §3–4), with teacher forcing and KV-cached sampling.

Two passes: ``forward`` (teacher forcing over the first m scales; with a cache, the prefill) and
``step`` (one more scale from a KV cache).

Sequence layout: the token maps of scales 1..K concatenated row-major, L = Σ_k p_k² positions.
Scale 1's p_1² inputs are the start-of-sequence tokens (condition vector + ``pos_start``); scale k ≥ 2's
inputs are Linear(f̂ of scales < k, area-downsampled to p_k) (see ``quant.MultiScaleQuantizer``).
Every position also gets a level embedding (its scale) and an absolute position embedding.
Attention is block-causal: position i sees position j iff level(i) ≥ level(j), so a whole token map is
predicted in parallel from all coarser maps.

The condition is a vector ``cond_BD`` (D = embed_dim). VAR makes it with ``class_emb`` (row
``num_classes`` is the null class used for classifier-free guidance); a text-conditioned model passes
a projected pooled text embedding instead. It is both the SOS token and the AdaLN input of every block.

Parameter names follow the reference checkpoints, except that attention's q/k/v biases live in the
fused ``mat_qkv`` Linear (so LoRA can wrap it); ``var_import`` folds the reference's ``q_bias`` and
``v_bias`` in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

SCALE_MUL_INIT = 4.0  # attn_l2_norm: initial per-head logit scale (stored as its log)
SCALE_MUL_MAX = 100.0  # ... and the cap applied before exponentiating


@dataclass
class KVCache:
    """Keys and values of every block for the positions processed so far (scales 1..num_scales).

    ``keys[i]`` / ``values[i]``: [B, heads, positions, head_dim] for block i, or None when empty.
    """

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)
    num_scales: int = 0

    @classmethod
    def empty(cls, depth: int) -> KVCache:
        """A cache with no positions for a ``depth``-block transformer."""
        return cls(keys=[None] * depth, values=[None] * depth, num_scales=0)


def cfg_guidance_weight(cfg_scale: float, scale_index: int, num_scales: int) -> float:
    """VAR's linear CFG ramp t_k = cfg_scale · k / (K − 1), k counted from 0 (0 at the first scale)."""
    return cfg_scale * scale_index / (num_scales - 1) if num_scales > 1 else 0.0


def mix_cfg_logits(logits_cond: torch.Tensor, logits_uncond: torch.Tensor, weight: float) -> torch.Tensor:
    """Classifier-free guidance on logits: (1 + t)·ℓ_cond − t·ℓ_uncond (same op order as VAR)."""
    return (1 + weight) * logits_cond - weight * logits_uncond


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection and optional q/k L2 normalisation.

    With ``attn_l2_norm`` (VAR-d≥20 and our default for new models) q and k are unit-normalised and
    q is multiplied by a learnable per-head scale exp(min(s_h, log 100)), s_h initialised to log 4; the
    softmax then uses scale 1. Without it VAR scales logits by 0.25/√head_dim (not the usual 1/√d).
    """

    def __init__(self, embed_dim: int, num_heads: int, attn_l2_norm: bool) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.attn_l2_norm = attn_l2_norm
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=True)  # output: [q | k | v]
        self.proj = nn.Linear(embed_dim, embed_dim)
        if attn_l2_norm:
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(SCALE_MUL_INIT)))
            self.logit_scale = 1.0
        else:
            self.logit_scale = 0.25 / math.sqrt(self.head_dim)

    def forward(
        self, x_BLC: torch.Tensor, attn_mask_LS: torch.Tensor | None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attend from ``x_BLC`` to the past positions plus ``x_BLC`` itself.

        ``attn_mask_LS`` (bool, True = may attend) is over [new positions, past + new positions]; None
        means every position is visible. Returns (output [B,L,C], keys, values incl. the past).
        """
        batch, length, channels = x_BLC.shape
        qkv_BL3Hc = self.mat_qkv(x_BLC).view(batch, length, 3, self.num_heads, self.head_dim)
        query_BHLc, key_BHLc, value_BHLc = qkv_BL3Hc.permute(2, 0, 3, 1, 4).unbind(dim=0)
        if self.attn_l2_norm:
            head_scale_1H11 = self.scale_mul_1H11.clamp_max(math.log(SCALE_MUL_MAX)).exp()
            query_BHLc = F.normalize(query_BHLc, dim=-1).mul(head_scale_1H11)
            key_BHLc = F.normalize(key_BHLc, dim=-1)
        if past_key_value is not None:
            key_BHLc = torch.cat((past_key_value[0], key_BHLc), dim=2)
            value_BHLc = torch.cat((past_key_value[1], value_BHLc), dim=2)
        attended_BHLc = F.scaled_dot_product_attention(
            query_BHLc, key_BHLc, value_BHLc, attn_mask=attn_mask_LS, scale=self.logit_scale
        )
        output_BLC = self.proj(attended_BHLc.transpose(1, 2).reshape(batch, length, channels))
        return output_BLC, key_BHLc, value_BHLc


class FeedForward(nn.Module):
    """fc1 → GELU (tanh approximation, as VAR) → fc2."""

    def __init__(self, embed_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, embed_dim)

    def forward(self, x_BLC: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x_BLC)))


class AdaLNSelfAttnBlock(nn.Module):
    """Pre-norm transformer block whose LayerNorm scale/shift and residual gates come from the condition.

    Six modulation vectors (γ1, γ2, scale1, scale2, shift1, shift2, in that order) are either produced
    per block by SiLU → Linear(D, 6C) (``ada_lin``), or, with ``shared_aln``, one shared projection of
    the condition (computed once by the transformer) plus a per-block learned offset ``ada_gss``.
    """

    def __init__(
        self, embed_dim: int, num_heads: int, mlp_ratio: float, norm_eps: float, attn_l2_norm: bool,
        shared_aln: bool,
    ) -> None:
        super().__init__()
        self.embed_dim, self.shared_aln = embed_dim, shared_aln
        self.attn = SelfAttention(embed_dim, num_heads, attn_l2_norm)
        self.ffn = FeedForward(embed_dim, round(embed_dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, embed_dim) / embed_dim**0.5)
        else:
            self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 6 * embed_dim))

    def forward(
        self, x_BLC: torch.Tensor, block_cond: torch.Tensor, attn_mask_LS: torch.Tensor | None,
        past_key_value: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``block_cond``: cond_BD, or the shared projection [B,1,6,C] when ``shared_aln``."""
        if self.shared_aln:
            modulation_B16C = self.ada_gss + block_cond
        else:
            modulation_B16C = self.ada_lin(block_cond).view(-1, 1, 6, self.embed_dim)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation_B16C.unbind(dim=2)  # each [B,1,C]
        attn_in_BLC = self.ln_wo_grad(x_BLC).mul(scale1 + 1).add(shift1)
        attn_out_BLC, key_BHSc, value_BHSc = self.attn(attn_in_BLC, attn_mask_LS, past_key_value)
        x_BLC = x_BLC + attn_out_BLC.mul(gamma1)
        x_BLC = x_BLC + self.ffn(self.ln_wo_grad(x_BLC).mul(scale2 + 1).add(shift2)).mul(gamma2)
        return x_BLC, key_BHSc, value_BHSc


class AdaLNBeforeHead(nn.Module):
    """Final LayerNorm modulated by the raw condition (scale, shift), before the vocabulary head."""

    def __init__(self, embed_dim: int, norm_eps: float) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))

    def forward(self, x_BLC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale_B1C, shift_B1C = self.ada_lin(cond_BD).view(-1, 1, 2, self.embed_dim).unbind(dim=2)
        return self.ln_wo_grad(x_BLC).mul(scale_B1C + 1).add(shift_B1C)


class NextScaleTransformer(nn.Module):
    """VAR's decoder-only transformer over the multi-scale token pyramid.

    Args:
        vocab_size: V, size of the tokenizer's codebook (logits width).
        latent_channels: Cvae, width of the tokenizer's latent (input width of ``word_embed``).
        patch_nums: p_1..p_K of the tokenizer.
        num_classes: classes of ``class_emb`` (plus one null row); None builds no class embedding, for
            models conditioned on an external vector.
        depth, embed_dim, num_heads, mlp_ratio, norm_eps, attn_l2_norm, shared_aln: as in VAR.
    """

    def __init__(
        self, *, vocab_size: int, latent_channels: int, patch_nums: Sequence[int],
        num_classes: int | None = 1000, depth: int = 16, embed_dim: int = 1024, num_heads: int = 16,
        mlp_ratio: float = 4.0, norm_eps: float = 1e-6, attn_l2_norm: bool = False, shared_aln: bool = False,
    ) -> None:
        super().__init__()
        self.vocab_size, self.latent_channels, self.embed_dim = vocab_size, latent_channels, embed_dim
        self.patch_nums = tuple(int(size) for size in patch_nums)
        self.num_classes = num_classes
        # scale_bounds[k] = index of scale k's first position; scale_bounds[K] = L.
        self.scale_bounds = [0]
        for size in self.patch_nums:
            self.scale_bounds.append(self.scale_bounds[-1] + size * size)
        self.sequence_length = self.scale_bounds[-1]
        first_length = self.patch_nums[0] ** 2
        level_L = torch.cat([torch.full((size * size,), index) for index, size in enumerate(self.patch_nums)])
        self.register_buffer("level_L", level_L, persistent=False)

        self.word_embed = nn.Linear(latent_channels, embed_dim)
        self.class_emb = nn.Embedding(num_classes + 1, embed_dim) if num_classes is not None else None
        self.pos_start = nn.Parameter(torch.zeros(1, first_length, embed_dim))
        self.pos_1LC = nn.Parameter(torch.zeros(1, self.sequence_length, embed_dim))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), embed_dim)
        self.shared_ada_lin = (
            nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 6 * embed_dim)) if shared_aln else None
        )
        self.blocks = nn.ModuleList(
            AdaLNSelfAttnBlock(embed_dim, num_heads, mlp_ratio, norm_eps, attn_l2_norm, shared_aln)
            for _ in range(depth)
        )
        self.head_nm = AdaLNBeforeHead(embed_dim, norm_eps)
        self.head = nn.Linear(embed_dim, vocab_size)
        self.reset_parameters()

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    def class_condition(self, labels_B: torch.Tensor) -> torch.Tensor:
        """cond_BD from class ids; id ``num_classes`` (or any negative id) is the null class for CFG."""
        if self.class_emb is None:
            raise ValueError(
                "this transformer has no class embedding (num_classes=None); pass cond_BD directly"
            )
        labels_B = torch.where(labels_B < 0, torch.full_like(labels_B, self.num_classes), labels_B)
        return self.class_emb(labels_B)

    def null_condition(self, batch_size: int) -> torch.Tensor:
        """cond_BD of the null class, the unconditional half of classifier-free guidance."""
        return self.class_condition(torch.full((batch_size,), -1, device=self.pos_start.device))

    def new_cache(self) -> KVCache:
        """An empty KV cache for ``forward`` to prefill and ``step`` to extend."""
        return KVCache.empty(self.depth)

    def forward(
        self, cond_BD: torch.Tensor, x_BLCvae: torch.Tensor | None = None, cache: KVCache | None = None
    ) -> torch.Tensor:
        """Logits [B, Σ_{k≤m} p_k², V] of the first m scales in one block-causal teacher-forced pass.

        VAR's own ``forward``. ``x_BLCvae`` holds the inputs of scales 2..m (``tokenizer.teacher_inputs``),
        [B, Σ_{k=2..m} p_k², Cvae]; m is read off its length (None or length 0 means m = 1). Passing
        only a prefix of the full input re-scores only the first m scales. With ``cache`` (which must be
        empty) the keys and values are kept so ``step`` can continue at scale m + 1: this is the
        prefill of the frozen suffix.
        """
        num_scales = self._num_scales_of_input(x_BLCvae)
        if cache is not None and cache.num_scales != 0:
            raise ValueError(f"a prefill needs an empty cache, got one holding {cache.num_scales} scales")
        x_BLC = self._embed_scales(cond_BD, x_BLCvae, first_scale=0, end_scale=num_scales)
        return self._run_blocks(x_BLC, cond_BD, first_scale=0, end_scale=num_scales, cache=cache)

    def step(self, cond_BD: torch.Tensor, x_BlCvae: torch.Tensor | None, cache: KVCache) -> torch.Tensor:
        """Logits [B, p_k², V] of the next scale k = ``cache.num_scales`` (0-based), extending ``cache``.

        ``x_BlCvae`` is the scale's input [B, p_k², Cvae] from ``tokenizer.accumulate`` (None for the
        first scale, whose input is the SOS built from ``cond_BD``).
        """
        scale_index = cache.num_scales
        if scale_index >= self.num_scales:
            raise ValueError(f"the cache already holds all {self.num_scales} scales")
        if (x_BlCvae is None) != (scale_index == 0):
            expectation = "takes no input map (None)" if scale_index == 0 else "needs an input map"
            raise ValueError(f"scale {scale_index} {expectation}")
        end_scale = scale_index + 1
        x_BLC = self._embed_scales(cond_BD, x_BlCvae, first_scale=scale_index, end_scale=end_scale)
        return self._run_blocks(x_BLC, cond_BD, first_scale=scale_index, end_scale=end_scale, cache=cache)

    def _num_scales_of_input(self, x_BLCvae: torch.Tensor | None) -> int:
        input_length = 0 if x_BLCvae is None else x_BLCvae.shape[1]
        total = input_length + self.scale_bounds[1]
        if total not in self.scale_bounds[1:]:
            raise ValueError(
                f"teacher input length {input_length} does not end at a scale boundary; valid lengths are "
                f"{[bound - self.scale_bounds[1] for bound in self.scale_bounds[1:]]}"
            )
        return self.scale_bounds.index(total)

    def _embed_scales(
        self, cond_BD: torch.Tensor, x_BLCvae: torch.Tensor | None, first_scale: int, end_scale: int
    ) -> torch.Tensor:
        """Input embeddings [B, positions of scales first..end−1, C], level and position included."""
        pieces: list[torch.Tensor] = []
        if first_scale == 0:
            sos_BlC = cond_BD.unsqueeze(1) + self.pos_start  # condition + learned start embedding
            pieces.append(sos_BlC)
        if x_BLCvae is not None and x_BLCvae.shape[1] > 0:
            pieces.append(self.word_embed(x_BLCvae.to(self.word_embed.weight.dtype)))
        x_BLC = torch.cat(pieces, dim=1)
        begin, end = self.scale_bounds[first_scale], self.scale_bounds[end_scale]
        if x_BLC.shape[1] != end - begin:
            raise ValueError(
                f"scales {first_scale}..{end_scale - 1} have {end - begin} positions, got {x_BLC.shape[1]}"
            )
        return x_BLC + self.lvl_embed(self.level_L[begin:end]).unsqueeze(0) + self.pos_1LC[:, begin:end]

    def _run_blocks(
        self, x_BLC: torch.Tensor, cond_BD: torch.Tensor, first_scale: int, end_scale: int,
        cache: KVCache | None,
    ) -> torch.Tensor:
        """Run every block over scales first..end−1 (attending to ``cache`` if given) → logits [B,L,V]."""
        begin, end = self.scale_bounds[first_scale], self.scale_bounds[end_scale]
        # Block-causal mask; a single new scale sees every cached position and itself, so no mask needed.
        attn_mask_LS = None
        if end_scale - first_scale > 1:
            attn_mask_LS = self.level_L[begin:end, None] >= self.level_L[None, :end]
        block_cond = cond_BD  # shared_aln: one projection of the condition, offset per block
        if self.shared_ada_lin is not None:
            block_cond = self.shared_ada_lin(cond_BD).view(-1, 1, 6, self.embed_dim)
        for block_index, block in enumerate(self.blocks):
            past = None
            if cache is not None and cache.keys[block_index] is not None:
                past = (cache.keys[block_index], cache.values[block_index])
            x_BLC, key_BHSc, value_BHSc = block(x_BLC, block_cond, attn_mask_LS, past)
            if cache is not None:
                cache.keys[block_index], cache.values[block_index] = key_BHSc, value_BHSc
        if cache is not None:
            cache.num_scales = end_scale
        return self.head(self.head_nm(x_BLC, cond_BD)).float()

    @torch.no_grad()
    def reset_parameters(self, init_std: float | None = None) -> None:
        """VAR's initialisation: truncated normal std √(1/(3C)), a small head, near-identity AdaLN.

        Residual-branch outputs are divided by √(2·depth); AdaLN gates γ start at ~0 (×1e-5) and its
        scale/shift at ×0.5, so a fresh model starts close to the identity map.
        """
        init_std = init_std if init_std is not None else math.sqrt(1 / self.embed_dim / 3)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=init_std)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
        for parameter in (self.pos_start, self.pos_1LC):
            nn.init.trunc_normal_(parameter, std=init_std)
        self.head.weight.mul_(0.02)
        self.head_nm.ada_lin[-1].weight.mul_(0.5)
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * self.depth))
            block.ffn.fc2.weight.div_(math.sqrt(2 * self.depth))
            if block.attn.attn_l2_norm:
                block.attn.scale_mul_1H11.fill_(math.log(SCALE_MUL_INIT))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(0.5)
                block.ada_gss[:, :, :2].mul_(1e-5)
            else:
                block.ada_lin[-1].weight[2 * self.embed_dim:].mul_(0.5)
                block.ada_lin[-1].weight[: 2 * self.embed_dim].mul_(1e-5)
