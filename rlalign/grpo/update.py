"""One GRPO update of the prefix adapter from one rollout batch (docs/grpo.md, "The loop").

For each inner iteration: re-score the prefix of every micro-batch under the current adapter
(`policy.log_prob`, with gradients), take the micro-batch's share of the batch loss, accumulate
gradients, then clip them and take one AdamW step on the LoRA parameters. A non-finite loss or
gradient skips that optimizer step: the gradients are dropped and the parameters, optimizer and
schedule stay exactly as they were.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from rlalign.grpo.loss import PER_SAMPLE, TOKEN_NORMALISED, action_weights, kl_k3, policy_loss
from rlalign.policies import Rollout, StepPolicy

STAT_KEYS = ("clip_fraction_low", "clip_fraction_high", "ratio_mean", "kl", "kl_to_rollout_policy")


@torch.no_grad()
def reference_log_probs(policy: StepPolicy, rollout: Rollout, micro_batches: list[Tensor]) -> list[Tensor]:
    """The base model's log-probs [b, A] of each micro-batch's prefix actions (the KL reference)."""
    with policy.adapter_disabled():
        return [torch.cat(policy.log_prob(rollout.select(index)), dim=1) for index in micro_batches]


@torch.no_grad()
def rescore_old_logp(policy: StepPolicy, rollout: Rollout, micro_batch_size: int) -> float:
    """Replace rollout.old_logp by log-probs scored here, micro-batch by micro-batch as the update
    scores them; return max |worker − here| over real actions.

    A worker in another process (a Ray actor, or a replica with another thread count) computes the
    same log-probs with another float reduction order: ~1e-5 apart for a trained model. Scoring
    old_logp where the update runs (as verl recomputes old log-probs in the actor) keeps the
    on-policy check exact; the returned gap shows the worker agreed up to rounding.
    """
    micro_batches = torch.arange(len(rollout)).split(micro_batch_size)
    scored = [policy.log_prob(rollout.select(index)) for index in micro_batches]
    rescored = [torch.cat([chunk[t] for chunk in scored]).cpu() for t in range(len(rollout.old_logp))]
    gap = max(float(((new - old).abs() * mask).max()) for new, old, mask
              in zip(rescored, rollout.old_logp, rollout.action_mask))
    rollout.old_logp = rescored
    return gap


def loss_weights(action_mask: list[Tensor], grpo: Any) -> Tensor:
    """Each prefix action's weight [B, A] for grpo.loss_type (rlalign.grpo.loss, module docstring)."""
    weights_BA = action_weights(action_mask, grpo.step_weight_alpha, per_sample=grpo.loss_type in PER_SAMPLE)
    if grpo.loss_type == "dr_grpo" and grpo.dr_grpo_length is not None:
        # k_t sums to 1 over the padded prefix (Σ_t k_t A_t = 1); TRL's constant gives 1/L per action instead.
        weights_BA = weights_BA * (sum(mask.shape[1] for mask in action_mask) / grpo.dr_grpo_length)
    return weights_BA


def micro_batch_normalizers(weights_BA: Tensor, micro_batches: list[Tensor], loss_type: str) -> list[float]:
    """What each micro-batch's summed terms are divided by, so that the micro-batch losses add up to
    the batch's loss: B for the per-sample types, the batch's total action weight for dapo and cispo,
    and for bnpo each micro-batch's own weight times the number of micro-batches (TRL's bnpo is a
    mean over each micro-batch's tokens, averaged over gradient-accumulation steps)."""
    if loss_type == "bnpo":
        return [float(weights_BA[index].sum().clamp_min(1e-12)) * len(micro_batches) for index in micro_batches]
    total = float(weights_BA.sum()) if loss_type in TOKEN_NORMALISED else float(weights_BA.shape[0])
    return [total] * len(micro_batches)


def grpo_update(policy: StepPolicy, optimizer: torch.optim.Optimizer, scheduler: Any, rollout: Rollout,
                advantages_B: Tensor, grpo: Any, train: Any) -> dict[str, float]:
    """Run grpo.inner_iterations optimizer steps over `rollout`; return the step's metrics."""
    batch = len(rollout)
    micro_batches = list(torch.arange(batch).split(train.micro_batch_size))
    weights_BA = loss_weights(rollout.action_mask, grpo)
    old_BA = torch.cat(rollout.old_logp, dim=1)
    normalizers = micro_batch_normalizers(weights_BA, micro_batches, grpo.loss_type)
    # The base's log-probs of the prefix: the KL penalty when beta > 0, and charts/kl always (one
    # no-grad pass over the prefix's few tokens, small next to the rollout).
    refs = reference_log_probs(policy, rollout, micro_batches)
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    totals = {key: 0.0 for key in ("loss", "grad_norm", *STAT_KEYS)}
    first_iteration_max_logratio, skipped, steps = 0.0, 0, 0
    learning_rate = optimizer.param_groups[0]["lr"]
    for iteration in range(grpo.inner_iterations):
        optimizer.zero_grad(set_to_none=True)
        loss_sum, stats_sum = 0.0, {key: 0.0 for key in STAT_KEYS}
        for index, ref_BA, normalizer in zip(micro_batches, refs, normalizers):
            logp_BA = torch.cat(policy.log_prob(rollout.select(index)), dim=1)
            out = policy_loss(logp_BA, old_BA[index], advantages_B[index].to(logp_BA.device),
                              weights_BA[index].to(logp_BA.device), loss_type=grpo.loss_type,
                              clip_eps=grpo.clip_eps, clip_eps_high=grpo.clip_eps_high, beta=grpo.beta,
                              kl_BA=kl_k3(logp_BA, ref_BA.to(logp_BA.device)),
                              kl_bias_correction=grpo.kl_bias_correction,
                              sapo_temperatures=(grpo.sapo_temperature_pos, grpo.sapo_temperature_neg),
                              normalizer=normalizer)
            out.loss.backward()
            loss_sum += out.loss.item()
            for key in STAT_KEYS:  # micro-batch means → batch mean
                stats_sum[key] += out.stats[key] * len(index) / batch
            if iteration == 0:  # before any update of this step: the on-policy check
                first_iteration_max_logratio = max(first_iteration_max_logratio, out.stats["max_abs_logratio"])
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, train.max_grad_norm)
        if not (math.isfinite(loss_sum) and torch.isfinite(grad_norm)):
            optimizer.zero_grad(set_to_none=True)  # drop the bad gradients; nothing is stepped
            skipped += 1
            continue
        learning_rate = optimizer.param_groups[0]["lr"]  # the rate this step used
        optimizer.step()
        scheduler.step()
        steps += 1
        totals["loss"] += loss_sum
        totals["grad_norm"] += float(grad_norm)
        for key in STAT_KEYS:
            totals[key] += stats_sum[key]
    mean = {key: value / steps if steps else math.nan for key, value in totals.items()}
    return {
        "losses/policy": mean["loss"],
        "charts/kl": mean["kl"],
        "charts/clip_fraction_low": mean["clip_fraction_low"],
        "charts/clip_fraction_high": mean["clip_fraction_high"],
        "charts/ratio_mean": mean["ratio_mean"],
        "charts/grad_norm": mean["grad_norm"],
        "charts/learning_rate": learning_rate,
        "debug/kl_to_rollout_policy": mean["kl_to_rollout_policy"],
        "debug/max_abs_logratio_first_iter": first_iteration_max_logratio,
        "debug/skipped_updates": skipped,
        "debug/trained_actions": float(sum(int(mask.sum()) for mask in rollout.action_mask)),
    }
