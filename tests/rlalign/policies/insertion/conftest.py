"""Fixtures for the insertion family: a tiny random captioner (built in well under a second) and policies."""

import pytest
import torch
from support import one_torch_thread
from support.next_scale import perturb_adapter

from rlalign.policies.insertion.model import build_model, shapes_vocabulary
from rlalign.policies.insertion.policy import InsertionPolicy
from rlalign.shapes import render, sample_scenes

TINY = {"vocabulary": shapes_vocabulary(), "width": 32, "depth": 2, "num_heads": 2, "max_len": 12, "patch_size": 8}
NUM_STEPS = 5


def randomize_like_trained(model, seed=0):
    """O(1/√fan_in) weights everywhere (not the small init), so every block and so every LoRA layer
    really shapes the heads; biases that make the random model insert ~1 token per gap and step."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim == 2 and "lora_" not in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)
        model.zero_head.bias.fill_(-1.0)
        model.rate_head.bias.fill_(1.5)


_one_thread = pytest.fixture(autouse=True)(one_torch_thread)


@pytest.fixture(scope="module")
def images():
    """Eight Shapes images [3, 32, 32] (prompts of the captioner)."""
    return [render(scene) for scene in sample_scenes("all", 8, seed=0)]


@pytest.fixture
def make_insertion_model():
    def make(seed=0, **overrides):
        torch.manual_seed(seed)
        model = build_model({**TINY, **overrides})
        randomize_like_trained(model, seed)
        return model

    return make


@pytest.fixture
def make_insertion_policy(make_insertion_model):
    def make(perturb=True, num_steps=NUM_STEPS, model=None, **sampling):
        policy = InsertionPolicy(model or make_insertion_model(), num_steps=num_steps, lora_rank=4, **sampling)
        if perturb:
            perturb_adapter(policy, std=0.3)
        return policy

    return make
