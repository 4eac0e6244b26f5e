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

With --prefix-steps the same question is asked of a prefix-only policy. For each listed t < T the
base draws N = S prefixes of t steps per prompt and the frozen suffix finishes each K times
(--completions). A prefix is chosen by its mean reward over the first K/2 completions and judged
by the mean exact match (and reward) of the other K/2: fresh suffix draws, so the luck of the
completions that won the choice does not count twice. "best of n by reward" is the mean exact
match of the prefix the reward ranks first among n of them (n = 1, 2, 4, ..., S; the S prefixes
split into S/n disjoint sets of n, averaged): what a prefix policy that fully optimised the reward
over n base prefixes would reach; "best by verifier" chooses by exact match instead (the oracle). t = T
(`all`) is the full-sample table above. As n grows, best-of-n by the reward approaches the optimum of
KL-regularised RL on that reward with a small beta (the base reweighted by exp(R/beta)), restricted to
what the first t steps decide:

    python scripts/reward_headroom.py configs/shapes_nextscale.yaml --prefix-steps 4,5,all --samples 32

Writes a Markdown table to stdout and JSON to --out (default outputs/reward_headroom.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rlalign.rewards.registry import build_reward
from rlalign.rewards.shapes_eval import shapes_eval

from rlalign.commands.probe import ProbeSizes, branch
from rlalign.config import load_config
from rlalign.evaluation.geneval import generate, pair_agreement
from rlalign.policies import load_policy, parse_prefix_steps, resolve_prefix_steps
from rlalign.shapes import CATEGORIES
from rlalign.shapes.categories import eval_prompts_by_category
from rlalign.utils.files import write_json_atomic
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info


def best_of_n(select_PN: np.ndarray, value_PN: np.ndarray, n: int) -> float:
    """Mean value of the candidate `select` ranks first among n: each prompt's N candidates split into
    N // n disjoint sets of n (in order), the argmax of select taken in each, averaged over sets and prompts."""
    prompts, candidates = select_PN.shape
    sets = candidates // n
    if sets < 1:
        raise ValueError(f"best of {n} needs at least {n} candidates per prompt, got {candidates}")
    select_PGn = select_PN[:, : sets * n].reshape(prompts, sets, n)
    value_PGn = value_PN[:, : sets * n].reshape(prompts, sets, n)
    chosen_PG = np.take_along_axis(value_PGn, select_PGn.argmax(2)[..., None], 2)[..., 0]
    return float(chosen_PG.mean())


def curve_sizes(candidates: int) -> list[int]:
    """n = 1, 2, 4, ... up to the number of candidates (always included)."""
    sizes = [1 << i for i in range(candidates.bit_length()) if 1 << i <= candidates]
    return sizes if sizes[-1] == candidates else sizes + [candidates]


def headroom_row(category: str, reward_PSK: np.ndarray, exact_PSK: np.ndarray) -> dict:
    """reward_PSK, exact_PSK: [P prompts, S candidates, K completions]. With K = 1 (whole samples) a
    candidate is chosen and judged on itself; with K ≥ 2 it is chosen by the mean reward of its first
    K // 2 completions and judged on the others (see the module docstring)."""
    half = reward_PSK.shape[2] // 2
    select_PS = reward_PSK[..., :max(half, 1)].mean(2)
    exact_PS, reward_PS = exact_PSK[..., half:].mean(2), reward_PSK[..., half:].mean(2)
    agreement, pairs = pair_agreement(select_PS, exact_PS)
    sizes = curve_sizes(exact_PS.shape[1])
    row = {"category": category, "prompts": len(exact_PS), "base_exact": round(float(exact_PSK.mean()), 4),
           "best_by_reward": round(best_of_n(select_PS, exact_PS, sizes[-1]), 4),
           "best_by_verifier": round(best_of_n(exact_PSK[..., :max(half, 1)].mean(2), exact_PS, sizes[-1]), 4),
           "pair_agreement": round(agreement, 4), "pairs": pairs}
    row.update({f"best_of_{n}": round(best_of_n(select_PS, exact_PS, n), 4) for n in sizes})
    row.update({f"reward_best_of_{n}": round(best_of_n(select_PS, reward_PS, n), 4) for n in sizes})
    return row


def score_candidates(policy, reward, prompts: list, steps: int, args) -> tuple[np.ndarray, np.ndarray]:
    """[P, S, K] reward and exact match of S candidates per prompt: whole base samples when steps = T
    (K = 1), otherwise S base prefixes of `steps` steps, each finished K times by the frozen suffix."""
    if steps == policy.num_steps:
        images, repeated = generate(policy, prompts, samples_per_prompt=args.samples, seed=args.seed, adapter=False)
        shape = (len(prompts), args.samples, 1)
    else:
        images, repeated = [], []
        for index, prompt in enumerate(prompts):  # one prompt at a time bounds memory; its own seed
            sizes = ProbeSizes(args.samples, args.completions, seed=args.seed * 100_000 + index)
            outputs, finished = branch(policy, [prompt], steps, sizes)
            images.append(outputs)
            repeated += finished
        images, shape = torch.cat(images), (len(prompts), args.samples, args.completions)
    reward_PSK = np.array(reward(repeated, images), dtype=float).reshape(shape)
    exact_PSK = (np.array(shapes_eval(repeated, images)) == 1.0).astype(float).reshape(shape)
    return reward_PSK, exact_PSK


def overall_row(rows: list[dict], keys: list[str]) -> dict:
    """GenEval's aggregation: the unweighted mean of the categories."""
    overall = {"category": "overall", "prompts": sum(r["prompts"] for r in rows)}
    overall.update({key: round(float(np.mean([r[key] for r in rows])), 4) for key in keys})
    return overall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--samples", type=int, default=16, help="samples (or prefixes) per prompt (S)")
    parser.add_argument("--prefix-steps", default="all", help="comma list of t (1..T or all): candidates are "
                        "t-step prefixes finished by the frozen suffix; all = whole samples (default)")
    parser.add_argument("--completions", type=int, default=4,
                        help="K frozen completions per prefix (t < T): K/2 choose the prefix, K/2 judge it")
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
    policy, reward = load_policy(cfg.policy), build_reward(trained[0])
    try:
        steps = [resolve_prefix_steps(t, policy.num_steps) for t in parse_prefix_steps(args.prefix_steps, policy.num_steps)]
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if any(t < policy.num_steps for t in steps) and args.completions < 2:
        raise SystemExit(f"--completions must be ≥ 2 when t < T (half choose the prefix, half judge it), "
                         f"got {args.completions}")
    start, tables = time.perf_counter(), []
    curve = [f"best_of_{n}" for n in curve_sizes(args.samples)]
    reward_curve = [f"reward_best_of_{n}" for n in curve_sizes(args.samples)]
    for t in steps:
        rows = []
        for category, prompts in eval_prompts_by_category(args.split).items():
            prompts = list(dict.fromkeys(prompts))  # the lists repeat small pools; each prompt once
            rows.append(headroom_row(category, *score_candidates(policy, reward, prompts, t, args)))
        rows.append(overall_row(rows, ["base_exact", "best_by_reward", "best_by_verifier", *curve, *reward_curve]))
        tables.append({"steps": t, "completions": args.completions if t < policy.num_steps else 1, "rows": rows})
        print(f"\n## candidates: {'whole samples' if t == policy.num_steps else f'prefixes of t = {t} steps'}\n")
        print(records_table(rows, ["category", "prompts", "base_exact", *curve, "best_by_verifier", "pair_agreement",
                                  "pairs"]))
        print(f"\nthe trained reward of the chosen candidate:\n\n{records_table(rows, ['category', *reward_curve])}")
    seconds = round(time.perf_counter() - start, 1)
    print(f"(reward {trained[0].label or trained[0].name}, {args.samples} candidates per prompt, "
          f"{args.split} lists, seed {args.seed}; {seconds}s)")
    write_json_atomic(args.out, {"config": args.config, "reward": trained[0].name, "samples": args.samples,
                                 "split": args.split, "seed": args.seed, "categories": list(CATEGORIES),
                                 "rows": tables[-1]["rows"], "tables": tables, "seconds": seconds,
                                 "machine": machine_info()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
