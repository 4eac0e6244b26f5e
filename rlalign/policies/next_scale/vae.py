"""Convolutional encoder and decoder of VAR's multi-scale VQVAE.

The layout follows the VQGAN / latent-diffusion "vq-f16" autoencoder that VAR reuses: residual
blocks with GroupNorm + SiLU, single-head spatial self-attention at the lowest resolution and in the
middle, stride-2 convolutions to go down and nearest-neighbour ×2 + conv to go up. Module attribute
names (``conv_in``, ``down.{i}.block.{j}``, ``mid.attn_1``, ``up.{i}.upsample``, ...) are the ones of
the reference checkpoints, so an official ``vae_*.pth`` state dict loads without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GROUP_NORM_EPS = 1e-6  # the reference autoencoder normalises with eps=1e-6, not PyTorch's default 1e-5


def group_norm(num_channels: int, num_groups: int) -> nn.GroupNorm:
    """GroupNorm with the autoencoder's eps; ``num_channels`` must be a multiple of ``num_groups``."""
    if num_channels % num_groups != 0:
        raise ValueError(
            f"GroupNorm needs channels divisible by groups, got {num_channels} channels and "
            f"{num_groups} groups: choose vae_ch (times every ch_mult) as a multiple of {num_groups}"
        )
    return nn.GroupNorm(num_groups=num_groups, num_channels=num_channels, eps=GROUP_NORM_EPS, affine=True)


class ResnetBlock(nn.Module):
    """norm → SiLU → conv3×3, twice, plus a (1×1-projected when widths differ) skip connection."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, num_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels, num_groups)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nin_shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.conv1(F.silu(self.norm1(x_BCHW)))
        h_BCHW = self.conv2(self.dropout(F.silu(self.norm2(h_BCHW))))
        return self.nin_shortcut(x_BCHW) + h_BCHW


class AttnBlock(nn.Module):
    """Single-head self-attention over all H·W positions, with a residual connection.

    q, k and v come from one 1×1 convolution (``qkv``, 3C output channels, in that order) and the
    logits are scaled by C^-1/2, as in the reference.
    """

    def __init__(self, channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = group_norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x_BCHW.shape
        qkv_B3CN = self.qkv(self.norm(x_BCHW)).reshape(batch, 3, channels, height * width)
        query_BNC, key_BNC, value_BNC = qkv_B3CN.transpose(2, 3).unbind(dim=1)
        weights_BNN = torch.softmax(query_BNC @ key_BNC.transpose(1, 2) * channels**-0.5, dim=-1)
        attended_BCN = (weights_BNN @ value_BNC).transpose(1, 2)
        return x_BCHW + self.proj_out(attended_BCN.reshape(batch, channels, height, width))


class Downsample(nn.Module):
    """Halve the resolution: pad one pixel on the right and bottom, then a 3×3 stride-2 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        # Asymmetric padding (right/bottom only) is what the pretrained weights expect.
        return self.conv(F.pad(x_BCHW, pad=(0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour ×2, then a 3×3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2, mode="nearest"))


class MiddleStage(nn.Module):
    """resnet → attention → resnet at the lowest resolution (``mid`` in the reference)."""

    def __init__(self, channels: int, num_groups: int, dropout: float, use_attention: bool) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, num_groups, dropout)
        self.attn_1: nn.Module = AttnBlock(channels, num_groups) if use_attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, num_groups, dropout)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x_BCHW)))


class ResolutionStage(nn.Module):
    """The residual blocks (and, at the lowest resolution, attention blocks) of one resolution.

    ``resample`` names the module leaving the stage, under the reference's attribute name:
    ``"downsample"`` (encoder), ``"upsample"`` (decoder) or ``None`` (no change of resolution).
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int, num_groups: int, dropout: float,
        use_attention: bool, resample: str | None,
    ) -> None:
        super().__init__()
        self.resample = resample
        if resample == "downsample":
            self.downsample = Downsample(out_channels)
        elif resample == "upsample":
            self.upsample = Upsample(out_channels)
        elif resample is not None:
            raise ValueError(f"resample must be 'downsample', 'upsample' or None, got {resample!r}")
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()
        for block_index in range(num_blocks):
            block_in = in_channels if block_index == 0 else out_channels
            self.block.append(ResnetBlock(block_in, out_channels, num_groups, dropout))
            if use_attention:
                self.attn.append(AttnBlock(out_channels, num_groups))

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        for block_index, block in enumerate(self.block):
            x_BCHW = block(x_BCHW)
            if len(self.attn) > 0:
                x_BCHW = self.attn[block_index](x_BCHW)
        if self.resample is not None:
            x_BCHW = getattr(self, self.resample)(x_BCHW)
        return x_BCHW


class Encoder(nn.Module):
    """Image [B,3,H,W] in [-1,1] → latent [B, z_channels, H/2^(n−1), W/2^(n−1)], n = len(ch_mult)."""

    def __init__(
        self, *, ch: int, ch_mult: tuple[int, ...], z_channels: int, num_res_blocks: int = 2,
        in_channels: int = 3, dropout: float = 0.0, num_groups: int = 32, use_attention: bool = True,
    ) -> None:
        super().__init__()
        num_resolutions = len(ch_mult)
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        self.down = nn.ModuleList()
        block_in = ch
        for level in range(num_resolutions):
            block_out = ch * ch_mult[level]
            is_lowest = level == num_resolutions - 1
            stage = ResolutionStage(
                block_in, block_out, num_res_blocks, num_groups, dropout, use_attention and is_lowest,
                resample=None if is_lowest else "downsample",
            )
            self.down.append(stage)
            block_in = block_out
        self.mid = MiddleStage(block_in, num_groups, dropout, use_attention)
        self.norm_out = group_norm(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, image_B3HW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.conv_in(image_B3HW)
        for stage in self.down:
            h_BCHW = stage(h_BCHW)
        h_BCHW = self.mid(h_BCHW)
        return self.conv_out(F.silu(self.norm_out(h_BCHW)))


class Decoder(nn.Module):
    """Latent [B, z_channels, h, w] → image [B,3,h·2^(n−1), w·2^(n−1)] (unclamped, ~[-1,1]).

    ``up[i]`` holds resolution level i (0 = full resolution); it is run from the lowest level up. Each
    decoder level has ``num_res_blocks + 1`` residual blocks, one more than the encoder's.
    """

    def __init__(
        self, *, ch: int, ch_mult: tuple[int, ...], z_channels: int, num_res_blocks: int = 2,
        out_channels: int = 3, dropout: float = 0.0, num_groups: int = 32, use_attention: bool = True,
    ) -> None:
        super().__init__()
        num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = MiddleStage(block_in, num_groups, dropout, use_attention)
        stages_lowest_first = []
        for level in reversed(range(num_resolutions)):
            block_out = ch * ch_mult[level]
            is_lowest = level == num_resolutions - 1
            stage = ResolutionStage(
                block_in, block_out, num_res_blocks + 1, num_groups, dropout, use_attention and is_lowest,
                resample="upsample" if level != 0 else None,
            )
            stages_lowest_first.append(stage)
            block_in = block_out
        # Stored full-resolution first so that up.{i} in the state dict is resolution level i.
        self.up = nn.ModuleList(reversed(stages_lowest_first))
        self.norm_out = group_norm(block_in, num_groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z_BCHW: torch.Tensor) -> torch.Tensor:
        h_BCHW = self.mid(self.conv_in(z_BCHW))
        for stage in reversed(self.up):
            h_BCHW = stage(h_BCHW)
        return self.conv_out(F.silu(self.norm_out(h_BCHW)))
