"""Group advantages, checked against hand-computed numbers."""

import math

import pytest
import torch

from rlalign.grpo.advantages import group_advantages, middle_value

NAN = float("nan")


def test_group_scaling_and_equal_groups():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1])
    # Group 0: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5.
    #   sample std (TRL's default) √(5/3) = 1.2910 → A = (−1.5, −0.5, 0.5, 1.5) / 1.2910
    #     = (−1.1619, −0.3873, 0.3873, 1.1619);
    #   population std √(5/4) = 1.1180 → (−1.3416, −0.4472, 0.4472, 1.3416), √(4/3) = 1.1547 times larger.
    # Group 1: equal rewards carry no signal → exactly 0 (not 0/0).
    advantages = group_advantages(rewards, groups, scale="group", eps=0.0)
    assert advantages.tolist() == pytest.approx([-1.1619, -0.3873, 0.3873, 1.1619, 0.0, 0.0], abs=1e-4)
    assert advantages[4:].eq(0).all()
    population = group_advantages(rewards, groups, scale="group", eps=0.0, std="population")
    assert population.tolist() == pytest.approx([-1.3416, -0.4472, 0.4472, 1.3416, 0.0, 0.0], abs=1e-4)


def test_equal_rewards_that_do_not_sum_exactly_still_give_zero():
    # 0.1 + 0.1 + 0.1 = 0.30000000000000004 in floats: a naive mean leaves a residue; here A is exactly 0.
    advantages = group_advantages(torch.full((3,), 0.1), torch.zeros(3, dtype=torch.long), eps=1e-4)
    assert advantages.eq(0).all()


def test_nan_rewards_are_left_out_and_get_zero():
    # Valid rewards 1 and 3: mean 2, sample std √((1 + 1)/1) = √2 → A = (−0.7071, 0, +0.7071) (the
    # NaN sample is not counted in n, nor in n − 1); population std 1 → (−1, 0, +1). The NaN sample gets 0.
    advantages = group_advantages(torch.tensor([1.0, NAN, 3.0]), torch.zeros(3, dtype=torch.long), eps=0.0)
    assert advantages.tolist() == pytest.approx([-2 ** -0.5, 0.0, 2 ** -0.5])
    population = group_advantages(torch.tensor([1.0, NAN, 3.0]), torch.zeros(3, dtype=torch.long), eps=0.0,
                                  std="population")
    assert population.tolist() == pytest.approx([-1.0, 0.0, 1.0])
    # A group with a single valid reward has nothing to compare with.
    lone = group_advantages(torch.tensor([NAN, 2.0]), torch.zeros(2, dtype=torch.long))
    assert lone.tolist() == [0.0, 0.0]
    assert not any(math.isnan(a) for a in lone.tolist())


def test_batch_and_no_scaling():
    rewards = torch.tensor([1.0, 3.0, 2.0, 6.0])
    groups = torch.tensor([0, 0, 1, 1])
    # Centred within groups: (−1, 1, −2, 2).
    assert group_advantages(rewards, groups, scale="none").tolist() == [-1.0, 1.0, -2.0, 2.0]
    # Batch std of (1, 3, 2, 6): mean 3, deviations (−2, 0, −1, 3), squares sum to 14;
    #   population: variance 14/4 = 3.5, std 1.8708 → (−0.5345, 0.5345, −1.0690, 1.0690);
    #   sample: variance 14/3 = 4.6667, std 2.1602 → (−0.4629, 0.4629, −0.9258, 0.9258).
    batch = group_advantages(rewards, groups, scale="batch", eps=0.0, std="population")
    assert batch.tolist() == pytest.approx([-0.5345, 0.5345, -1.0690, 1.0690], abs=1e-4)
    sample = group_advantages(rewards, groups, scale="batch", eps=0.0)
    assert sample.tolist() == pytest.approx([-0.4629, 0.4629, -0.9258, 0.9258], abs=1e-4)


def test_unknown_scaling_is_an_error():
    with pytest.raises(ValueError, match="group, batch or none"):
        group_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), scale="std")
    with pytest.raises(ValueError, match="sample or population"):
        group_advantages(torch.zeros(2), torch.zeros(2, dtype=torch.long), std="unbiased")


def test_middle_value_by_hand():
    rewards_BK = torch.tensor([[0.0, 1.0], [2.0, 2.0], [0.0, 1.0], [0.0, 1.0]])
    values = middle_value(rewards_BK, eta=1.0)
    # η = 1: log((e⁰ + e¹)/2) = log(3.71828/2) = log 1.85914 = 0.62011; equal rewards give that reward.
    assert values[:2].tolist() == pytest.approx([0.62011, 2.0], abs=1e-5)
    # η = 100: ≈ the mean 0.5 (0.5 + 0.25/(2·100) = 0.50125 to first order); η = 0.01: ≈ the max,
    # 1 + 0.01·log(½(1 + e^−100)) = 1 − 0.01·log 2 = 0.99307.
    assert middle_value(rewards_BK, eta=100.0)[0].item() == pytest.approx(0.50125, abs=1e-5)
    assert middle_value(rewards_BK, eta=0.01)[0].item() == pytest.approx(0.99307, abs=1e-5)


def test_middle_value_skips_nan_and_keeps_all_nan_rows_nan():
    values = middle_value(torch.tensor([[NAN, 3.0, NAN], [NAN, NAN, NAN]]), eta=0.5)
    # one valid completion: 0.5·log(e^{3/0.5}/1) = 3 exactly; no valid completion: NaN (advantage 0)
    assert values[0].item() == pytest.approx(3.0) and math.isnan(values[1].item())
    with pytest.raises(ValueError, match="middle_value_eta"):
        middle_value(torch.zeros(1, 2), eta=0.0)
