"""Reward combination and statistics (rewards/combine.py), on hand-computed 4-sample examples."""

import math

import pytest
import torch

from rewards.combine import combine, nan_std, reward_stats, standardize

NAN = math.nan


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def assert_close(actual, expected):
    torch.testing.assert_close(actual, t(*expected), atol=1e-4, rtol=0, equal_nan=True)


# a = [1, 2, 3, 4]: mean 2.5, deviations [-1.5, -0.5, 0.5, 1.5], squares sum 5, sample var 5/3,
#   std sqrt(5/3) = 1.290994 -> z_a = [-1.161895, -0.387298, 0.387298, 1.161895]
# b = [0, 0, 0, 4]: mean 1, deviations [-1, -1, -1, 3], squares sum 12, sample var 4, std 2
#   -> z_b = [-0.5, -0.5, -0.5, 1.5]
A, B = t(1, 2, 3, 4), t(0, 0, 0, 4)
WEIGHTS = {"a": 1.0, "b": 2.0}


def test_sum_then_normalize_is_the_weighted_raw_sum():
    # a + 2·b = [1 + 0, 2 + 0, 3 + 0, 4 + 8]
    assert_close(combine({"a": A, "b": B}, WEIGHTS, "sum_then_normalize"), [1, 2, 3, 12])


def test_normalize_then_sum_standardises_each_reward_first():
    # z_a + 2·z_b = [-1.161895 - 1, -0.387298 - 1, 0.387298 - 1, 1.161895 + 3]
    total = combine({"a": A, "b": B}, WEIGHTS, "normalize_then_sum", eps=0.0)
    assert_close(total, [-2.161895, -1.387298, -0.612702, 4.161895])


def test_normalize_then_sum_uses_eps():
    # b with ε = 1: (b − 1) / (2 + 1) = [-1/3, -1/3, -1/3, 1]
    assert_close(standardize(B, eps=1.0), [-1 / 3, -1 / 3, -1 / 3, 1])


def test_scale_of_a_reward_only_matters_before_normalising():
    # 100·b standardises to the same z_b, so normalize_then_sum is blind to a reward's scale
    scaled = combine({"a": A, "b": 100 * B}, WEIGHTS, "normalize_then_sum", eps=0.0)
    assert_close(scaled, [-2.161895, -1.387298, -0.612702, 4.161895])


def test_nan_contributes_zero_to_the_sum():
    # b = [0, NaN, 0, 4] (None at sample 1): a + 2·b = [1, 2 + 0, 3, 12]
    total = combine({"a": A, "b": t(0, NAN, 0, 4)}, WEIGHTS, "sum_then_normalize")
    assert_close(total, [1, 2, 3, 12])


def test_nan_is_left_out_of_the_standardisation():
    # valid b = [0, 0, 4]: mean 4/3, deviations [-4/3, -4/3, 8/3], squares 96/9, sample var 48/9,
    # std 2.309401 -> z_b = [-0.577350, NaN, -0.577350, 1.154701]; NaN adds 0 (= the mean, neutral)
    assert_close(standardize(t(0, NAN, 0, 4), eps=0.0), [-0.577350, NAN, -0.577350, 1.154701])
    total = combine({"a": A, "b": t(0, NAN, 0, 4)}, WEIGHTS, "normalize_then_sum", eps=0.0)
    # z_a + 2·z_b = [-1.161895 - 1.154701, -0.387298 + 0, 0.387298 - 1.154701, 1.161895 + 2.309401]
    assert_close(total, [-2.316596, -0.387298, -0.767403, 3.471296])


@pytest.mark.parametrize("mode", ["sum_then_normalize", "normalize_then_sum"])
def test_sample_no_trained_reward_applies_to_is_nan(mode):
    # sample 1 has NaN in both trained rewards -> NaN total (the advantages make it 0)
    total = combine({"a": t(1, NAN, 3, 4), "b": t(0, NAN, 0, 4)}, WEIGHTS, mode)
    assert math.isnan(total[1]) and not total[[0, 2, 3]].isnan().any()


def test_weight_zero_reward_neither_adds_nor_applies():
    # c (weight 0) has huge values and is the only reward with a value at sample 1:
    # the total ignores it, and sample 1 stays NaN because no *trained* reward applies there
    per_reward = {"a": t(1, NAN, 3, 4), "c": t(100, 100, 100, 100)}
    total = combine(per_reward, {"a": 1.0, "c": 0.0}, "sum_then_normalize")
    assert_close(total, [1, NAN, 3, 4])


def test_all_equal_reward_standardises_to_zero_not_nan():
    # std 0: (2 − 2) / (0 + ε) = 0; a single valid value likewise has std 0
    assert_close(standardize(t(2, 2, 2, 2)), [0, 0, 0, 0])
    assert_close(standardize(t(NAN, 5, NAN, NAN)), [NAN, 0, NAN, NAN])
    assert_close(standardize(t(NAN, NAN, NAN, NAN)), [NAN, NAN, NAN, NAN])


def test_combine_refuses_bad_mode_and_all_zero_weights():
    with pytest.raises(ValueError, match="normalize_then_sum"):
        combine({"a": A}, {"a": 1.0}, "mean")
    with pytest.raises(ValueError, match="nonzero weight"):
        combine({"a": A}, {"a": 0.0})


def test_stats_leave_nans_out():
    # valid [1, 3, 5]: mean 3, deviations [-2, 0, 2], squares 8, sample var 4, std 2
    assert reward_stats(t(1, NAN, 3, 5)) == {"mean": 3.0, "std": 2.0, "min": 1.0, "max": 5.0,
                                              "count": 3, "nan_count": 1}


def test_stats_of_one_and_of_no_valid_value():
    one = reward_stats(t(NAN, 7, NAN, NAN))
    assert (one["mean"], one["std"], one["count"], one["nan_count"]) == (7.0, 0.0, 1, 3)
    none = reward_stats(t(NAN, NAN))
    assert math.isnan(none["mean"]) and math.isnan(none["std"]) and (none["count"], none["nan_count"]) == (0, 2)


def test_nan_std_matches_torch_std_on_valid_values():
    assert float(nan_std(t(1, NAN, 3, 5))) == pytest.approx(float(t(1, 3, 5).std()))
