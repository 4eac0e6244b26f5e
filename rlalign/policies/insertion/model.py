"""The insertion transformer (docs/insertion.md): a bidirectional model that scores every gap of a text.

Input sequence, attended in both directions:

    [ condition tokens (C) ; time token ; BOS ; x_1 .. x_n ]

The condition is an image cut into square patches (each patch → Linear → width, plus a learned
patch position) or, for text-to-text models, a prompt's words (sharing the token embedding). The
time token carries t ∈ [0, 1): how much of the target the process has revealed so far, which is
what the rate head must know to predict how many tokens are still missing.

The hidden states of BOS and of each x_j are the n + 1 gaps (gap 0 before x_1, gap j after x_j).
Each gap has three heads: the zero-inflation logit z (π = σ(z) = P(no insertion)), the rate
λ = softplus(·) > 0 (returned as log λ, which is what the sampler and CFG mix), and token logits
over the vocabulary (Q). The token logits are raw: the special tokens (pad, unk, BOS) are masked
to −inf by `sampler.insertable_log_probs`, *after* CFG mixing, because mixing −inf with a negative
weight would give NaN.

All attention and MLP projections are explicit nn.Linear layers named `mat_qkv`, `proj`, `fc1`,
`fc2` (the default `policy.lora.target_modules`), so peft's LoRA wraps them.

A model is saved as one safetensors file with its architecture as JSON in the metadata.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlalign.policies.shared import split_words
from rlalign.policies.weights import load_with_architecture, save_with_architecture
from rlalign.shapes import DESCRIBED_WORDS

PAD, UNK, BOS = 0, 1, 2
NUM_SPECIAL = 3
"""Token ids below NUM_SPECIAL (pad, unk, BOS) are never inserted."""
SPECIAL_WORDS = ("<pad>", "<unk>", "<bos>")
FORMAT = "rlalign-insertion-v1"
TIME_FREQUENCIES = 8


def shapes_vocabulary() -> list[str]:
    """Every word of a described scene's caption (canonical and mirrored phrases), without specials:
    the captioner describes described scenes, so counting words are not in its vocabulary."""
    return list(DESCRIBED_WORDS)


class WordIds:
    """Texts -> ids in a word-level vocabulary (unknown words -> UNK): the policy's own tokenisation,
    given to rewards as TRL's `completion_ids`. A plain class, so reward workers pickle it (Ray)."""

    def __init__(self, vocabulary: Sequence[str]):
        self.word_index = {word: i for i, word in enumerate(vocabulary)}

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        return [[self.word_index.get(word, UNK) for word in split_words(text)] for text in texts]


class GapOutputs(NamedTuple):
    """The three per-gap heads; I = n + 1 gaps per row (rows past a sequence's length are padding)."""

    zero_logit_BI: Tensor  # [B, I] z, π = σ(z) = P(no insertion)
    log_rate_BI: Tensor  # [B, I] log λ, λ = softplus(·)
    token_logits_BIV: Tensor  # [B, I, V] raw logits of Q (specials not yet masked)


class Attention(nn.Module):
    """Bidirectional multi-head self-attention with a key padding mask."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        if width % num_heads:
            raise ValueError(f"width={width} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.mat_qkv = nn.Linear(width, 3 * width)  # [q | k | v]
        self.proj = nn.Linear(width, width)

    def forward(self, x_BSD: Tensor, attend_B11S: Tensor) -> Tensor:
        batch, length, width = x_BSD.shape
        qkv_3BHSc = self.mat_qkv(x_BSD).view(batch, length, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out_BHSc = F.scaled_dot_product_attention(*qkv_3BHSc.unbind(0), attn_mask=attend_B11S)
        return self.proj(out_BHSc.transpose(1, 2).reshape(batch, length, width))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, num_heads)
        hidden = round(width * mlp_ratio)
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x_BSD: Tensor, attend_B11S: Tensor) -> Tensor:
        x_BSD = x_BSD + self.attn(self.norm1(x_BSD), attend_B11S)
        return x_BSD + self.fc2(F.gelu(self.fc1(self.norm2(x_BSD))))


class InsertionTransformer(nn.Module):
    """Per-gap insertion heads over [condition ; time ; BOS ; text].

    Args:
        vocabulary: the insertable words (specials are prepended: 0 pad, 1 unk, 2 BOS).
        width, depth, num_heads, mlp_ratio: transformer size.
        max_len: the longest text (tokens); the sampler never grows a text past it.
        condition: `image` (a [3, image_size, image_size] picture in [0, 1]; InsertionPolicy renders
            Shapes Scenes into such pictures) or `text` (a prompt of at most max_prompt_words words).
    """

    def __init__(self, vocabulary: Sequence[str], *, width: int = 128, depth: int = 4, num_heads: int = 4,
                 mlp_ratio: float = 4.0, max_len: int = 24, condition: str = "image", image_size: int = 32,
                 patch_size: int = 4, max_prompt_words: int = 16):
        super().__init__()
        if condition not in ("image", "text"):
            raise ValueError(f"condition must be 'image' or 'text', got {condition!r}")
        if condition == "image" and image_size % patch_size:
            raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
        words = [w for w in vocabulary if w not in SPECIAL_WORDS]
        self.architecture = {"vocabulary": words, "width": width, "depth": depth, "num_heads": num_heads,
                             "mlp_ratio": mlp_ratio, "max_len": max_len, "condition": condition,
                             "image_size": image_size, "patch_size": patch_size,
                             "max_prompt_words": max_prompt_words}
        self.vocabulary = list(SPECIAL_WORDS) + words
        self.word_index = {word: i for i, word in enumerate(self.vocabulary)}
        self.max_len, self.condition_kind = max_len, condition
        self.image_size, self.patch_size = image_size, patch_size
        self.token_embed = nn.Embedding(len(self.vocabulary), width)
        self.text_pos = nn.Parameter(torch.randn(max_len + 1, width) * 0.02)  # BOS + max_len tokens
        if condition == "image":
            self.num_condition_tokens = (image_size // patch_size) ** 2
            self.patch_embed = nn.Linear(3 * patch_size * patch_size, width)
        else:
            self.num_condition_tokens = max_prompt_words
        self.condition_pos = nn.Parameter(torch.randn(self.num_condition_tokens, width) * 0.02)
        self.null_cond = nn.Parameter(torch.randn(width) * 0.02)
        self.time_embed = nn.Linear(2 * TIME_FREQUENCIES, width)
        self.blocks = nn.ModuleList(Block(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.zero_head, self.rate_head = nn.Linear(width, 1), nn.Linear(width, 1)
        self.token_head = nn.Linear(width, len(self.vocabulary))

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def device(self) -> torch.device:
        return self.text_pos.device

    # ---------------------------------------------------------------------------------------------
    # Texts
    # ---------------------------------------------------------------------------------------------

    def encode_texts(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Word ids [B, max_len] (0-padded) and lengths [B]; an unknown word or a too long text fails
        (a training target outside the vocabulary would have an infinite loss)."""
        ids_BL = torch.zeros(len(texts), self.max_len, dtype=torch.long)
        lengths_B = torch.zeros(len(texts), dtype=torch.long)
        for row, text in enumerate(texts):
            words = split_words(text)
            unknown = [w for w in words if w not in self.word_index]
            if unknown or len(words) > self.max_len:
                problem = f"unknown words {unknown}" if unknown else f"{len(words)} words > max_len={self.max_len}"
                raise ValueError(f"cannot encode {text!r}: {problem}; the vocabulary is {self.vocabulary[NUM_SPECIAL:]}")
            ids_BL[row, : len(words)] = torch.tensor([self.word_index[w] for w in words], dtype=torch.long)
            lengths_B[row] = len(words)
        return ids_BL.to(self.device), lengths_B.to(self.device)

    def decode_texts(self, ids_BN: Tensor, lengths_B: Tensor) -> list[str]:
        """The texts of padded word ids (special tokens, which are never inserted, are skipped)."""
        texts = []
        for ids, length in zip(ids_BN.tolist(), lengths_B.tolist()):
            texts.append(" ".join(self.vocabulary[i] for i in ids[:length] if i >= NUM_SPECIAL))
        return texts

    # ---------------------------------------------------------------------------------------------
    # Conditions
    # ---------------------------------------------------------------------------------------------

    def condition(self, prompts: Sequence | Tensor, drop_B: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Condition tokens cond_BED and their key mask keep_BE (True = real) for a batch of prompts.

        `drop_B` (bool [B]) replaces those rows by the null condition (condition dropout in training,
        which is what teaches the unconditional model that CFG needs).
        """
        if self.condition_kind == "image":
            images_B3HW = self._images(prompts)
            batch, side, patch = images_B3HW.shape[0], self.image_size // self.patch_size, self.patch_size
            patches_BEF = (images_B3HW.reshape(batch, 3, side, patch, side, patch).permute(0, 2, 4, 1, 3, 5)
                           .reshape(batch, side * side, 3 * patch * patch))
            cond_BED = self.patch_embed(patches_BEF) + self.condition_pos
            keep_BE = torch.ones(cond_BED.shape[:2], dtype=torch.bool, device=self.device)
        else:
            ids_BE = self._prompt_ids(prompts)
            cond_BED, keep_BE = self.token_embed(ids_BE) + self.condition_pos, ids_BE != PAD
        if drop_B is not None:
            null_BED, null_keep_BE = self.null_condition(cond_BED.shape[0])
            drop_B = drop_B.to(self.device)
            cond_BED = torch.where(drop_B[:, None, None], null_BED, cond_BED)
            keep_BE = torch.where(drop_B[:, None], null_keep_BE, keep_BE)
        return cond_BED, keep_BE

    def null_condition(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The learned null condition: one token (slot 0), the other condition slots masked out."""
        width = self.null_cond.shape[0]
        rest_BED = torch.zeros(batch_size, self.num_condition_tokens - 1, width, device=self.device)
        cond_BED = torch.cat([self.null_cond.expand(batch_size, 1, width), rest_BED], 1)
        keep_BE = torch.zeros(batch_size, self.num_condition_tokens, dtype=torch.bool, device=self.device)
        keep_BE[:, 0] = True
        return cond_BED, keep_BE

    def _images(self, prompts: Sequence | Tensor) -> Tensor:
        """Prompts → images [B, 3, H, W]: a batch tensor, or a list of [3, H, W] tensors."""
        side = self.image_size
        if isinstance(prompts, Tensor) and prompts.ndim == 4:
            images = prompts
        else:
            items = list(prompts)
            if not all(isinstance(p, Tensor) and p.shape == (3, side, side) for p in items):
                bad = next(p for p in items if not (isinstance(p, Tensor) and p.shape == (3, side, side)))
                described = f"tensor of shape {tuple(bad.shape)}" if isinstance(bad, Tensor) else repr(bad)[:60]
                raise ValueError(f"this insertion model is conditioned on images: each prompt must be a "
                                 f"float tensor [3, {side}, {side}] in [0, 1] or (through the policy) a "
                                 f"Shapes Scene, got {described}")
            images = torch.stack(items) if items else torch.zeros(0, 3, side, side)
        if images.shape[1:] != (3, side, side) or not images.is_floating_point():
            raise ValueError(f"images must be float [B, 3, {side}, {side}] in [0, 1], got {images.dtype} "
                             f"{tuple(images.shape)}")
        return images.to(self.device, torch.float32)

    def _prompt_ids(self, prompts: Sequence) -> Tensor:
        ids_BE = torch.zeros(len(prompts), self.num_condition_tokens, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            if not isinstance(prompt, str):  # ValueError for every bad prompt, as PromptEncoder raises
                raise ValueError(f"this insertion model is conditioned on text prompts (strings), got {prompt!r}")  # noqa: TRY004
            words = split_words(prompt)
            if not 1 <= len(words) <= self.num_condition_tokens:
                raise ValueError(f"prompt {prompt!r} has {len(words)} words; this model takes "
                                 f"1..{self.num_condition_tokens}")
            ids_BE[row, : len(words)] = torch.tensor([self.word_index.get(w, UNK) for w in words])
        return ids_BE.to(self.device)

    # ---------------------------------------------------------------------------------------------
    # Forward
    # ---------------------------------------------------------------------------------------------

    def forward(self, cond_BED: Tensor, cond_keep_BE: Tensor, t_B: Tensor, tokens_BN: Tensor,
                lengths_B: Tensor) -> GapOutputs:
        """Per-gap heads for texts tokens_BN (0-padded past lengths_B) at times t_B; I = N + 1 gaps."""
        batch, num_tokens = tokens_BN.shape
        if num_tokens > self.max_len:
            raise ValueError(f"texts of {num_tokens} tokens exceed this model's max_len={self.max_len}")
        bos_B1 = torch.full((batch, 1), BOS, dtype=torch.long, device=tokens_BN.device)
        text_BID = self.token_embed(torch.cat([bos_B1, tokens_BN], 1)) + self.text_pos[: num_tokens + 1]
        time_B1D = self.time_embed(time_features(t_B.to(self.device)))[:, None]
        x_BSD = torch.cat([cond_BED, time_B1D, text_BID], 1)
        text_keep_BI = torch.arange(num_tokens + 1, device=self.device) <= lengths_B.to(self.device)[:, None]
        keep_BS = torch.cat([cond_keep_BE, torch.ones_like(text_keep_BI[:, :1]), text_keep_BI], 1)
        attend_B11S = keep_BS[:, None, None, :]  # key padding mask, True = may attend
        for block in self.blocks:
            x_BSD = block(x_BSD, attend_B11S)
        gaps_BID = self.norm(x_BSD[:, cond_BED.shape[1] + 1 :])
        # log λ through a floor: softplus can underflow to 0, and log 0 would poison gradients.
        log_rate_BI = F.softplus(self.rate_head(gaps_BID).squeeze(-1)).clamp_min(1e-30).log()
        return GapOutputs(self.zero_head(gaps_BID).squeeze(-1), log_rate_BI, self.token_head(gaps_BID))


def time_features(t_B: Tensor) -> Tensor:
    """Sinusoidal features [B, 2F] of t ∈ [0, 1] at frequencies 1 .. 1000 (geometric)."""
    freqs_F = torch.exp(torch.linspace(0.0, math.log(1000.0), TIME_FREQUENCIES, device=t_B.device))
    angles_BF = t_B.float()[:, None] * freqs_F
    return torch.cat([angles_BF.sin(), angles_BF.cos()], dim=1)


# -------------------------------------------------------------------------------------------------
# Files
# -------------------------------------------------------------------------------------------------


def build_model(architecture: dict[str, Any]) -> InsertionTransformer:
    """A randomly initialised model from an architecture dict (InsertionTransformer's arguments)."""
    return InsertionTransformer(**architecture)


def save_model(model: InsertionTransformer, path: str | Path, *, half: bool = True) -> Path:
    """Write the model atomically (temporary file, then rename); float weights as fp16 if `half`."""
    return save_with_architecture(model, model.architecture, path, file_format=FORMAT, half=half)


def load_model(checkpoint: str | Path) -> InsertionTransformer:
    """Load a model written by `save_model` (`builtin:NAME` or a path; weights come back as float32)."""
    return load_with_architecture(checkpoint, file_format=FORMAT, build=build_model,
                                  wrong_format_hint="policy.kind=insertion needs a file written by its save_model")
