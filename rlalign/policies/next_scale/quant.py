"""VAR's multi-scale residual vector quantizer (VAR paper, Alg. 1 and 2).

A latent map f [B, C, H, W] (H = W = p_K) is explained by K token maps r_1..r_K of growing sizes
p_1 < ... < p_K. At scale k the still unexplained residual is area-downsampled to p_k×p_k, each
position takes its nearest codebook vector (L2), and the code map is bicubic-upsampled back to H×W,
refined by φ_k and added to the reconstruction f̂ (and subtracted from the residual):

    φ(x) = (1 − r)·x + r·conv3×3(x),   r = quant_resi (0.5 in VAR).

φ_k comes from a small bank of convolutions picked by the scale's position k/(K−1) in [0, 1]
(``share_quant_resi`` convolutions, each owning the tick nearest to that position).

The transformer never sees token ids directly: its input for scale k+1 is f̂ after scales 1..k,
area-downsampled to p_{k+1}×p_{k+1} (``teacher_inputs`` for training, ``accumulate`` for sampling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class PhiConv(nn.Conv2d):
    """φ(x) = (1 − r)·x + r·conv3×3(x): the residual refinement applied to each upsampled code map."""

    def __init__(self, channels: int, resi_ratio: float) -> None:
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(resi_ratio)

    def forward(self, h_BCHW: torch.Tensor) -> torch.Tensor:
        return h_BCHW.mul(1 - self.resi_ratio) + super().forward(h_BCHW).mul(self.resi_ratio)


def phi_ticks(num_convs: int) -> list[float]:
    """Positions in [0, 1] owned by each φ convolution.

    The reference spaces them evenly with a margin of 1/(3K) at both ends when K = 4 (VAR's default)
    and 1/(2K) otherwise; we keep that quirk so that scale → conv assignments match the checkpoints.
    """
    if num_convs == 1:
        return [0.5]
    start = 1 / 3 / num_convs if num_convs == 4 else 1 / 2 / num_convs
    stop = 1 - start
    # Same float operations as numpy.linspace, so exact midpoint ties resolve identically.
    step = (stop - start) / (num_convs - 1)
    return [index * step + start for index in range(num_convs - 1)] + [stop]


class PhiBank(nn.Module):
    """The φ convolutions of the quantizer; ``select(position)`` picks the one for a scale.

    ``share_quant_resi`` = 0: one conv per scale; 1: one conv for all scales; n ≥ 2: n convs shared
    by nearest tick. All variants store their convs in ``qresi_ls`` (the reference's name for the
    partially shared case; ``var_import`` renames the other two layouts). ``quant_resi`` = 0 disables φ.
    """

    def __init__(self, channels: int, num_scales: int, quant_resi: float, share_quant_resi: int) -> None:
        super().__init__()
        if share_quant_resi < 0:
            raise ValueError(f"share_quant_resi must be >= 0, got {share_quant_resi}")
        num_convs = num_scales if share_quant_resi == 0 else share_quant_resi
        self.uses_phi = abs(quant_resi) > 1e-6
        self.qresi_ls = nn.ModuleList(
            [PhiConv(channels, quant_resi) for _ in range(num_convs)] if self.uses_phi else []
        )
        self.ticks = phi_ticks(num_convs)

    def select(self, position: float) -> nn.Module:
        """The φ for a scale at ``position`` = k/(K−1) ∈ [0, 1] (k counted from 0)."""
        if not self.uses_phi:
            return nn.Identity()
        distances = [abs(tick - position) for tick in self.ticks]
        return self.qresi_ls[distances.index(min(distances))]  # first minimum, like np.argmin


@dataclass
class QuantizeTrainOutput:
    """What one differentiable quantization pass gives the tokenizer's training loop.

    ``f_hat_BCHW``: f̂ with a straight-through gradient to f (its value is the quantized f̂);
    ``vq_loss``: codebook + β·commitment loss averaged over scales; ``code_hits_V``: how many times each
    code was picked (all scales); ``queries_NC``: the (pooled) residual vectors that were quantized,
    the natural candidates for re-initialising dead codes.
    """

    f_hat_BCHW: torch.Tensor
    vq_loss: torch.Tensor
    code_hits_V: torch.Tensor
    queries_NC: torch.Tensor


class MultiScaleQuantizer(nn.Module):
    """Multi-scale residual VQ with a ``vocab_size × latent_channels`` codebook (``embedding``)."""

    def __init__(
        self, vocab_size: int, latent_channels: int, patch_nums: Sequence[int], quant_resi: float = 0.5,
        share_quant_resi: int = 4,
    ) -> None:
        super().__init__()
        if list(patch_nums) != sorted(set(patch_nums)):
            raise ValueError(f"patch_nums must be strictly increasing, got {list(patch_nums)}")
        self.vocab_size = vocab_size
        self.latent_channels = latent_channels
        self.patch_nums = tuple(int(size) for size in patch_nums)
        self.embedding = nn.Embedding(vocab_size, latent_channels)
        self.quant_resi = PhiBank(latent_channels, len(self.patch_nums), quant_resi, share_quant_resi)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    @property
    def latent_size(self) -> int:
        """H = W of f and f̂: the last (largest) scale."""
        return self.patch_nums[-1]

    def phi(self, scale_index: int) -> nn.Module:
        """φ_k for scale ``scale_index`` (0-based)."""
        position = scale_index / (self.num_scales - 1) if self.num_scales > 1 else 0.0
        return self.quant_resi.select(position)

    def nearest_codes(self, z_NC: torch.Tensor) -> torch.Tensor:
        """Index of the L2-nearest codebook vector for each row of ``z_NC``: LongTensor [N]."""
        codebook_VC = self.embedding.weight.detach()
        # |z|² + |e|² − 2 z·e, summed in this order (as the reference does) so that near-ties break
        # the same way and token ids match exactly.
        distances_NV = z_NC.square().sum(dim=1, keepdim=True) + codebook_VC.square().sum(dim=1)
        distances_NV = torch.addmm(distances_NV, z_NC, codebook_VC.T, beta=1, alpha=-2)
        return distances_NV.argmin(dim=1)

    def scale_contribution(self, tokens_Bl: torch.Tensor, scale_index: int) -> torch.Tensor:
        """φ_k(upsample(embed(r_k))): what scale k adds to f̂, [B, C, H, W]."""
        batch, size = tokens_Bl.shape[0], self.patch_nums[scale_index]
        if tokens_Bl.shape[1] != size * size:
            raise ValueError(
                f"scale {scale_index} expects {size}x{size}={size * size} tokens per sample, "
                f"got {tokens_Bl.shape[1]}"
            )
        h_BCpp = self.embedding(tokens_Bl).transpose(1, 2).reshape(batch, self.latent_channels, size, size)
        if size != self.latent_size:
            h_BCpp = F.interpolate(h_BCpp, size=(self.latent_size, self.latent_size), mode="bicubic")
        return self.phi(scale_index)(h_BCpp)

    @torch.no_grad()
    def quantize(self, f_BCHW: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Residual quantization of a latent map: (token maps [B, p_k²] per scale, f̂ [B,C,H,W])."""
        batch, channels, height, width = f_BCHW.shape
        if height != self.latent_size or width != self.latent_size:
            raise ValueError(
                f"latent map is {height}x{width} but the last scale is "
                f"{self.latent_size}x{self.latent_size}: "
                "the image size must be patch_nums[-1] times the encoder's downsampling factor"
            )
        residual_BCHW = f_BCHW.detach().clone()
        f_hat_BCHW = torch.zeros_like(residual_BCHW)
        tokens_per_scale: list[torch.Tensor] = []
        for scale_index, size in enumerate(self.patch_nums):
            # 'area' = average pooling over the p_k grid; at the last scale it is the identity.
            pooled_BCpp = (
                residual_BCHW if size == height
                else F.interpolate(residual_BCHW, size=(size, size), mode="area")
            )
            tokens_N = self.nearest_codes(pooled_BCpp.permute(0, 2, 3, 1).reshape(-1, channels))
            tokens_Bl = tokens_N.reshape(batch, size * size)
            h_BCHW = self.scale_contribution(tokens_Bl, scale_index)
            f_hat_BCHW = f_hat_BCHW + h_BCHW
            residual_BCHW = residual_BCHW - h_BCHW
            tokens_per_scale.append(tokens_Bl)
        return tokens_per_scale, f_hat_BCHW

    def quantize_for_training(self, f_BCHW: torch.Tensor, beta: float = 0.25) -> QuantizeTrainOutput:
        """The differentiable twin of ``quantize`` (VAR's ``VectorQuantizer2.forward``), for training.

        Token choice is identical to ``quantize``. Gradients: the codebook and φ learn from
        mse(f̂, f.detach()) accumulated after every scale (so coarse scales are pushed to explain as
        much as they can on their own); the encoder gets β·mse(f̂.detach(), f) (commitment) and, through
        the straight-through estimator f̂_st = f + (f̂ − f).detach(), the decoder's reconstruction gradient.
        """
        batch, channels, height, _ = f_BCHW.shape
        f_detached_BCHW = f_BCHW.detach()
        # The residual only steers the nearest-code search, so it carries no gradient.
        residual_BCHW = f_detached_BCHW.clone()
        f_hat_BCHW = torch.zeros_like(f_detached_BCHW)
        vq_loss = f_BCHW.new_zeros(())
        code_hits_V = torch.zeros(self.vocab_size, device=f_BCHW.device)
        queries: list[torch.Tensor] = []
        for scale_index, size in enumerate(self.patch_nums):
            pooled_BCpp = (
                residual_BCHW if size == height
                else F.interpolate(residual_BCHW, size=(size, size), mode="area")
            )
            query_NC = pooled_BCpp.permute(0, 2, 3, 1).reshape(-1, channels)
            tokens_N = self.nearest_codes(query_NC)
            code_hits_V += torch.bincount(tokens_N, minlength=self.vocab_size).float()
            queries.append(query_NC)
            h_BCHW = self.scale_contribution(tokens_N.reshape(batch, size * size), scale_index)
            f_hat_BCHW = f_hat_BCHW + h_BCHW
            residual_BCHW = residual_BCHW - h_BCHW.detach()
            vq_loss = vq_loss + F.mse_loss(f_hat_BCHW, f_detached_BCHW)
            vq_loss = vq_loss + beta * F.mse_loss(f_hat_BCHW.detach(), f_BCHW)
        f_hat_straight_through_BCHW = f_BCHW + (f_hat_BCHW - f_BCHW).detach()
        return QuantizeTrainOutput(
            f_hat_straight_through_BCHW, vq_loss / self.num_scales, code_hits_V, torch.cat(queries)
        )

    def tokens_to_f_hat(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """f̂ [B,C,H,W] = Σ_k φ_k(upsample(embed(r_k))) over the given (possibly first few) scales."""
        self._check_num_scales(tokens)
        f_hat_BCHW = self._zeros_like_f_hat(tokens[0])
        for scale_index, tokens_Bl in enumerate(tokens):
            f_hat_BCHW = f_hat_BCHW + self.scale_contribution(tokens_Bl, scale_index)
        return f_hat_BCHW

    def teacher_inputs(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        """Transformer inputs that teacher-force the given n scales: [B, Σ_{k=2..n} p_k², C].

        The input of scale k+1 is f̂ of scales 1..k area-downsampled to p_{k+1}×p_{k+1} (the reference's
        ``idxBl_to_var_input``). The last given token map is not needed (nothing comes after it) but is
        accepted, so a full token list gives the full input. With n = 1 the result has length 0.
        """
        self._check_num_scales(tokens)
        f_hat_BCHW = self._zeros_like_f_hat(tokens[0])
        inputs: list[torch.Tensor] = [f_hat_BCHW.new_zeros(f_hat_BCHW.shape[0], 0, self.latent_channels)]
        for scale_index in range(len(tokens) - 1):
            f_hat_BCHW, next_input_BlC = self.accumulate(f_hat_BCHW, tokens[scale_index], scale_index)
            inputs.append(next_input_BlC)
        return torch.cat(inputs, dim=1)

    def accumulate(
        self, f_hat_BCHW: torch.Tensor, tokens_Bl: torch.Tensor, scale_index: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One sampling step on f̂: add scale k's contribution, return (f̂, input of scale k+1).

        The next input is [B, p_{k+1}², C] (area-downsampled f̂), or None after the last scale. f̂ is not
        modified in place, so the caller's tensor and autograd history stay intact.
        """
        f_hat_BCHW = f_hat_BCHW + self.scale_contribution(tokens_Bl, scale_index)
        if scale_index == self.num_scales - 1:
            return f_hat_BCHW, None
        next_size = self.patch_nums[scale_index + 1]
        pooled_BCpp = (
            f_hat_BCHW if next_size == self.latent_size
            else F.interpolate(f_hat_BCHW, size=(next_size, next_size), mode="area")
        )
        return f_hat_BCHW, pooled_BCpp.flatten(2).transpose(1, 2)

    def empty_f_hat(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        """The f̂ that sampling starts from: zeros [B, C, H, W], on the codebook's device and dtype."""
        size, weight = self.latent_size, self.embedding.weight
        return weight.new_zeros(batch_size, self.latent_channels, size, size, device=device)

    def _zeros_like_f_hat(self, tokens_Bl: torch.Tensor) -> torch.Tensor:
        return self.empty_f_hat(tokens_Bl.shape[0])

    def _check_num_scales(self, tokens: Sequence[torch.Tensor]) -> None:
        if not 1 <= len(tokens) <= self.num_scales:
            raise ValueError(f"expected between 1 and {self.num_scales} token maps, got {len(tokens)}")
