"""Is what a prefix decides visible to a per-token policy gradient? Joint vs additive share of the reward.

A next-scale policy samples every token of a scale independently given the coarser scales, and the
GRPO gradient credits each sampled token with the whole sample's advantage: at first order it sees
how the reward moves with each token *alone* (E[R | token] − E[R]), not with combinations of tokens.
If the reward depends on the prefix through combinations (exactly three blobs, wherever they are),
the prefix can decide much of the reward while each token alone decides almost nothing, and the
gradient is then noise even though better prefixes exist (docs/grpo.md, issue 27).

For each prompt (--per-category prompts of each GenEval category, from the held-out lists), the
base draws N prefixes of t = m scales (the config's prefix_steps) and finishes each twice with
the frozen suffix. With R a sample's reward (the config's trained reward, or the verifier's exact):

    joint share       between / (between + within) over the pairs (rlalign probe's estimator): the
                      share of Var(R) that the whole prefix fixes
    additive share    1 − MSE / Var(R) of predicting one completion's R from the prefix tokens by
                      a model additive in the tokens (ridge on one-hot tokens, out of fold, 4 folds;
                      the ridge strength chosen among a few by the same folds): the share of Var(R)
                      that single tokens explain, which is what a per-token score function sees
    additive, scale k the same with only scale k's tokens

    python scripts/token_interactions.py configs/shapes_nextscale_detector.yaml     # ~4 min on 2 cores

Writes a Markdown table to stdout and JSON to --out (default outputs/token_interactions.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rlalign.rewards.worker import RewardWorker

from rlalign.commands.probe import variance_shares
from rlalign.config import load_config
from rlalign.policies import load_policy, resolve_prefix_steps
from rlalign.shapes import CATEGORIES, eval_prompts_by_category
from rlalign.shapes.verify import verify_image
from rlalign.utils.files import write_json_atomic
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info

RIDGE = (1.0, 3.0, 10.0, 30.0, 100.0)


def one_hot(tokens: list[torch.Tensor], vocab: int) -> torch.Tensor:
    """[N, Σ p_k²·V] float one-hot of the given scales' tokens."""
    return torch.cat([torch.nn.functional.one_hot(t, vocab).flatten(1) for t in tokens], dim=1).double()


def additive_share(x_NF: torch.Tensor, target_N: torch.Tensor, held_N: torch.Tensor, folds: int = 4) -> float:
    """Out-of-fold share of Var(held) explained by a ridge model additive in the features (dual form)."""
    n = x_NF.shape[0]
    fold_N = torch.arange(n) % folds
    kernel_NN = x_NF @ x_NF.T
    best = -float("inf")
    for ridge in RIDGE:
        errors = torch.empty(n, dtype=torch.float64)
        for f in range(folds):
            train, test = fold_N != f, fold_N == f
            centre = target_N[train].mean()
            alpha = torch.linalg.solve(kernel_NN[train][:, train] + ridge * torch.eye(int(train.sum()), dtype=torch.float64),
                                       target_N[train] - centre)
            errors[test] = held_N[test] - (kernel_NN[test][:, train] @ alpha + centre)
        best = max(best, 1.0 - float((errors ** 2).mean() / held_N.var()))
    return best


def joint_share(r_N2: torch.Tensor) -> float:
    """Share of Var(R) fixed by the prefix, from N prefixes × 2 completions (rlalign probe's estimator)."""
    return variance_shares(r_N2[None])["share_decided"]


def measure_prompt(policy, worker, prompt: str, m: int, n: int, seed: int, index: int) -> dict:
    rollout = policy.rollout([prompt] * n, m, generator=grouped_generators(seed, "eval", index, 1, n))
    images, prompts, _ = policy.complete(rollout, 2, generator=grouped_generators(seed, "suffix", index, n, 2))
    rewards = {"reward": torch.as_tensor(worker.score(prompts, images).total).to(torch.float64).view(n, 2),
               "exact": torch.tensor([float(verify_image(p, im).exact) for p, im in zip(prompts, images)],
                                     dtype=torch.float64).view(n, 2)}
    tokens, vocab = rollout.state.tokens[:m], policy.tokenizer.vocab_size
    row = {}
    for name, r_N2 in rewards.items():
        if float(r_N2.var()) == 0:
            continue  # every sample alike: nothing to explain
        row[f"{name}: joint"] = joint_share(r_N2)
        row[f"{name}: additive"] = additive_share(one_hot(tokens, vocab), r_N2.mean(1), r_N2[:, 0])
        for k in range(m):
            row[f"{name}: additive scale {k + 1}"] = additive_share(one_hot(tokens[k:k + 1], vocab), r_N2.mean(1), r_N2[:, 0])
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--prefixes", type=int, default=384, help="prefixes per prompt (each finished twice)")
    parser.add_argument("--per-category", type=int, default=3, help="held-out prompts per category")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/token_interactions.json"))
    args = parser.parse_intermixed_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, args.overrides)
    policy, started = load_policy(cfg.policy), time.perf_counter()
    m = resolve_prefix_steps(cfg.grpo.prefix_steps, policy.num_steps)
    worker = RewardWorker(cfg.rewards.functions, cfg.rewards.combine, eps=cfg.grpo.advantage_eps,
                          tokenizer=policy.completion_tokenizer())
    rows = []
    with torch.no_grad():
        for category, prompts in eval_prompts_by_category("heldout").items():
            distinct = list(dict.fromkeys(prompts))
            chosen = [distinct[i * len(distinct) // args.per_category] for i in range(min(args.per_category, len(distinct)))]
            measured = [measure_prompt(policy, worker, p, m, args.prefixes, args.seed, len(rows) * 10 + i)
                        for i, p in enumerate(chosen)]
            row = {"category": category, "prompts": len(chosen)}
            for key in dict.fromkeys(k for r in measured for k in r):
                values = [r[key] for r in measured if key in r and np.isfinite(r[key])]
                row[key] = round(float(np.mean(values)), 3) if values else None
            rows.append(row)
            print(row, flush=True)
    assert [r["category"] for r in rows] == list(CATEGORIES)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    print(records_table(rows, columns))
    seconds = round(time.perf_counter() - started, 1)
    print(f"(m = {m}, {args.prefixes} prefixes × 2 completions per prompt, seed {args.seed}; {seconds}s)")
    write_json_atomic(args.out, {"config": args.config, "overrides": args.overrides, "m": m, "rows": rows,
                                 "prefixes": args.prefixes, "seed": args.seed, "seconds": seconds, "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
