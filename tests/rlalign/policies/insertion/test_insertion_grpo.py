"""The insertion policy through the trainer's own GRPO update, unchanged: a prefix-only RL run on a toy
text reward learns, stays exactly on-policy before each update, and never moves the base weights."""

import torch

from rlalign.config import GrpoConfig, TrainConfig
from rlalign.grpo.advantages import group_advantages
from rlalign.grpo.update import grpo_update, rescore_old_logp
from rlalign.utils.seeding import grouped_generators


def red_share(texts):
    """Toy reward: the share of the caption's words that are "red"."""
    return torch.tensor([text.split().count("red") / max(1, len(text.split())) for text in texts])


def test_prefix_grpo_raises_a_text_reward_with_the_trainer_update(make_insertion_policy, images):
    policy = make_insertion_policy(perturb=False, num_steps=3)
    base = {name: p.detach().clone() for name, p in policy.model.named_parameters() if "lora_" not in name}
    grpo, train = GrpoConfig(group_size=8), TrainConfig(micro_batch_size=16, learning_rate=3e-2)
    optimizer = torch.optim.Adam(policy.trainable_parameters(), lr=train.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    prompts = [image for image in images[:4] for _ in range(grpo.group_size)]
    group_ids = torch.arange(4).repeat_interleave(grpo.group_size)
    means = []
    for step in range(8):
        rollout = policy.rollout(prompts, 2, generator=grouped_generators(0, "train", step, 4, grpo.group_size),
                                 group_ids=group_ids)
        assert rescore_old_logp(policy, rollout, train.micro_batch_size) <= 1e-5  # micro-batched = whole batch
        rewards = red_share(rollout.outputs)
        metrics = grpo_update(policy, optimizer, scheduler, rollout, group_advantages(rewards, group_ids), grpo, train)
        assert metrics["debug/max_abs_logratio_first_iter"] <= 1e-5
        means.append(float(rewards.mean()))
    print("mean reward per step", [round(m, 3) for m in means])  # measured: 0.03 → ~0.45 by steps 5-7
    assert sum(means[-3:]) / 3 > means[0] + 0.2
    assert all(torch.equal(p, base[name]) for name, p in policy.model.named_parameters() if "lora_" not in name)
