"""How much of one step's policy gradient is signal? The signal-to-noise ratio of GRPO's gradient.

A GRPO step estimates the gradient of the expected reward from one rollout batch of B samples. If
that estimate is mostly noise, AdamW (which normalises each parameter's step by the gradient's
running RMS) walks the adapter in nearly random directions: the KL to the base grows while the
reward barely moves, and a larger learning rate only walks faster. This script measures it on the
config's base policy (adapter at its initialisation, so the ratio is 1 and the loss gradient is
-(1/B) Σ_i A_i Σ_a w_ia ∇log π(a), docs/grpo.md), from N independent batches of the config's size:

    g_1..g_N          the loss gradients over all LoRA parameters (flattened), one per batch
    signal²           mean over pairs i ≠ j of g_i · g_j        (unbiased for |E g|², since E[g_i · g_j] = |μ|²)
    noise²            mean_i |g_i|² − signal²                    (the trace of one batch's covariance)
    SNR               signal² / noise² of one batch; noise² scales as 1/B, so B / SNR samples per step
                      would make one step's signal as large as its noise
    cos               mean pairwise cosine of the g_i

once for all prefix steps together (the training loss) and once per step t (the loss restricted to
step t's actions, same weights), to see which steps carry signal. Rewards, advantages, step weights
and loss are the trainer's own (rlalign.rewards.worker, rlalign.grpo); no update is taken.

    python scripts/gradient_snr.py configs/shapes_nextscale.yaml                 # ~2 min on 2 cores
    python scripts/gradient_snr.py configs/shapes_nextscale.yaml --batches 16 train.prompts_per_step=16

Writes a Markdown table to stdout and JSON to --out (default outputs/gradient_snr.json).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
from rlalign.rewards.worker import RewardWorker

from rlalign.config import load_config
from rlalign.grpo.advantages import group_advantages
from rlalign.grpo.loss import policy_loss
from rlalign.grpo.update import loss_weights
from rlalign.policies import load_policy, resolve_prefix_steps
from rlalign.tasks import parse_prompt_source
from rlalign.utils.files import write_json_atomic
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info


def snr_estimate(gradients_NP: torch.Tensor) -> dict[str, float]:
    """Signal², noise², SNR and mean pairwise cosine from N ≥ 2 independent gradient estimates [N, P]."""
    g_NP = gradients_NP.double()
    n = g_NP.shape[0]
    if n < 2:
        raise ValueError(f"the signal estimate needs ≥ 2 independent gradients, got {n}")
    pairs = list(itertools.combinations(range(n), 2))
    signal = sum(float(g_NP[i] @ g_NP[j]) for i, j in pairs) / len(pairs)
    noise = float((g_NP * g_NP).sum(1).mean()) - signal
    norms_N = g_NP.norm(dim=1).clamp_min(1e-30)
    cos = sum(float(g_NP[i] @ g_NP[j] / (norms_N[i] * norms_N[j])) for i, j in pairs) / len(pairs)
    return {"grad_norm": float(norms_N.mean()), "signal_sq": signal, "noise_sq": noise,
            "snr": signal / noise if noise > 0 else float("inf"), "cos": cos}


def batch_gradients(policy, cfg, batches: int, seed: int) -> dict[str, list[torch.Tensor]]:
    """{'all': [N flattened gradients], 'step 1': [...], ...} from N independent rollout batches."""
    m = resolve_prefix_steps(cfg.grpo.prefix_steps, policy.num_steps)
    worker = RewardWorker(cfg.rewards.functions, cfg.rewards.combine, eps=cfg.grpo.advantage_eps,
                          tokenizer=policy.completion_tokenizer())
    source, group = parse_prompt_source(cfg.prompts.train, cfg.prompts.task), cfg.grpo.group_size
    parameters = list(policy.trainable_parameters())
    gradients: dict[str, list[torch.Tensor]] = {}
    for b in range(batches):
        prompts = source.draw(cfg.train.prompts_per_step, seed=seed * 1_000_003 + b)
        repeated = [p for p in prompts for _ in range(group)]
        group_ids = torch.arange(len(prompts)).repeat_interleave(group)
        rollout = policy.rollout(repeated, m, generator=grouped_generators(seed, "bench", b, len(prompts), group),
                                 group_ids=group_ids)
        advantages_B = group_advantages(worker.score(rollout.prompts, rollout.outputs).total, group_ids,
                                        scale=cfg.grpo.scale_rewards, eps=cfg.grpo.advantage_eps,
                                        std=cfg.grpo.advantage_std)
        weights_BA = loss_weights(rollout.action_mask, cfg.grpo)
        logp_BA = torch.cat(policy.log_prob(rollout), dim=1)
        widths = [0] + list(itertools.accumulate(mask.shape[1] for mask in rollout.action_mask))
        selections = {"all": weights_BA}
        for t in range(m):
            only_t = torch.zeros_like(weights_BA)
            only_t[:, widths[t]:widths[t + 1]] = weights_BA[:, widths[t]:widths[t + 1]]
            selections[f"step {t + 1}"] = only_t
        for name, w_BA in selections.items():
            loss = policy_loss(logp_BA, logp_BA.detach(), advantages_B, w_BA, loss_type=cfg.grpo.loss_type,
                               clip_eps=cfg.grpo.clip_eps, clip_eps_high=cfg.grpo.clip_eps_high,
                               sapo_temperatures=(cfg.grpo.sapo_temperature_pos, cfg.grpo.sapo_temperature_neg)).loss
            grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
            gradients.setdefault(name, []).append(torch.cat(
                [(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)]))
    return gradients


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.prompts_per_step=16")
    parser.add_argument("--batches", type=int, default=8, help="independent rollout batches (N ≥ 2)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/gradient_snr.json"))
    args = parser.parse_intermixed_args(argv)  # overrides may follow options
    if args.batches < 2:
        raise SystemExit(f"--batches must be ≥ 2 (signal is estimated from pairs of batches), got {args.batches}")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(cfg.seed)  # the LoRA initialisation, as the trainer seeds it: the gradient's coordinates depend on it
    policy, start = load_policy(cfg.policy), time.perf_counter()
    batch = cfg.train.prompts_per_step * cfg.grpo.group_size
    rows = []
    for name, gradients in batch_gradients(policy, cfg, args.batches, args.seed).items():
        row = {"actions": name, **snr_estimate(torch.stack(gradients))}
        row["samples_for_snr_1"] = round(batch / row["snr"]) if row["snr"] > 0 else "n/a (no signal measured)"
        rows.append(row)
    seconds = round(time.perf_counter() - start, 1)
    print(records_table(rows, ["actions", "grad_norm", "signal_sq", "noise_sq", "snr", "cos", "samples_for_snr_1"]))
    print(f"({args.batches} batches of {batch} samples, seed {args.seed}; {seconds}s)")
    write_json_atomic(args.out, {"config": args.config, "overrides": args.overrides, "batches": args.batches,
                                 "batch_samples": batch, "seed": args.seed, "rows": rows, "seconds": seconds,
                                 "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
