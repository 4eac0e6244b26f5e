"""Bits ↔ latents for Infinity: binary spherical quantization (BSQ) and the per-scale bookkeeping.

Infinity's tokens are bits. Scale k of a schedule is an h_k×w_k map whose every position carries d
bits; a bit b becomes the code coordinate (2b − 1)/√d, and the d-vector is L2-normalised, so every
code lies on the unit sphere (FoundationVision/Infinity, commit 4c27bbb,
`infinity/models/bsq_vae/multiscale_bsq.py:529-530, 556-562`). The decoder's latent is the sum over
scales of each scale's code map upsampled to the last scale's size (trilinear, align_corners False,
`multiscale_bsq.py:234`; the last scale is added as is, `infinity/models/infinity.py:597-607`), and
the transformer's input for scale k+1 is that running sum *downsampled* to the size of scale k+1 with
the same trilinear interpolation (`infinity.py:600`), flattened row-major (`infinity.py:601-605`).

The reference does all of this on 5-D tensors [B, d, 1, h, w] (a time axis of length 1) with
trilinear interpolation, and its code maps are permuted views of [B, 1, h, w, d] tensors. Every
function here keeps those exact operations and memory layouts internally, so that the float32 values
agree bit for bit with the reference; the public tensors are 4-D ([B, d, h, w]) or token-major
([B, n, d], n = h·w, row-major over (h, w)).

Nothing here has state: the VAE's quantizer has no learned parameters in the official models
(`codebook_size = 2**codebook_dim`, so its projections are identities, `multiscale_bsq.py:201-205`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

Schedule = Sequence[tuple[int, int]]
"""(h, w) of each scale's token map, coarse to fine."""


def _as_5d(codes_BdHW: Tensor) -> Tensor:
    return codes_BdHW.unsqueeze(2)


def _resize(codes_Bd1hw: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Trilinear resize of a [B, d, 1, h, w] map to (1, *size_hw), up or down (no antialias)."""
    return F.interpolate(codes_Bd1hw, size=(1, *size_hw), mode="trilinear")


def _area_resize(codes_Bd1hw: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """'area' (adaptive average pooling) resize, what the VAE's quantizer uses to go down."""
    return F.interpolate(codes_Bd1hw, size=(1, *size_hw), mode="area")


def _tokens(codes_Bd1hw: Tensor) -> Tensor:
    """[B, d, 1, h, w] → [B, h·w, d], row-major over (h, w)."""
    codes_Bdhw = codes_Bd1hw.squeeze(-3)
    return codes_Bdhw.reshape(*codes_Bdhw.shape[:2], -1).permute(0, 2, 1)


def _check_bits(bits_Bnd: Tensor, size_hw: tuple[int, int], scale_index: int) -> None:
    if bits_Bnd.ndim != 3 or bits_Bnd.shape[1] != size_hw[0] * size_hw[1]:
        raise ValueError(
            f"scale {scale_index} is {size_hw[0]}x{size_hw[1]}: "
            f"expected bits [B, {size_hw[0] * size_hw[1]}, d], "
            f"got {list(bits_Bnd.shape)}"
        )


def _codes_5d(bits_Bnd: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Bits [B, h·w, d] → unit-norm codes [B, d, 1, h, w] as a permuted view, like the reference's.

    `indices_to_codes` with `label_type='bit_label'` (multiscale_bsq.py:536-577): b·s·2 − s with
    s = 1/√d, then L2 normalisation over d (a no-op up to rounding, which we keep).
    """
    batch, _, dim = bits_Bnd.shape
    scale = 1 / math.sqrt(dim)
    bits_B1hwd = bits_Bnd.to(torch.float32).reshape(batch, 1, *size_hw, dim)
    codes_B1hwd = F.normalize(bits_B1hwd * scale * 2 - scale, dim=-1)
    return codes_B1hwd.permute(0, 4, 1, 2, 3)


def codes_from_bits(bits_Bnd: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """One scale's bits [B, h·w, d] (0/1, any dtype) → its code map [B, d, h, w] on the unit sphere."""
    _check_bits(bits_Bnd, size_hw, 0)
    return _codes_5d(bits_Bnd, size_hw).squeeze(2)


def bsq_quantize(residual_Bd1hw: Tensor) -> tuple[Tensor, Tensor]:
    """BSQ of a [B, d, 1, h, w] map: (quantized map [B, d, 1, h, w], bits uint8 [B, h·w, d]).

    Each d-vector is L2-normalised and each coordinate replaced by ±1/√d: bit 1 where the normalised
    value is > 0, bit 0 where it is ≤ 0 (`BSQ.forward` with `new_quant`, multiscale_bsq.py:625-717 and
    `quantize_new`, 587-597). The quantized map is z + (ẑ − z) with a straight-through gradient, which
    in float32 can differ from ẑ in the last bit; the reference feeds that value onward, so do we.
    """
    batch, dim = residual_Bd1hw.shape[:2]
    spatial = residual_Bd1hw.shape[2:]
    # einops.pack (the reference's 'b * d') concatenates, which returns a contiguous copy; the layout
    # decides which interpolation kernel later runs on these codes, and so their last float bit.
    z_Bnd = F.normalize(residual_Bd1hw.permute(0, 2, 3, 4, 1).reshape(batch, -1, dim).contiguous(), dim=-1)
    sign_Bnd = torch.where(z_Bnd > 0, torch.ones_like(z_Bnd), -torch.ones_like(z_Bnd))
    quantized_Bnd = z_Bnd + ((1.0 / dim**0.5) * sign_Bnd - z_Bnd).detach()
    bits_Bnd = (quantized_Bnd > 0).to(torch.uint8)
    quantized_Bd1hw = quantized_Bnd.reshape(batch, *spatial, dim).permute(0, 4, 1, 2, 3)
    return quantized_Bd1hw, bits_Bnd


def residual_quantize(features_BdHW: Tensor, schedule: Schedule) -> list[Tensor]:
    """Bits of every scale for an encoder feature map, as the VAE's own quantizer computes them.

    `MultiScaleBSQ.forward` (multiscale_bsq.py:271-381): the residual, starting at the features, is
    'area'-downsampled to each scale (skipped when the scale has the features' size), BSQ-quantized,
    trilinearly upsampled back (skipped likewise) and subtracted. The scales need not end at the
    features' size. Returns uint8 [B, h_k·w_k, d] per scale.
    """
    residual_Bd1HW = _as_5d(features_BdHW)
    full_hw = tuple(features_BdHW.shape[-2:])
    bits_per_scale: list[Tensor] = []
    for size_hw in schedule:
        same_size = tuple(size_hw) == full_hw
        pooled_Bd1hw = residual_Bd1HW if same_size else _area_resize(residual_Bd1HW, size_hw)
        quantized_Bd1hw, bits_Bnd = bsq_quantize(pooled_Bd1hw)
        if not same_size:
            quantized_Bd1hw = _resize(quantized_Bd1hw, full_hw).contiguous()
        residual_Bd1HW = residual_Bd1HW - quantized_Bd1hw
        bits_per_scale.append(bits_Bnd)
    return bits_per_scale


def add_scale(summed_codes_BdHW: Tensor | None, bits_Bnd: Tensor, size_hw: tuple[int, int],
              final_hw: tuple[int, int]) -> Tensor:
    """The sampler's running latent after one more scale: summed + upsample(codes(bits)) [B, d, H, W].

    A scale of the final size is added without interpolation, as the reference adds its last scale
    (infinity.py:599 vs 607); the reference does resize an earlier scale of the final size, but a
    same-size trilinear resize is exact (weights 1 and 0), so skipping it changes no value.
    `summed_codes_BdHW` None starts the sum (the reference's `0 +`). The result is a channels-last
    view like the reference's; pass it back as is (a `.contiguous()` copy changes which interpolation
    kernel runs next and can move the next input by ~1e-8).
    """
    codes_Bd1hw = _codes_5d(bits_Bnd, size_hw)
    if tuple(size_hw) != tuple(final_hw):
        codes_Bd1hw = _resize(codes_Bd1hw, final_hw)
    if summed_codes_BdHW is None:
        return codes_Bd1hw.squeeze(2)
    return (_as_5d(summed_codes_BdHW) + codes_Bd1hw).squeeze(2)


def next_scale_input(summed_codes_BdHW: Tensor, next_hw: tuple[int, int]) -> Tensor:
    """The transformer's input tokens for the next scale: trilinear(summed → next size), [B, n, d]."""
    return _tokens(_resize(_as_5d(summed_codes_BdHW), next_hw))


def replay(bits_per_scale: Sequence[Tensor], schedule: Schedule) -> tuple[Tensor, Tensor]:
    """Run the sampler's bookkeeping over given bits: (inputs [B, L − n_1, d], summed codes [B, d, H, W]).

    The inputs are what the KV-cached sampler feeds the transformer for scales 2..K
    (infinity.py:596-605), concatenated; the summed codes are what it decodes (infinity.py:636).
    """
    if len(bits_per_scale) != len(schedule) or not schedule:
        raise ValueError(f"got bits for {len(bits_per_scale)} scales but the schedule has {len(schedule)}")
    final_hw = tuple(schedule[-1])
    summed_BdHW: Tensor | None = None
    inputs: list[Tensor] = []
    for scale_index, (bits_Bnd, size_hw) in enumerate(zip(bits_per_scale, schedule)):
        _check_bits(bits_Bnd, tuple(size_hw), scale_index)
        summed_BdHW = add_scale(summed_BdHW, bits_Bnd, size_hw, final_hw)
        if scale_index != len(schedule) - 1:
            inputs.append(next_scale_input(summed_BdHW, tuple(schedule[scale_index + 1])))
    assert summed_BdHW is not None
    empty = summed_BdHW.new_zeros(summed_BdHW.shape[0], 0, summed_BdHW.shape[1])
    return (torch.cat(inputs, dim=1) if inputs else empty), summed_BdHW


def self_correction_inputs(
    features_BdHW: Tensor, schedule: Schedule, flip_masks: Sequence[Tensor | None] | None = None,
    noise_layers: int | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Training inputs from encoder features: (inputs [B, L − n_1, d], label bits per scale).

    `BitwiseSelfCorrection.flip_requant` (infinity/models/bitwise_self_correction.py:32-84) with
    `noise_apply_requant=1` (its default, infinity/utils/arg_util.py:146). Unlike the VAE's quantizer,
    the residual is features − Σ(upsampled contributions) (another float rounding) and is
    'area'-downsampled at every scale but the last, even one of the features' size (lines 44-47).
    A scale below `noise_layers` (the reference's `noise_apply_layers`; None = every scale, as
    scripts/train.sh:119 sets 13) contributes the codes of its bits, flipped where `flip_masks[k]`
    (bool [B, n_k, d]) is set (lines 49-56); a later scale contributes its quantized map, which can
    differ from those codes in the last float bit. A flipped scale's labels stay its unflipped bits
    (line 48); the later scales quantize the residual that the flipped codes leave, so their labels
    teach the correction. The next input is the trilinear resize of the running sum (line 61).
    Drawing the masks (np.random strength, torch.rand) is the caller's. The last scale must have the
    features' size.
    """
    full_hw = tuple(features_BdHW.shape[-2:])
    if tuple(schedule[-1]) != full_hw:
        raise ValueError(f"the last scale {tuple(schedule[-1])} must match the features' size {full_hw}")
    noise_layers = len(schedule) if noise_layers is None else noise_layers
    masks = list(flip_masks) if flip_masks is not None else [None] * len(schedule)
    if len(masks) != len(schedule) or any(m is not None for m in masks[noise_layers:]):
        raise ValueError(f"flip_masks needs one entry per scale, None from scale {noise_layers} on")
    features_Bd1HW = _as_5d(features_BdHW)
    accumulated: Tensor | float = 0.0
    labels: list[Tensor] = []
    inputs: list[Tensor] = []
    for scale_index, size_hw in enumerate(schedule):
        residual_Bd1hw = features_Bd1HW - accumulated
        if scale_index != len(schedule) - 1:
            residual_Bd1hw = _area_resize(residual_Bd1hw, size_hw).contiguous()
        quantized_Bd1hw, bits_Bnd = bsq_quantize(residual_Bd1hw)
        labels.append(bits_Bnd)
        if scale_index < noise_layers:
            mask_Bnd = masks[scale_index]
            flipped_Bnd = bits_Bnd
            if mask_Bnd is not None:
                flipped_Bnd = torch.where(mask_Bnd.bool(), 1 - bits_Bnd, bits_Bnd)
            quantized_Bd1hw = _codes_5d(flipped_Bnd, tuple(size_hw))
        accumulated = accumulated + _resize(quantized_Bd1hw, full_hw).contiguous()
        if scale_index != len(schedule) - 1:
            inputs.append(_tokens(_resize(accumulated, tuple(schedule[scale_index + 1])).contiguous()))
    empty = features_BdHW.new_zeros(features_BdHW.shape[0], 0, features_BdHW.shape[1])
    return (torch.cat(inputs, dim=1) if inputs else empty), labels


def unpatchify_bits(bits_Bn4d: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """Spatial patchify (Infinity-8B): a token's 4d bits → the 2×2 VAE positions it covers, [B, 4n, d].

    `pixel_shuffle(·, 2)` on [B, 4d, h, w] (infinity.py:590-593): bit c·4 + 2i + j of token (y, x)
    is bit c of VAE position (2y + i, 2x + j). The result is on the (2h, 2w) VAE grid, row-major.
    """
    batch, _, channels = bits_Bn4d.shape
    bits_B4dhw = bits_Bn4d.reshape(batch, *size_hw, channels).permute(0, 3, 1, 2)
    bits_Bd2h2w = F.pixel_shuffle(bits_B4dhw, 2)
    return bits_Bd2h2w.permute(0, 2, 3, 1).reshape(batch, -1, channels // 4)


def patchify_tokens(tokens_Bnd: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """The inverse grouping for inputs or labels on the (h, w) VAE grid: [B, h·w, d] → [B, h·w/4, 4d].

    `pixel_unshuffle(·, 2)` (infinity.py:602-603, bitwise_self_correction.py:62-76).
    """
    batch, _, channels = tokens_Bnd.shape
    maps_Bdhw = tokens_Bnd.reshape(batch, *size_hw, channels).permute(0, 3, 1, 2)
    return _tokens(F.pixel_unshuffle(maps_Bdhw, 2).unsqueeze(2))


def to_uint8_bgr(images_B3HW: Tensor) -> Tensor:
    """Decoded images in [-1, 1] → the sampler's output [B, H, W, 3] uint8, BGR, truncated not rounded.

    infinity.py:640-641. For the test against the reference only; policies use [0, 1] RGB floats.
    """
    scaled_BHW3 = ((images_B3HW + 1) / 2).permute(0, 2, 3, 1).mul(255)
    return scaled_BHW3.to(torch.uint8).flip(dims=(3,))
