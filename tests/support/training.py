"""A tiny saved next-scale checkpoint and a small complete training config over it, for trainer tests."""

import torch

from rlalign.config import load_config
from rlalign.policies.next_scale.model import build_model, save_model
from support.next_scale import PROMPTS, TINY, randomize_like_trained


def save_tiny_checkpoint(directory):
    """The tiny random model (trained-like weights) saved in full precision; returns its path."""
    torch.manual_seed(0)
    model = build_model(TINY)
    randomize_like_trained(model)
    return save_model(model, directory / "tiny.safetensors", half=False)


def tiny_config(tmp_path, checkpoint, *, eval_samples=2, steps=4, **overrides):
    """4 samples per prompt × 2 prompts, m = 2, two inner iterations, the saturation reward, no wandb."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    values = {
        "policy": {"checkpoint": str(checkpoint), "lora": {"rank": 4}},
        "prompts": {"train": f"file:{prompts}", "eval": {"tiny": f"file:{prompts}"}, "task": "shapes",
                    "eval_samples_per_prompt": eval_samples},
        "rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}], "eval": []},
        "grpo": {"group_size": 4, "prefix_steps": 2, "inner_iterations": 2},
        "train": {"steps": steps, "prompts_per_step": 2, "micro_batch_size": 4, "learning_rate": 0.05},
        "logging": {"wandb_mode": "disabled", "progress_bar": False},
        "output_dir": str(tmp_path / "run"),
    }
    return load_config(values, [f"{k}={v}" for k, v in overrides.items()])
