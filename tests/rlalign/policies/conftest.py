"""Fixtures for policy tests: a tiny random next-scale model and policies over it."""

import pytest
import torch
from support.next_scale import TINY, perturb_adapter, randomize_like_trained

from rlalign.policies.next_scale.model import build_model
from rlalign.policies.next_scale.policy import NextScalePolicy


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    model = build_model(TINY)
    randomize_like_trained(model)
    return model


@pytest.fixture
def make_policy(tiny_model):
    def make(**sampling):
        policy = NextScalePolicy(tiny_model, lora_rank=4, **sampling)
        perturb_adapter(policy)
        return policy

    return make
