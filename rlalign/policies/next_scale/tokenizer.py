"""VAR's multi-scale VQVAE as a tokenizer: images ⇄ K token maps, plus the transformer's inputs.

Images at the public boundary are in [0, 1] (docs/next_scale.md, "Researcher API"); internally the autoencoder works in
[-1, 1] like the reference. Attribute names (``encoder``, ``decoder``, ``quant_conv``,
``post_quant_conv``, ``quantize.embedding``, ``quantize.quant_resi``) match the reference VQVAE, so its
state dict loads with only the renames documented in ``var_import``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlalign.policies.next_scale.quant import MultiScaleQuantizer
from rlalign.policies.next_scale.vae import Decoder, Encoder


class MultiScaleVQTokenizer(nn.Module):
    """Encoder → quant_conv → multi-scale residual VQ; f̂ → post_quant_conv → decoder.

    Args:
        vocab_size: codebook size V.
        latent_channels: codebook / latent width Cvae (``z_channels`` in VAR).
        patch_nums: side p_k of each scale's token map, increasing; the last equals the latent size.
        ch, ch_mult, num_res_blocks: autoencoder widths (``ch·ch_mult[i]`` at level i) and depth.
        quant_resi, share_quant_resi: φ refinement ratio and φ sharing (see ``quant.PhiBank``).
        num_groups: GroupNorm groups (32 in VAR; every width must be a multiple of it).
        use_attention: attention at the lowest resolution and in the middle blocks, as in VAR.
    """

    def __init__(
        self, *, vocab_size: int, latent_channels: int, patch_nums: Sequence[int], ch: int = 160,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4), num_res_blocks: int = 2, quant_resi: float = 0.5,
        share_quant_resi: int = 4, num_groups: int = 32, use_attention: bool = True, dropout: float = 0.0,
    ) -> None:
        super().__init__()
        autoencoder_sizes = dict(
            ch=ch, ch_mult=tuple(ch_mult), z_channels=latent_channels, num_res_blocks=num_res_blocks,
            dropout=dropout, num_groups=num_groups, use_attention=use_attention,
        )
        self.encoder = Encoder(**autoencoder_sizes)
        self.decoder = Decoder(**autoencoder_sizes)
        self.quant_conv = nn.Conv2d(latent_channels, latent_channels, kernel_size=3, stride=1, padding=1)
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, kernel_size=3, stride=1, padding=1)
        self.quantize = MultiScaleQuantizer(
            vocab_size, latent_channels, patch_nums, quant_resi, share_quant_resi
        )
        self.downsample_factor = 2 ** (len(ch_mult) - 1)

    @property
    def patch_nums(self) -> tuple[int, ...]:
        return self.quantize.patch_nums

    @property
    def vocab_size(self) -> int:
        return self.quantize.vocab_size

    @property
    def latent_channels(self) -> int:
        return self.quantize.latent_channels

    @property
    def image_size(self) -> int:
        """Side of the images this tokenizer encodes and decodes."""
        return self.patch_nums[-1] * self.downsample_factor

    @torch.no_grad()
    def encode(self, images_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Images in [0, 1] → one LongTensor [B, p_k²] per scale (row-major token maps)."""
        tokens_per_scale, _ = self.quantize.quantize(self.encode_to_latent(images_B3HW))
        return tokens_per_scale

    def encode_to_latent(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → the continuous latent f [B, Cvae, p_K, p_K] before quantization."""
        expected = (3, self.image_size, self.image_size)
        if images_B3HW.dim() != 4 or tuple(images_B3HW.shape[1:]) != expected:
            raise ValueError(f"expected images [B, {expected[0]}, {expected[1]}, {expected[2]}], "
                             f"got {list(images_B3HW.shape)}")
        return self.quant_conv(self.encoder(images_B3HW * 2 - 1))

    def decode(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token maps of all K scales → images [B, 3, H, W] in [0, 1]."""
        if len(tokens) != len(self.patch_nums):
            raise ValueError(f"decode needs all {len(self.patch_nums)} scales, got {len(tokens)}; "
                             "use tokens_to_f_hat for a partial reconstruction")
        return self.f_hat_to_images(self.tokens_to_f_hat(tokens))

    def tokens_to_f_hat(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """f̂ [B, Cvae, p_K, p_K] accumulated over the given (first n) scales."""
        return self.quantize.tokens_to_f_hat(tokens)

    def f_hat_to_images(self, f_hat_BCHW: torch.Tensor) -> torch.Tensor:
        """Decode an accumulated f̂ to images in [0, 1]."""
        return (self.f_hat_to_signed_images(f_hat_BCHW) + 1) / 2

    def f_hat_to_signed_images(self, f_hat_BCHW: torch.Tensor) -> torch.Tensor:
        """Decode f̂ to images in [-1, 1], clamped: the reference's ``fhat_to_img``."""
        return self.decoder(self.post_quant_conv(f_hat_BCHW)).clamp(-1, 1)

    def teacher_inputs(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Transformer inputs teacher-forcing the given n scales: [B, Σ_{k=2..n} p_k², Cvae]."""
        return self.quantize.teacher_inputs(tokens)

    def accumulate(
        self, f_hat_BCHW: torch.Tensor, tokens_Bl: torch.Tensor, scale_index: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sampling update: (f̂ + scale k's contribution, next input [B, p_{k+1}², Cvae] or None)."""
        return self.quantize.accumulate(f_hat_BCHW, tokens_Bl, scale_index)

    def empty_f_hat(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Zero f̂ [B, Cvae, p_K, p_K]: the state before the first scale is sampled."""
        return self.quantize.empty_f_hat(batch_size, device=device)
