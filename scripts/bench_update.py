"""Update cost against the prefix length m, for both built-in policies, next to the prefix's share of actions.

    python scripts/bench_update.py                      # batch 64 → outputs/bench/update.json

For every m in 1..T: one rollout batch of B samples (fixed seeds) with prefix m, then the timed
part, exactly the trainer's TRAIN stage: `grpo_update` with one inner iteration over one
micro-batch of B (the reference pass under the base, the policy pass with gradients, the backward
pass and one AdamW step on the LoRA parameters), median over --repeats after a warm-up. Reported:
seconds per update, update(m) / update(T), trained actions per sample at m and their share of the
actions at m = T. Next-scale actions are tokens (1, 4, 9, ... per scale); insertion actions are the
open gaps of each step (`action_mask`), so the share depends on the sampled captions.
"""

from __future__ import annotations

import argparse

import torch

from rlalign.config import GrpoConfig, PolicyConfig, TrainConfig
from rlalign.grpo.update import grpo_update
from rlalign.policies import load_policy
from rlalign.utils.files import write_json_atomic
from rlalign.utils.seeding import grouped_generators
from rlalign.utils.tables import records_table
from rlalign.utils.timing import machine_info, median_seconds

POLICIES = {
    "next_scale": {"kind": "next_scale", "checkpoint": "builtin:shapes-nextscale"},
    "insertion": {"kind": "insertion", "checkpoint": "builtin:shapes-captioner", "insertion": {"steps": 8}},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per m (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--families", default="next_scale,insertion")
    parser.add_argument("--out", default="outputs/bench/update.json")
    return parser.parse_args()


def prompts_for(family: str, batch: int) -> list:
    if family == "insertion":
        from rlalign.shapes import sample_scenes_mixed

        return sample_scenes_mixed("heldout", batch, seed=0)
    from rlalign.shapes import eval_prompts

    listed = eval_prompts("heldout")
    return [listed[i % len(listed)] for i in range(batch)]


def bench_family(family: str, batch: int, repeats: int) -> list[dict]:
    policy = load_policy(PolicyConfig(**POLICIES[family]))
    prompts = prompts_for(family, batch)
    grpo, train = GrpoConfig(group_size=8, beta=0.05), TrainConfig(micro_batch_size=batch, learning_rate=1e-4)
    rows = []
    for m in range(1, policy.num_steps + 1):
        rollout = policy.rollout(prompts, m, generator=grouped_generators(0, "bench", m, 1, batch),
                                 group_ids=torch.arange(batch) // 8)
        advantages_B = torch.randn(batch, generator=torch.Generator().manual_seed(m))
        optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=train.learning_rate)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        def update(optimizer=optimizer, scheduler=scheduler, rollout=rollout, advantages_B=advantages_B):
            return grpo_update(policy, optimizer, scheduler, rollout, advantages_B, grpo, train)

        seconds = median_seconds(update, repeats=repeats)
        actions = float(sum(mask.sum() for mask in rollout.action_mask)) / batch
        rows.append({"family": family, "m": m, "T": policy.num_steps, "update_s": seconds,
                     "actions_per_sample": actions})
    full = rows[-1]
    for row in rows:
        row["update_vs_T"] = row["update_s"] / full["update_s"]
        row["action_share"] = row["actions_per_sample"] / full["actions_per_sample"]
    return rows


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    rows = [row for family in args.families.split(",") for row in bench_family(family, args.batch_size, args.repeats)]
    print(records_table(rows, ["family", "m", "T", "update_s", "update_vs_T", "actions_per_sample", "action_share"]))
    report = {"machine": machine_info(), "batch_size": args.batch_size, "repeats": args.repeats, "rows": rows}
    path = write_json_atomic(args.out, report)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
