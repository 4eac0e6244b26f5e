"""How much of the verifier's outcome do the first m scales decide? (a branching probe of the base model)

    python scripts/probe_prefix_variance.py --prompts shapes-eval:heldout --first 24 --count 8

For each prompt, N prefixes of m scales are drawn from the base model and each is finished K times
by the frozen suffix (`policy.complete`). With X the verifier outcome (exact match or partial score):

    share(m) = Var_prefix(E[X | prefix]) / Var(X)      (between-prefix variance, corrected for the
                                                       finite K by subtracting within-variance / K)
    best-prefix mean = mean over prompts of max_prefix E[X | prefix]

`share` says how much a prefix-only policy can move X at all; `best-prefix mean` is roughly the
most a policy that always picked the best of N prefixes would reach. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse

import torch

from rewards.shapes_eval import verify_image
from rlalign.benchmarking import format_table, machine_info, write_json
from rlalign.policies.next_scale.model import load_model
from rlalign.policies.next_scale.policy import NextScalePolicy
from rlalign.prompts import parse_prompt_source


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="builtin:shapes-nextscale")
    parser.add_argument("--prompts", default="shapes-eval:heldout")
    parser.add_argument("--first", type=int, default=24, help="skip this many prompts of the list (24: pairs)")
    parser.add_argument("--count", type=int, default=8, help="prompts probed")
    parser.add_argument("--prefixes", type=int, default=8, help="N prefixes per prompt")
    parser.add_argument("--completions", type=int, default=8, help="K frozen-suffix completions per prefix")
    parser.add_argument("--prefix-steps", default="1,2,3,4")
    parser.add_argument("--out", default="outputs/bench/prefix_variance.json")
    return parser.parse_args()


def probe(policy: NextScalePolicy, prompts: list[str], m: int, n: int, k: int) -> list[dict]:
    repeated = [p for p in prompts for _ in range(n)]
    rollout = policy.rollout(repeated, m, generator=[torch.Generator().manual_seed(1000 * m + i)
                                                      for i in range(len(repeated))])
    images, finished, _ = policy.complete(rollout, k, generator=[torch.Generator().manual_seed(7 + i)
                                                                  for i in range(len(repeated) * k)])
    verdicts = [verify_image(p, image) for p, image in zip(finished, images)]
    rows = []
    for metric in ("exact", "score"):
        x_PNK = torch.tensor([float(getattr(v, metric)) for v in verdicts]).view(len(prompts), n, k)
        means_PN = x_PNK.mean(2)
        within = x_PNK.var(2, unbiased=True).mean()
        between = (means_PN.var(1, unbiased=True).mean() - within / k).clamp_min(0)
        total = x_PNK.view(len(prompts), -1).var(1, unbiased=True).mean()
        rows.append({"m": m, "metric": metric, "mean": float(x_PNK.mean()),
                     "share_decided_by_prefix": float(between / total) if total > 0 else float("nan"),
                     "best_prefix_mean": float(means_PN.max(1).values.mean())})
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(2)
    policy = NextScalePolicy(load_model(args.checkpoint))
    prompts = parse_prompt_source(args.prompts).all()[args.first: args.first + args.count]
    rows = [row for m in (int(v) for v in args.prefix_steps.split(","))
            for row in probe(policy, prompts, m, args.prefixes, args.completions)]
    print(format_table(rows, ["m", "metric", "mean", "share_decided_by_prefix", "best_prefix_mean"]))
    path = write_json({"machine": machine_info(), "args": vars(args), "prompts": prompts, "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
