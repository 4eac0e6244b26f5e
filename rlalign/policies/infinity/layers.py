"""The layers of the Infinity transformer (arXiv:2412.04431): attention, blocks, head, text pooling.

Block (the reference's fused-norm branch, `CrossAttnBlock.forward`, basic.py:520-529):
    γ1, γ2, s1, s2, t1, t2 = ada_gss + shared_ada_lin(cond)             (shared AdaLN)
    x += γ1 · SelfAttn(LN(x)·(1 + s1) + t1)          cosine attention with 2-D RoPE
    x += CrossAttn(LayerNorm_affine(x), text)      no AdaLN, 1/√c scaling
    x += γ2 · FFN(LN(x)·(1 + s2) + t2)             GELU(tanh)
Cosine self-attention: q and k L2-normalised, q × exp(min(s_h, ln 100)) per head, softmax scale 1,
biases (q_bias, 0, v_bias) (basic.py:215-220, 277-284). The reference runs cross-attention through
flash-attn with q and kv cast to bf16 and a bf16 output (basic.py:395-397); `CrossAttention.bf16_rounding`
reproduces those roundings in float32 (the golden vectors agree to ~1e-5 with it, ~2e-3 without).

Parameter names are the reference's (`block_chunks.{c}.module.{j}.…`), so its state dict loads
key for key; attention's fused projections are called as modules (not F.linear on their weight as
the reference does) so that peft's LoRA layers see them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlalign.policies.infinity.architecture import InfinityArchitecture


@dataclass
class TextFeatures:
    """What the text encoder gives the transformer: padded features and each prompt's length."""

    features_BTC: Tensor  # [B, T, Ct5]; rows at or past a prompt's length are ignored
    lens_B: Tensor  # [B] long, tokens per prompt including EOS


@dataclass
class Condition:
    """The transformer's view of a batch of prompts (or of their null condition)."""

    cond_BD: Tensor  # pooled text: start token and AdaLN input of the head
    gss_B16C: Tensor  # shared AdaLN terms (γ1, γ2, s1, s2, t1, t2) before each block's own ada_gss
    kv_BTD: Tensor  # projected text rows for cross-attention
    kv_mask_BT: Tensor  # bool, True where a row belongs to the prompt

    @staticmethod
    def stack(first: Condition, second: Condition) -> Condition:
        """[first; second] along the batch (the conditional half above the null half for CFG)."""
        width = max(first.kv_BTD.shape[1], second.kv_BTD.shape[1])
        pad = lambda t, w: F.pad(t, (0, 0, 0, w - t.shape[1])) if t.dim() == 3 else F.pad(t, (0, w - t.shape[1]))
        return Condition(torch.cat([first.cond_BD, second.cond_BD]), torch.cat([first.gss_B16C, second.gss_B16C]),
                         torch.cat([pad(first.kv_BTD, width), pad(second.kv_BTD, width)]),
                         torch.cat([pad(first.kv_mask_BT, width), pad(second.kv_mask_BT, width)]))


@dataclass
class KVCache:
    """Self-attention keys and values of every block for the positions processed so far."""

    keys: list[Tensor | None] = field(default_factory=list)
    values: list[Tensor | None] = field(default_factory=list)
    num_scales: int = 0

    @classmethod
    def empty(cls, depth: int) -> KVCache:
        return cls(keys=[None] * depth, values=[None] * depth)


def _round_bf16(x: Tensor) -> Tensor:
    """x rounded through bfloat16 and back (float32 inputs only; other dtypes pass unchanged)."""
    return x.to(torch.bfloat16).to(x.dtype) if x.dtype == torch.float32 else x


def _rotate(x_BHLc: Tensor, rope_2Lf: Tensor) -> Tensor:
    """Rotate pairs (2i, 2i+1) of the head dimension by the angles whose cos/sin are rope_2Lf."""
    pairs = x_BHLc.float().reshape(*x_BHLc.shape[:-1], -1, 2)
    cos, sin = rope_2Lf[0], rope_2Lf[1]
    rotated = torch.stack([cos * pairs[..., 0] - sin * pairs[..., 1], sin * pairs[..., 0] + cos * pairs[..., 1]], -1)
    return rotated.reshape(x_BHLc.shape).to(x_BHLc.dtype)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.mat_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, heads, 1, 1), 4.0).log())
        self.proj = nn.Linear(dim, dim)

    def forward(self, x_BLC: Tensor, rope_2Lf: Tensor, mask_LL: Tensor | None, cache: KVCache | None,
                index: int) -> Tensor:
        B, L, C = x_BLC.shape
        qkv = self.mat_qkv(x_BLC)  # under bf16 autocast the bias joins in bf16, so the KV cache stays bf16
        qkv = qkv + torch.cat([self.q_bias, self.zero_k_bias, self.v_bias]).to(qkv.dtype)
        q, k, v = qkv.view(B, L, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, L, c]
        scale_mul = self.scale_mul_1H11.clamp_max(math.log(100)).exp()
        q = F.normalize(q, dim=-1, eps=1e-12) * scale_mul
        k = F.normalize(k, dim=-1, eps=1e-12)
        q, k = _rotate(q, rope_2Lf), _rotate(k, rope_2Lf)
        if cache is not None:  # keys and values of the coarser scales come first
            if cache.keys[index] is not None:
                k, v = torch.cat([cache.keys[index], k], dim=2), torch.cat([cache.values[index], v], dim=2)
            cache.keys[index], cache.values[index] = k, v
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=mask_LL, scale=1.0)
        return self.proj(out.transpose(1, 2).reshape(B, L, C))


class CrossAttention(nn.Module):
    """Attention from queries to a prompt's text rows; `pool=True` is TextAttentivePool's single learned query."""

    def __init__(self, dim: int, kv_dim: int, heads: int, *, pool: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.pool = heads, dim // heads, pool
        self.mat_q = nn.Parameter(torch.zeros(1, heads, dim // heads)) if pool else nn.Linear(dim, dim)
        self.mat_kv = nn.Linear(kv_dim, 2 * dim, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("zero_k_bias", torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)
        self.bf16_rounding = True

    def forward(self, x_BLC: Tensor | None, kv_BTK: Tensor, kv_mask_BT: Tensor) -> Tensor:
        B, T = kv_mask_BT.shape
        kv = self.mat_kv(kv_BTK)
        kv = kv + torch.cat([self.zero_k_bias, self.v_bias]).to(kv.dtype)
        k, v = kv.view(B, T, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # [B, H, T, c]
        if self.pool:
            q = self.mat_q.to(k.dtype).unsqueeze(2).expand(B, -1, 1, -1)  # [B, H, 1, c]
        else:
            q = self.mat_q(x_BLC).view(B, x_BLC.shape[1], self.heads, self.head_dim).transpose(1, 2)
        if self.bf16_rounding:
            q, k, v = _round_bf16(q), _round_bf16(k), _round_bf16(v)
        out = F.scaled_dot_product_attention(q, k.to(q.dtype), v.to(q.dtype), attn_mask=kv_mask_BT[:, None, None, :],
                                             scale=1 / math.sqrt(self.head_dim))
        if self.bf16_rounding:
            out = _round_bf16(out)
        return self.proj(out.transpose(1, 2).reshape(B, q.shape[2], -1))


class TextPool(nn.Module):
    """The pooled text (cond_BD): one learned query attending over the prompt (infinity.py:38-50)."""

    def __init__(self, text_channels: int, dim: int, heads: int):
        super().__init__()
        self.ca = CrossAttention(dim, text_channels, heads, pool=True)

    def forward(self, text_BTC: Tensor, mask_BT: Tensor) -> Tensor:
        return self.ca(None, text_BTC, mask_BT).squeeze(1)


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, arch: InfinityArchitecture):
        super().__init__()
        C = arch.embed_dim
        self.eps = arch.norm_eps
        self.sa = SelfAttention(C, arch.num_heads)
        self.ca = CrossAttention(C, C, arch.num_heads)
        self.ffn = FFN(C, arch.ffn_hidden)
        self.ca_norm = nn.LayerNorm(C, eps=arch.norm_eps)
        self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, C))
        self.ca_gamma = (nn.Parameter(torch.full((C,), arch.cross_attn_layer_scale))
                         if arch.cross_attn_layer_scale >= 0 else None)

    def forward(self, x_BLC: Tensor, cond: Condition, rope_2Lf: Tensor, mask_LL: Tensor | None,
                cache: KVCache | None, index: int) -> Tensor:
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (self.ada_gss + cond.gss_B16C).unbind(2)  # [B, 1, C] each
        C = x_BLC.shape[-1]
        x_sa = F.layer_norm(x_BLC.float(), (C,), eps=self.eps).mul(scale1 + 1).add(shift1)
        x_BLC = x_BLC + self.sa(x_sa, rope_2Lf, mask_LL, cache, index).mul(gamma1)
        cross = self.ca(self.ca_norm(x_BLC), cond.kv_BTD, cond.kv_mask_BT).float()
        x_BLC = x_BLC + (cross if self.ca_gamma is None else cross * self.ca_gamma)
        x_ffn = F.layer_norm(x_BLC.float(), (C,), eps=self.eps).mul(scale2 + 1).add(shift2)
        return x_BLC + self.ffn(x_ffn).mul(gamma2)


class Chunk(nn.Module):
    """A group of blocks (the reference's MultipleLayers: keys `block_chunks.{c}.module.{j}`)."""

    def __init__(self, blocks: list[Block]):
        super().__init__()
        self.module = nn.ModuleList(blocks)


class AdaLNHead(nn.Module):
    def __init__(self, dim: int, cond_dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x_BLC: Tensor, cond_BD: Tensor) -> Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, x_BLC.shape[-1]).unbind(2)
        return F.layer_norm(x_BLC, (x_BLC.shape[-1],), eps=self.eps).mul(scale + 1).add(shift)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight).to(x.dtype)
