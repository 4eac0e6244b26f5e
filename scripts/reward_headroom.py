"""How much could a reward lift the base, if a policy only had to pick among the base's own samples?

For every prompt of the fixed per-category evaluation lists (each distinct prompt once), the base
next-scale model draws S samples (adapter off, the config's CFG). Per GenEval category this prints

    base exact            mean verifier exact match of all samples
    best by reward        exact match of the sample the trained reward scores highest (best-of-S)
    best by verifier      1 if any of the S samples is exact (the oracle best-of-S)
    pair agreement        among same-prompt pairs the verifier scores differently, the share the
                          reward orders the same way (what GRPO's group advantages compare)

and the overall (mean of the categories, GenEval's aggregation). Best-of-S by the reward is what
rejection sampling with that reward reaches; a GRPO run that ends far below it is limited by
optimisation or by what the trained steps control, not by the reward's judgement. Reads the
reward from the config's first trained reward function (docs/rewards.md):

    python scripts/reward_headroom.py configs/shapes_nextscale.yaml              # ~1.5 min on 2 cores
    python scripts/reward_headroom.py configs/shapes_nextscale.yaml --samples 8 --split train

Writes a Markdown table to stdout and JSON to --out (default outputs/reward_headroom.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import rewards
from rewards.shapes_eval import shapes_eval
from rlalign.benchmarking import format_table, write_json
from rlalign.config import load_config
from rlalign.evaluation import generate, pair_agreement
from rlalign.policies.base import load_policy
from rlalign.shapes import CATEGORIES
from rlalign.shapes.categories import eval_prompts_by_category


def headroom_row(category: str, reward_PS: np.ndarray, exact_PS: np.ndarray) -> dict:
    prompts = np.arange(len(reward_PS))
    agreement, pairs = pair_agreement(reward_PS, exact_PS)
    return {"category": category, "prompts": len(reward_PS), "base_exact": round(float(exact_PS.mean()), 4),
            "best_by_reward": round(float(exact_PS[prompts, reward_PS.argmax(1)].mean()), 4),
            "best_by_verifier": round(float(exact_PS.max(1).mean()), 4),
            "pair_agreement": round(agreement, 4), "pairs": pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt (S)")
    parser.add_argument("--split", default="heldout", choices=("heldout", "train"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("outputs/reward_headroom.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [])
    if cfg.policy.kind != "next_scale":
        raise SystemExit(f"reward_headroom.py needs an image policy (policy.kind next_scale), got {cfg.policy.kind!r}")
    trained = [spec for spec in cfg.rewards.functions if spec.weight != 0]
    if not trained:
        raise SystemExit("the config has no trained reward (every rewards.functions weight is 0)")
    policy, reward = load_policy(cfg.policy), rewards.build_reward(trained[0])
    start, rows = time.perf_counter(), []
    for category, prompts in eval_prompts_by_category(args.split).items():
        prompts = list(dict.fromkeys(prompts))  # the lists repeat small pools; each prompt once
        images, repeated = generate(policy, prompts, samples_per_prompt=args.samples, seed=args.seed, adapter=False)
        reward_PS = np.array(reward(repeated, images), dtype=float).reshape(len(prompts), args.samples)
        exact_PS = (np.array(shapes_eval(repeated, images)) == 1.0).astype(float).reshape(len(prompts), args.samples)
        rows.append(headroom_row(category, reward_PS, exact_PS))
    overall = {"category": "overall", "prompts": sum(r["prompts"] for r in rows)}
    for key in ("base_exact", "best_by_reward", "best_by_verifier"):
        overall[key] = round(float(np.mean([r[key] for r in rows])), 4)
    rows.append(overall)
    seconds = round(time.perf_counter() - start, 1)
    print(format_table(rows, ["category", "prompts", "base_exact", "best_by_reward", "best_by_verifier",
                              "pair_agreement", "pairs"]))
    print(f"(reward {trained[0].label or trained[0].name}, {args.samples} base samples per prompt, "
          f"{args.split} lists, seed {args.seed}; {seconds}s)")
    write_json({"config": args.config, "reward": trained[0].name, "samples": args.samples, "split": args.split,
                "seed": args.seed, "categories": list(CATEGORIES), "rows": rows, "seconds": seconds}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
