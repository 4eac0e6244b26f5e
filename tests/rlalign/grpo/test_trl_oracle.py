"""TRL as the oracle: its own GRPOTrainer._compute_loss (trl 1.16) on the same per-action tensors.

One prefix step per sample, so TRL's completion tokens are rlalign's actions of that step and its
completion mask is the action mask (ragged: samples have 3 to 6 valid actions of 6). The rlalign side
runs the pieces `grpo_update` runs (`loss_weights`, `micro_batch_normalizers`, `policy_loss`), over
one or two micro-batches; TRL's side runs `_compute_loss` once per micro-batch as gradient
accumulation steps, on a stand-in trainer object that holds only the attributes the method reads.
Covered: every loss type both have (grpo, dr_grpo, dapo, bnpo, gspo = TRL's grpo with sequence-level
importance sampling, cispo, sapo) × β = 0 and β = 0.04 with and without the KL bias correction ×
clip_eps_high unset and set × 1 and 2 micro-batches; the loss, its gradient and the logged clip / KL
metrics must agree to 1e-6. Settings where the two differ on purpose are set equal here: dr_grpo's
constant (`grpo.dr_grpo_length` = TRL's `max_completion_length`) and cispo's ε_max (TRL would cap at
clip_eps when epsilon_high is unset; rlalign refuses that).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer
from trl.trainer.utils import nanstd

from rlalign.grpo.advantages import group_advantages
from rlalign.grpo.loss import kl_k3, policy_loss
from rlalign.grpo.update import loss_weights, micro_batch_normalizers

B, A = 8, 6
TRL_LOSS = {"gspo": ("grpo", "sequence")}  # rlalign name → (TRL loss_type, importance_sampling_level)


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random log-probs moved off-policy enough that both clips act, a ragged mask, advantages ±."""
    generator = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, A, generator=generator) * 3 - 0.1
    logp = old + torch.randn(B, A, generator=generator) * 0.3
    ref = old + torch.randn(B, A, generator=generator) * 0.2
    lengths = torch.tensor([6, 3, 5, 4, 6, 6, 3, 5])
    mask = torch.arange(A)[None, :] < lengths[:, None]
    advantages = torch.randn(B, generator=generator)
    return {"old": old, "logp": logp, "ref": ref, "mask": mask, "advantages": advantages}


def grpo_settings(loss_type: str, *, beta: float, bias: bool, high: float | None, length: int | None = None):
    return SimpleNamespace(loss_type=loss_type, clip_eps=0.2, clip_eps_high=high, beta=beta, kl_bias_correction=bias,
                           step_weight_alpha=1.0, dr_grpo_length=length, sapo_temperature_pos=1.0,
                           sapo_temperature_neg=1.05)


def rlalign_side(data, grpo, micro_batches: int):
    logp = data["logp"].clone().requires_grad_(True)
    weights_BA = loss_weights([data["mask"]], grpo)
    chunks = list(torch.arange(B).chunk(micro_batches))
    total, stats = torch.zeros(()), []
    for index, normalizer in zip(chunks, micro_batch_normalizers(weights_BA, chunks, grpo.loss_type)):
        out = policy_loss(logp[index], data["old"][index], data["advantages"][index], weights_BA[index],
                          loss_type=grpo.loss_type, clip_eps=grpo.clip_eps, clip_eps_high=grpo.clip_eps_high,
                          beta=grpo.beta, kl_BA=kl_k3(logp[index], data["ref"][index]),
                          kl_bias_correction=grpo.kl_bias_correction,
                          sapo_temperatures=(grpo.sapo_temperature_pos, grpo.sapo_temperature_neg),
                          normalizer=normalizer)
        total = total + out.loss
        stats.append(out.stats)
    total.backward()
    return total.detach(), logp.grad, stats


class TrlStandIn:
    """What GRPOTrainer._compute_loss reads of `self`, for one process in train mode, no vLLM, no
    entropy bonus or masking, with the log-probs it would have computed handed over directly."""

    def __init__(self, grpo, micro_batches: int, max_completion_length: int, logp: torch.Tensor):
        self.loss_type, self.importance_sampling_level = TRL_LOSS.get(grpo.loss_type, (grpo.loss_type, "token"))
        self.beta, self.epsilon_low = grpo.beta, grpo.clip_eps
        self.epsilon_high = grpo.clip_eps if grpo.clip_eps_high is None else grpo.clip_eps_high
        self.args = SimpleNamespace(use_bias_correction_kl=grpo.kl_bias_correction, delta=None,
                                    sapo_temperature_pos=grpo.sapo_temperature_pos,
                                    sapo_temperature_neg=grpo.sapo_temperature_neg, steps_per_generation=micro_batches)
        self.current_gradient_accumulation_steps, self.max_completion_length = micro_batches, max_completion_length
        self.top_entropy_quantile, self.off_policy_mask_threshold = 1.0, None
        self.use_vllm = self.aux_loss_enabled = self._entropy_bonus_enabled = False
        self.model = SimpleNamespace(training=True)
        self.accelerator = SimpleNamespace(num_processes=1, gather=lambda x: x, reduce=lambda x, reduction: x)
        self._metrics = {"train": defaultdict(list)}
        self.logp = logp

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **_):
        rows = input_ids[:, 0]  # the prompt id carries the row index into this batch's log-probs
        return self.logp[rows], torch.zeros_like(self.logp[rows]), None


def trl_side(data, grpo, micro_batches: int, max_completion_length: int = A):
    logp = data["logp"].clone().requires_grad_(True)
    trainer = TrlStandIn(grpo, micro_batches, max_completion_length, logp)
    total = torch.zeros(())
    for index in torch.arange(B).chunk(micro_batches):
        inputs = {"prompt_ids": index[:, None], "prompt_mask": torch.ones(len(index), 1, dtype=torch.long),
                  "completion_ids": torch.zeros(len(index), A, dtype=torch.long),
                  "completion_mask": data["mask"][index].long(), "advantages": data["advantages"][index],
                  "old_per_token_logps": data["old"][index], "ref_per_token_logps": data["ref"][index],
                  "num_items_in_batch": data["mask"].sum().float()}
        total = total + GRPOTrainer._compute_loss(trainer, None, inputs)
    total.backward()
    return total.detach(), logp.grad, trainer._metrics["train"]


CASES = [(loss, beta, bias, high, micro) for loss, (beta, bias), high, micro in itertools.product(
    ["grpo", "dr_grpo", "dapo", "bnpo", "gspo", "cispo", "sapo"], [(0.0, True), (0.04, False), (0.04, True)],
    [None, 0.28], [1, 2])]


@pytest.mark.parametrize("loss_type, beta, bias, high, micro_batches", CASES)
def test_loss_gradient_and_metrics_match_trl(loss_type, beta, bias, high, micro_batches):
    if loss_type == "cispo":
        high = 5.0 if high is None else 1.28  # ε_max, a cap on the ratio
    data = batch(seed=len(loss_type) + micro_batches)
    grpo = grpo_settings(loss_type, beta=beta, bias=bias, high=high)
    loss, grad, stats = rlalign_side(data, grpo, micro_batches)
    trl_loss, trl_grad, metrics = trl_side(data, grpo, micro_batches)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert torch.allclose(grad, trl_grad, atol=1e-6, rtol=0), (grad - trl_grad).abs().max()
    if loss_type in ("grpo", "dr_grpo", "dapo", "bnpo", "gspo"):
        assert [s["clip_fraction_low"] for s in stats] == pytest.approx(metrics["clip_ratio/low_mean"], abs=1e-6)
        assert [s["clip_fraction_high"] for s in stats] == pytest.approx(metrics["clip_ratio/high_mean"], abs=1e-6)
    if loss_type == "cispo":
        assert [s["clip_fraction_high"] for s in stats] == pytest.approx(metrics["cispo_clip_ratio"], abs=1e-6)
    if beta > 0:
        assert [s["kl"] for s in stats] == pytest.approx(metrics["kl"], abs=1e-6)


def test_the_cases_clip_on_both_sides():
    """The oracle comparison means something only if the clips act: in the shared batch some ratios
    leave [0.8, 1.2] with the advantage's sign that makes the clip bite."""
    data = batch(seed=len("grpo") + 1)
    ratio = (data["logp"] - data["old"]).exp()[data["mask"]]
    assert (ratio < 0.8).any() and (ratio > 1.2).any()


@pytest.mark.parametrize("length", [A, 10])
def test_dr_grpo_with_trls_constant_normaliser(length):
    """grpo.dr_grpo_length = L divides every sample by L, as TRL's max_completion_length does; with
    L = the padded width it is rlalign's default normaliser."""
    data = batch(seed=3)
    grpo = grpo_settings("dr_grpo", beta=0.04, bias=True, high=None, length=length)
    loss, grad, _ = rlalign_side(data, grpo, 2)
    trl_loss, trl_grad, _ = trl_side(data, grpo, 2, max_completion_length=length)
    assert loss.item() == pytest.approx(trl_loss.item(), abs=1e-6)
    assert torch.allclose(grad, trl_grad, atol=1e-6, rtol=0)


def trl_advantages(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """TRL's advantages for multi_objective_aggregation='sum_then_normalize', reduced to one combined
    reward per completion: trl/trainer/grpo_trainer.py (trl 1.16.0) lines 2765–2810, with its nanstd."""
    mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
    if scale == "batch":
        std = nanstd(rewards).expand_as(rewards)
    else:
        std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size)
    advantages = rewards - mean
    if scale != "none":
        advantages = advantages / (std + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_match_trl(scale):
    """Sample std (n − 1) as TRL; NaN (None) rewards left out of means and stds; a group with one
    valid reward, or with equal rewards, gets 0."""
    generator = torch.Generator().manual_seed(7)
    rewards = torch.rand(6 * 8, generator=generator)
    rewards[[1, 9, 10, 30]] = float("nan")  # Nones in two groups
    rewards[16:24] = 0.5  # a group with no signal
    rewards[40:47] = float("nan")  # a group with one valid reward
    group_ids = torch.arange(6).repeat_interleave(8)
    ours = group_advantages(rewards, group_ids, scale=scale, eps=1e-4, std="sample")
    assert torch.allclose(ours, trl_advantages(rewards, 8, scale), atol=1e-6, rtol=0)
