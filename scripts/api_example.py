"""rlalign from Python (docs/api.md), as a notebook would use it: a reward defined here, an async reward
and a registered one train the built-in Shapes generator's first scales together, for a few steps.

    python scripts/api_example.py [--steps 3] [--out runs/api-example]

Runs on the CPU in well under a minute (2 cores); prints the run's summary table.
"""

from __future__ import annotations

import argparse
import asyncio

from rlalign import GRPOTrainer


def colourful(prompts, completions, log_metric, **kwargs):
    """Reward saturated images: the mean over pixels of max(R, G, B) − min(R, G, B). Logs its maximum."""
    saturation_B = (completions.amax(dim=1) - completions.amin(dim=1)).mean(dim=(1, 2))
    log_metric("colourful_max", float(saturation_B.max()))
    return saturation_B.tolist()


async def remote_judge(prompts, completions, **kwargs):
    """Stands for a reward behind a network call: awaits, then scores (here: 1 for every image)."""
    await asyncio.sleep(0)  # where an HTTP request would be awaited
    return [1.0] * len(completions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="runs/api-example")
    args = parser.parse_args()
    trainer = GRPOTrainer(
        "configs/shapes_nextscale.yaml",
        reward_funcs=[colourful, remote_judge, "clip_score"],
        reward_weights=[0.5, 0.0, 1.0],
        prompts="shapes:heldout",
        eval_prompts={"heldout": ["a red circle on the left", "a blue square", "two green triangles"]},
        task="shapes",
        output_dir=args.out,
        overrides={"train.steps": args.steps, "train.prompts_per_step": 4, "train.micro_batch_size": 32,
                   "train.warmup_steps": 0, "train.eval_every": args.steps, "train.save_every": args.steps,
                   "logging.progress_bar": False},
    )
    summary = trainer.train()
    print({label: round(v["last"], 4) for label, v in summary["trained_rewards"].items()})


if __name__ == "__main__":
    main()
