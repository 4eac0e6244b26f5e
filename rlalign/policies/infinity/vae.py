"""Infinity's BSQ VAE (image tokenizer): convolutional encoder/decoder and multi-scale bit encoding.

A re-implementation of FoundationVision/Infinity, commit 4c27bbb, `infinity/models/bsq_vae/`
(`flux_vqgan.py`, `conv.py`, `multiscale_bsq.py`, `vae.py`), restricted to what the released image
models use: 2-D convolutions, GroupNorm, no attention (`cnn_attention='no'`), no KL branch
(`use_vae=False`), no layer norm or projection before the quantizer (vae.py:72-237 fixes all of these).
Module and parameter names are the reference's, including its wrappers (`….conv.weight` for `Conv`,
`….norm.weight` for `Normalize`, conv.py:7-14, flux_vqgan.py:19-28), so a reference state dict loads
one to one; `load_vae_state` checks that every key is covered, which the reference loader does not
(vae.py:6-69 skips unknown keys silently).

Shapes: images [B, 3, H, W] in [-1, 1]; features and latents [B, d, H/p, W/p] with d = codebook_dim and
p the downsampling factor (16 for the official models); bits per scale uint8 [B, h_k·w_k, d].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rlalign.policies.infinity import bits as bsq
from rlalign.utils.files import readable


def swish(x: Tensor) -> Tensor:
    """x·σ(x) written out as the reference does (flux_vqgan.py:51-53), not F.silu, to keep its rounding."""
    return x * torch.sigmoid(x)


def num_groups(channels: int) -> int:
    """GroupNorm groups: 32 when they divide the width, else 24 (flux_vqgan.py:24-30)."""
    for groups in (32, 24):
        if channels % groups == 0:
            return groups
    raise ValueError(f"Infinity's VAE needs every width divisible by 32 or 24, got {channels} channels")


class Conv(nn.Module):
    """A 2-D convolution under the attribute `conv`, which puts `.conv.` into the parameter names."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Normalize(nn.Module):
    """GroupNorm (eps 1e-6, affine) under the attribute `norm`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(num_groups(channels), channels, eps=1e-6, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


class ResnetBlock(nn.Module):
    """(GroupNorm → swish → conv3×3) twice, plus the input, 1×1-projected when widths differ.

    flux_vqgan.py:92-125.
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.norm1 = Normalize(in_ch)
        self.conv1 = Conv(in_ch, out_ch, 3, padding=1)
        self.norm2 = Normalize(out_ch)
        self.conv2 = Conv(out_ch, out_ch, 3, padding=1)
        self.nin_shortcut = Conv(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then conv3×3 stride 2 (flux_vqgan.py:128-142)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    """Nearest ×2, then conv3×3 (flux_vqgan.py:145-181, without the pixel-shuffle option)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = Conv(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    """One resolution level: `block.{j}` residual blocks, then an optional `downsample`/`upsample`."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, resample: type[nn.Module] | None) -> None:
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_ch if j == 0 else out_ch, out_ch) for j in range(num_blocks)
        )
        self.resample_name = None if resample is None else resample.__name__.lower()
        if resample is not None:
            # `downsample` or `upsample`, the reference's attribute names (flux_vqgan.py:234, 348).
            setattr(self, self.resample_name, resample(out_ch))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.block:
            x = block(x)
        return x if self.resample_name is None else getattr(self, self.resample_name)(x)


class Middle(nn.Module):
    """`mid`: two residual blocks at the lowest resolution (no attention in the released models)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.block_1(x))


@dataclass(frozen=True)
class VAEConfig:
    """The constructor arguments of the reference's `vae_model` that vary between VAEs.

    `codebook_dim` d: bits per position (also the latent width; `codebook_size` = 2^d). Level i of the
    encoder halves the resolution iff i < log2(patch_size) (flux_vqgan.py:198, 231); level i of the
    decoder doubles it iff 1 ≤ i ≤ log2(patch_size) (303, 345). `base_ch` and `num_res_blocks` are fixed
    at 128 and 2 by `vae_model` (vae.py:220-221); the golden tiny VAE overrides them.
    """

    codebook_dim: int = 32
    base_ch: int = 128
    encoder_ch_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    decoder_ch_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    num_res_blocks: int = 2
    patch_size: int = 16

    def __post_init__(self) -> None:
        if self.codebook_dim < 1 or self.base_ch < 1 or self.num_res_blocks < 1 or self.patch_size < 1:
            raise ValueError(f"invalid VAE config {self}")
        if not self.encoder_ch_mult or not self.decoder_ch_mult:
            raise ValueError("encoder_ch_mult and decoder_ch_mult need at least one level")
        for mult in (*self.encoder_ch_mult, *self.decoder_ch_mult):
            num_groups(self.base_ch * mult)
        if self.encoder_downsamplings != self.decoder_upsamplings:
            raise ValueError(
                f"encoder downsamples {self.encoder_downsamplings}x and decoder upsamples "
                f"{self.decoder_upsamplings}x by 2 with patch_size {self.patch_size}, ch_mult "
                f"{self.encoder_ch_mult}/{self.decoder_ch_mult}: decode(encode(x)) would change size"
            )

    @property
    def encoder_downsamplings(self) -> int:
        return sum(level < math.log2(self.patch_size) for level in range(len(self.encoder_ch_mult)))

    @property
    def decoder_upsamplings(self) -> int:
        return sum(1 <= level <= math.log2(self.patch_size) for level in range(len(self.decoder_ch_mult)))

    @property
    def downsample_factor(self) -> int:
        """Image pixels per latent position along each side."""
        return 2**self.encoder_downsamplings

    @classmethod
    def official(cls, vae_type: int, apply_spatial_patchify: bool) -> VAEConfig:
        """The VAE `tools/run_infinity.py:load_visual_tokenizer` builds (lines 257-277).

        d = vae_type (263); with spatial patchify patch 8 and ch_mult (1, 2, 4, 4) (265-268), else
        patch 16 and (1, 2, 4, 4, 4) (269-272); base_ch 128, 2 blocks from `vae_model` (vae.py:220-221).
        Patchify changes the VAE only through these two settings: the 2×2 grouping of its bits into
        4d-bit tokens happens in the sampler (see `bits.unpatchify_bits`).
        """
        if vae_type not in (14, 16, 18, 20, 24, 32, 64):
            raise ValueError(f"load_visual_tokenizer supports vae_type 14/16/18/20/24/32/64, got {vae_type}")
        ch_mult = (1, 2, 4, 4) if apply_spatial_patchify else (1, 2, 4, 4, 4)
        return cls(vae_type, 128, ch_mult, ch_mult, 2, 8 if apply_spatial_patchify else 16)

    @classmethod
    def from_golden_config(cls, config: Mapping[str, Any]) -> VAEConfig:
        """From a golden `config.json`: its "vae" section's `autoencoder_args_all`, the full namespace.

        Refuses namespaces that select a code path this module does not implement.
        """
        args = dict(config.get("vae", config)["autoencoder_args_all"])
        expected = {
            "quantizer_type": "MultiScaleBSQ", "use_vae": False, "cnn_type": "2d", "cnn_attention": "no",
            "norm_type": "group", "cnn_norm_axis": "spatial", "use_pxsf": False, "ln_before_quant": False,
            "use_decay_factor": False, "new_quant": True, "codebook_size": 2 ** args["codebook_dim"],
            # These act in eval mode too (multiscale_bsq.py:336-344): random flips, dropped scales.
            "random_flip": False, "random_flip_1lvl": False, "drop_when_test": False,
        }
        unsupported = {key: args.get(key) for key, value in expected.items() if args.get(key) != value}
        if unsupported:
            raise ValueError(f"unsupported VAE settings {unsupported}; this implementation needs {expected}")
        return cls(int(args["codebook_dim"]), int(args["base_ch"]), tuple(args["encoder_ch_mult"]),
                   tuple(args["decoder_ch_mult"]), int(args["num_res_blocks"]), int(args["patch_size"]))


INFINITY_2B_VAE = VAEConfig.official(32, apply_spatial_patchify=False)
"""Infinity-2B: `infinity_vae_d32_reg.pth`, vae_type 32, no patchify (tools/interactive_infer.ipynb, file
lines 17, 23, 34; also scripts/infer.sh:10-19): d = 32, patch 16, ch_mult (1, 2, 4, 4, 4)."""
INFINITY_8B_VAE = VAEConfig.official(14, apply_spatial_patchify=True)
"""Infinity-8B: `infinity_vae_d56_f8_14_patchify.pth`, vae_type 14, patchify
(tools/interactive_infer_8b.ipynb, file lines 17, 23, 34): d = 14, patch 8, ch_mult (1, 2, 4, 4); its
transformer tokens carry 4·14 = 56 bits (one per 2×2 VAE positions)."""


class Encoder(nn.Module):
    """Image [B, 3, H, W] → features [B, d, H/p, W/p] (flux_vqgan.py:184-285)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mults = config.base_ch, config.encoder_ch_mult
        self.conv_in = Conv(3, ch, 3, padding=1)
        in_mults = (1, *mults)
        self.down = nn.ModuleList(
            Level(ch * in_mults[i], ch * mults[i], config.num_res_blocks,
                  Downsample if i < math.log2(config.patch_size) else None)
            for i in range(len(mults))
        )
        width = ch * mults[-1]
        self.mid = Middle(width)
        self.norm_out = Normalize(width)
        self.conv_out = Conv(width, config.codebook_dim, 3, padding=1)

    def forward(self, images_B3HW: Tensor) -> Tensor:
        h = self.conv_in(images_B3HW)
        for level in self.down:
            h = level(h)
        return self.conv_out(swish(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """Latent [B, d, h, w] → image [B, 3, h·p, w·p], unclamped (flux_vqgan.py:288-387).

    `up.{i}` is resolution level i, run from the coarsest (i = n − 1) to the finest; each has
    num_res_blocks + 1 residual blocks.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        ch, mults = config.base_ch, config.decoder_ch_mult
        width = ch * mults[-1]
        self.conv_in = Conv(config.codebook_dim, width, 3, padding=1)
        self.mid = Middle(width)
        levels: list[Level] = []
        for i in reversed(range(len(mults))):
            upsample = Upsample if 1 <= i <= math.log2(config.patch_size) else None
            levels.insert(0, Level(width, ch * mults[i], config.num_res_blocks + 1, upsample))
            width = ch * mults[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = Normalize(width)
        self.conv_out = Conv(width, 3, 3, padding=1)

    def forward(self, latent_BdHW: Tensor) -> Tensor:
        h = self.mid(self.conv_in(latent_BdHW))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


class BitMask(nn.Module):
    """The quantizer's only state: the constant buffer `mask` = 2^(d−1) … 2^0 (int64, multiscale_bsq.py:514).

    It turns bits into integer labels, which the bit-label models never use; it is kept so that
    reference state dicts map one to one (int64 wraps for d = 64, as in the reference).
    """

    def __init__(self, codebook_dim: int) -> None:
        super().__init__()
        self.register_buffer("mask", 2 ** torch.arange(codebook_dim - 1, -1, -1))


class MultiScaleBSQ(nn.Module):
    """`quantizer`: holds `lfq` (the per-scale BSQ); the math is in `bits.residual_quantize`."""

    def __init__(self, codebook_dim: int) -> None:
        super().__init__()
        self.lfq = BitMask(codebook_dim)


class BSQVAE(nn.Module):
    """Encoder, decoder and multi-scale BSQ of Infinity's VAE (`AutoEncoder`, flux_vqgan.py:390-545)."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = MultiScaleBSQ(config.codebook_dim)
        # The reference registers it twice (flux_vqgan.py:479): `quantizer.lfq.mask`, `quantize.lfq.mask`.
        self.quantize = self.quantizer

    @property
    def codebook_dim(self) -> int:
        return self.config.codebook_dim

    def encode_features(self, images_B3HW: Tensor) -> Tensor:
        """Encoder output before the quantizer, [B, d, H/p, W/p] float32 (flux_vqgan.py:509-524)."""
        return self.encoder(images_B3HW).to(torch.float32)

    def encode_bits(self, images_B3HW: Tensor, schedule: Sequence[tuple[int, int]]) -> list[Tensor]:
        """Bits uint8 [B, h_k·w_k, d] of every scale, as `vae.encode(images, scale_schedule)` gives them."""
        return bsq.residual_quantize(self.encode_features(images_B3HW), schedule)

    def decode(self, summed_codes_BdHW: Tensor) -> Tensor:
        """Images [B, 3, H, W] from a latent, clamped to [-1, 1] (flux_vqgan.py:532-535).

        The sampler's latent is a permuted view, channels-last in memory (infinity.py:597-607, 636),
        and convolutions round differently on that layout (~2e-5 here on CPU); the latent is put in
        that layout first, so that any latent decodes as the reference sampler decodes it.
        """
        latent_BdHW = summed_codes_BdHW.contiguous(memory_format=torch.channels_last)
        return torch.clamp(self.decoder(latent_BdHW), min=-1, max=1)


OPTIONAL_KEYS = ("quantizer.lfq.mask", "quantize.lfq.mask")
"""Constant buffers a state dict may omit; when present they must equal ours."""


def _canonical_key(key: str, own_keys: Mapping[str, Tensor]) -> str:
    """Map an unwrapped name (`….conv_in.weight`, `….norm1.bias`) to ours (`….conv_in.conv.weight`).

    The reference loader accepts both spellings (vae.py:29-64: plain nn.Conv2d / nn.GroupNorm keys are
    redirected into the `Conv` / `Normalize` wrappers); so do we, but only when the name is not ours.
    """
    if key in own_keys:
        return key
    stem, _, leaf = key.rpartition(".")
    for wrapper in ("conv", "norm"):
        candidate = f"{stem}.{wrapper}.{leaf}"
        if candidate in own_keys:
            return candidate
    return key


def load_vae_state(vae: BSQVAE, state_dict: Mapping[str, Tensor]) -> None:
    """Copy a reference state dict into `vae`, refusing any missing, unexpected or mis-shaped key.

    Raises ValueError naming the offending keys. Keys may use the reference's wrapped names or the
    plain ones `load_cnn` also accepts; the constant `mask` buffers may be absent.
    """
    own = vae.state_dict()
    renamed: dict[str, Tensor] = {}
    duplicates: list[str] = []
    for key, value in state_dict.items():
        target = _canonical_key(key, own)
        if target in renamed:
            duplicates.append(f"{key} (→ {target})")
        renamed[target] = value
    missing = sorted(set(own) - set(renamed) - set(OPTIONAL_KEYS))
    unexpected = sorted(set(renamed) - set(own))
    mismatched = sorted(f"{key} {list(renamed[key].shape)} != {list(own[key].shape)}"
                        for key in set(own) & set(renamed) if renamed[key].shape != own[key].shape)
    mismatched += [f"{key} (not the constant 2^(d-1)…2^0)" for key in OPTIONAL_KEYS
                   if key in renamed and renamed[key].shape == own[key].shape
                   and not torch.equal(renamed[key], own[key])]
    problems = {
        "missing": missing, "unexpected": unexpected, "mismatched": mismatched, "duplicate": duplicates,
    }
    if any(problems.values()):
        text = "; ".join(f"{kind} keys: {', '.join(keys)}" for kind, keys in problems.items() if keys)
        raise ValueError(f"VAE state dict does not match the {vae.config} model: {text}")
    vae.load_state_dict({**own, **renamed}, strict=True)


def load_vae(path: str | Path, config: VAEConfig) -> BSQVAE:
    """A VAE in eval mode from a reference checkpoint: a bare `.safetensors` state dict, or a
    `.pth` holding `{'vae': state_dict}` as `vae_model` loads it (vae.py:243-251; weights only)."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state_dict = load_file(readable(path))
    else:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
        if "vae" not in checkpoint:
            raise ValueError(
                f"{path}: expected {{'vae': state_dict}} as vae_model loads it, "
                f"got keys {list(checkpoint)[:5]}"
            )
        state_dict = checkpoint["vae"]
    vae = BSQVAE(config)
    load_vae_state(vae, state_dict)
    return vae.eval().requires_grad_(False)
