"""scripts/token_interactions.py: joint vs additive share of a reward, on rewards built by hand."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("token_interactions", ROOT / "scripts" / "token_interactions.py")
token_interactions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(token_interactions)

N, VOCAB = 512, 2


def two_tokens(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent fair binary tokens per sample (two positions of one scale)."""
    tokens = torch.randint(VOCAB, (N, 2), generator=torch.Generator().manual_seed(seed))
    return tokens[:, :1], tokens[:, 1:]


def test_an_additive_reward_is_explained_by_single_tokens():
    # R = a + b (a, b fair coins): Var R = 1/4 + 1/4, all of it additive; no noise, so the share is ~1.
    a, b = two_tokens(0)
    reward_N = (a + b).squeeze(1).double()
    share = token_interactions.additive_share(token_interactions.one_hot([a, b], VOCAB), reward_N, reward_N)
    assert share > 0.95


def test_a_pure_interaction_is_invisible_to_single_tokens():
    # R = 1[a == b] (a, b fair coins): E[R | a] = E[R | b] = 1/2 for every value, so single tokens
    # explain nothing (share ≈ 0, out of fold it scatters around 0), while the pair fixes R exactly.
    a, b = two_tokens(1)
    reward_N = (a == b).squeeze(1).double()
    share = token_interactions.additive_share(token_interactions.one_hot([a, b], VOCAB), reward_N, reward_N)
    assert abs(share) < 0.03
    # The pair as one token (4 values) is a single main effect: fully explained.
    pair = a * VOCAB + b
    assert token_interactions.additive_share(token_interactions.one_hot([pair], VOCAB * VOCAB), reward_N, reward_N) > 0.95


def test_joint_share_by_hand():
    # Prefix values 0 and 1 (two prefixes), completions ±0.5 around them:
    # rows (-0.5, 0.5) and (0.5, 1.5): within = mean of unbiased variances = (0.5 + 0.5) / 2 = 0.5;
    # between = Var(means 0, 1) − within / 2 = 0.5 − 0.25 = 0.25; share = 0.25 / 0.75 = 1/3.
    r_N2 = torch.tensor([[-0.5, 0.5], [0.5, 1.5]], dtype=torch.float64)
    assert token_interactions.joint_share(r_N2) == pytest.approx(1 / 3)
    assert token_interactions.joint_share(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)) == 1.0
