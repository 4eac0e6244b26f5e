"""Training pieces for next-scale generators: the VQ tokenizer's loss, dead-code revival, the
transformer's teacher-forced loss with condition dropout, and a warm-up + cosine schedule.

Used by ``scripts/pretrain_shapes.py`` (the built-in Shapes generator); nothing here is specific to
Shapes. The tokenizer trains as in VAR (reconstruction + multi-scale residual VQ losses with a
straight-through f̂); the transformer trains on token maps of a frozen tokenizer with cross-entropy
over all L = Σ_k p_k² positions, the condition replaced by the null condition now and then so that
classifier-free guidance has an unconditional model to contrast with.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from rlalign.policies.next_scale.model import NextScaleModel
from rlalign.policies.next_scale.quant import MultiScaleQuantizer
from rlalign.policies.next_scale.tokenizer import MultiScaleVQTokenizer


def tokenizer_loss(
    tokenizer: MultiScaleVQTokenizer, images_B3HW: torch.Tensor, *, beta: float = 0.25,
    l1_weight: float = 1.0, mse_weight: float = 1.0, vq_weight: float = 1.0,
    auxiliary: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]] | None = None,
    auxiliary_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, torch.Tensor]:
    """One training forward of the tokenizer: (loss, scalar metrics, code hits [V], queries [N, C]).

    Reconstruction is measured in the autoencoder's [-1, 1] space and *before* the clamp of
    ``f_hat_to_signed_images``, so that saturated pixels still receive gradient. ``auxiliary`` maps
    the latent f to an extra (loss, metrics), added with ``auxiliary_weight`` (e.g. a layout probe on
    ``coarse_queries``).
    """
    f_BCHW = tokenizer.encode_to_latent(images_B3HW)
    quantized = tokenizer.quantize.quantize_for_training(f_BCHW, beta=beta)
    recon_B3HW = tokenizer.decoder(tokenizer.post_quant_conv(quantized.f_hat_BCHW))
    target_B3HW = images_B3HW * 2 - 1
    l1 = F.l1_loss(recon_B3HW, target_B3HW)
    mse = F.mse_loss(recon_B3HW, target_B3HW)
    loss = l1_weight * l1 + mse_weight * mse + vq_weight * quantized.vq_loss
    metrics = {"loss": loss.item(), "l1": l1.item(), "mse": mse.item(), "vq": quantized.vq_loss.item()}
    if auxiliary is not None and auxiliary_weight > 0:
        auxiliary_loss, auxiliary_metrics = auxiliary(f_BCHW)
        loss = loss + auxiliary_weight * auxiliary_loss
        metrics.update(auxiliary_metrics)
    return loss, metrics, quantized.code_hits_V, quantized.queries_NC


class DeadCodeReviver:
    """Tracks how often each code is used and re-initialises the unused ones from live residuals.

    A code nobody picks gets no gradient and stays dead for good; moving it onto a vector the
    quantizer actually has to explain (a random recent query, i.e. a pooled residual) gives it a
    chance to be picked. Usage is an exponential moving average of per-step hit counts; codes whose
    average falls below ``threshold`` are revived. All codes start dead, so the first call
    initialises the whole codebook from data (the latent scale is unknown before training).
    """

    def __init__(self, quantizer: MultiScaleQuantizer, *, decay: float = 0.99, threshold: float = 0.03):
        self.quantizer, self.decay, self.threshold = quantizer, decay, threshold
        self.usage_V = torch.zeros(quantizer.vocab_size)

    def observe(self, code_hits_V: torch.Tensor) -> None:
        """Fold one step's hit counts into the moving average."""
        self.usage_V.mul_(self.decay).add_(code_hits_V.detach().cpu(), alpha=1 - self.decay)

    @torch.no_grad()
    def revive(self, queries_NC: torch.Tensor, generator: torch.Generator) -> int:
        """Move every dead code onto a random query (plus a little noise); return how many moved."""
        dead_D = (self.usage_V < self.threshold).nonzero().squeeze(1)
        if dead_D.numel() == 0:
            return 0
        picks_D = torch.randint(queries_NC.shape[0], (dead_D.numel(),), generator=generator)
        chosen_DC = queries_NC.detach()[picks_D]
        noise_DC = torch.randn(chosen_DC.shape, generator=generator).to(chosen_DC.device) * 0.01 * chosen_DC.std()
        self.quantizer.embedding.weight[dead_D] = chosen_DC + noise_DC
        # Give revived codes a grace period so they are not revived again before they had a chance.
        self.usage_V[dead_D] = 1.0
        return int(dead_D.numel())

    def num_dead(self) -> int:
        return int((self.usage_V < self.threshold).sum())


def flatten_tokens(tokens: Sequence[torch.Tensor]) -> torch.Tensor:
    """Token maps of all scales [B, p_k²] → one sequence [B, L]."""
    return torch.cat(list(tokens), dim=1)


def split_tokens(tokens_BL: torch.Tensor, patch_nums: Sequence[int]) -> list[torch.Tensor]:
    """The inverse of ``flatten_tokens``: [B, L] → one [B, p_k²] map per scale."""
    return list(tokens_BL.split([size * size for size in patch_nums], dim=1))


@torch.no_grad()
def pretokenize(tokenizer: MultiScaleVQTokenizer, images_B3HW: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Encode images with a frozen tokenizer: token ids [B, L] (int16 when the vocabulary fits)."""
    chunks = [flatten_tokens(tokenizer.encode(images_B3HW[i:i + batch_size]))
              for i in range(0, images_B3HW.shape[0], batch_size)]
    tokens_BL = torch.cat(chunks)
    return tokens_BL.to(torch.int16) if tokenizer.vocab_size <= 2**15 else tokens_BL


def drop_conditions(cond_BD: torch.Tensor, null_BD: torch.Tensor, drop_prob: float,
                    generator: torch.Generator) -> torch.Tensor:
    """Replace each row's condition by the null condition with probability ``drop_prob`` (for CFG)."""
    drop_B1 = (torch.rand(cond_BD.shape[0], 1, generator=generator) < drop_prob).to(cond_BD.device)
    return torch.where(drop_B1, null_BD, cond_BD)


def teacher_forced_loss(
    model: NextScaleModel, prompts: Sequence, tokens_BL: torch.Tensor, *, drop_prob: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy of all L tokens given the prompts (some dropped to the null condition).

    Also reports the loss of the first and the last scale separately: the first scales decide the
    layout (what the prompt is about), the last ones only texture.
    """
    tokens_BL = tokens_BL.long()
    patch_nums = model.patch_nums
    with torch.no_grad():  # the tokenizer is frozen: its inputs are data, not parameters
        inputs_BLC = model.tokenizer.teacher_inputs(split_tokens(tokens_BL, patch_nums))
    cond_BD = drop_conditions(model.condition(list(prompts)), model.null_condition(len(prompts)),
                              drop_prob, generator)
    logits_BLV = model.transformer(cond_BD, inputs_BLC)
    loss_BL = F.cross_entropy(logits_BLV.transpose(1, 2), tokens_BL, reduction="none")
    last_scale = patch_nums[-1] ** 2
    metrics = {
        "ce": loss_BL.mean().item(),
        "ce_first4": loss_BL[:, : sum(p * p for p in patch_nums[:4])].mean().item(),
        "ce_last": loss_BL[:, -last_scale:].mean().item(),
    }
    return loss_BL.mean(), metrics


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.05) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to ``min_ratio``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


NO_DECAY_NAMES = ("pos_start", "pos_1LC", "position_embed", "scale_mul_1H11", "null_cond")
"""Parameters kept out of weight decay besides biases: position tables, attention temperatures and
the learned null condition (decaying them only pulls them towards an arbitrary zero)."""


def adamw_param_groups(model: NextScaleModel, weight_decay: float) -> list[dict]:
    """AdamW groups for the transformer and conditioner (the tokenizer is frozen in stage 2):
    weight matrices decay, biases and the parameters named in ``NO_DECAY_NAMES`` do not."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if name.startswith("tokenizer.") or not parameter.requires_grad:
            continue
        if parameter.dim() < 2 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def coarse_queries(tokenizer: MultiScaleVQTokenizer, f_BCHW: torch.Tensor,
                   num_scales: int) -> list[torch.Tensor]:
    """The vectors the first ``num_scales`` scales quantize, differentiable in the encoder's f.

    Scale k's query is the residual f − Σ_{j<k} φ_j(upsample(e_j)) area-pooled to p_k×p_k: [B, C, p_k, p_k].
    The codes chosen along the way are the quantizer's (nearest codebook vectors); what earlier scales
    explained is subtracted without gradient, so a loss on the queries trains only the encoder. Used
    for auxiliary losses that make coarse codes carry meaning (NextFlow's semantic coarse tokens).
    """
    quantizer = tokenizer.quantize
    batch, channels, height, _ = f_BCHW.shape
    explained_BCHW = torch.zeros_like(f_BCHW)
    queries: list[torch.Tensor] = []
    for scale_index, size in enumerate(quantizer.patch_nums[:num_scales]):
        residual_BCHW = f_BCHW - explained_BCHW
        query_BCpp = residual_BCHW if size == height else F.interpolate(residual_BCHW, size=(size, size), mode="area")
        queries.append(query_BCpp)
        with torch.no_grad():
            tokens_N = quantizer.nearest_codes(query_BCpp.detach().permute(0, 2, 3, 1).reshape(-1, channels))
            explained_BCHW = explained_BCHW + quantizer.scale_contribution(tokens_N.reshape(batch, size * size),
                                                                           scale_index)
    return queries
