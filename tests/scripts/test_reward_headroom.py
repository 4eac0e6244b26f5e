"""scripts/reward_headroom.py: best-of-S and pair agreement on hand-made scores."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("reward_headroom", ROOT / "scripts" / "reward_headroom.py")
headroom = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(headroom)


def test_best_of_s_and_pair_agreement_by_hand():
    # Two prompts, three samples each.
    # prompt 0: exact (1, 0, 0), reward (0.9, 0.5, 0.1): the reward's best (sample 0) is exact;
    #   verifier-different pairs (0,1), (0,2) — both ordered as the verifier: 2 of 2.
    # prompt 1: exact (0, 1, 0), reward (0.8, 0.3, 0.2): the reward's best (sample 0) is wrong;
    #   pairs (0,1): reward says 0 > 1, verifier 1 > 0 → disagree; (1,2): 0.3 > 0.2 and 1 > 0 → agree.
    reward_PS = np.array([[0.9, 0.5, 0.1], [0.8, 0.3, 0.2]])
    exact_PS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    row = headroom.headroom_row("colors", reward_PS[..., None], exact_PS[..., None])  # K = 1: whole samples
    assert row["base_exact"] == round(2 / 6, 4)  # 2 exact of 6 samples
    assert row["best_by_reward"] == 0.5  # (1 + 0) / 2
    assert row["best_by_verifier"] == 1.0  # both prompts have an exact sample
    assert row["pairs"] == 4 and row["pair_agreement"] == 0.75  # 3 of 4 pairs agree


def test_pairs_with_equal_verdicts_do_not_count():
    agreement, pairs = headroom.pair_agreement(np.array([[0.1, 0.9]]), np.array([[1.0, 1.0]]))
    assert pairs == 0 and agreement == 0.0


def test_best_of_n_splits_candidates_into_disjoint_sets():
    # One prompt, four candidates: reward (0.1, 0.9, 0.8, 0.2), exact (1, 0, 0, 1).
    # n = 1: every candidate its own set -> mean exact (1 + 0 + 0 + 1) / 4 = 0.5.
    # n = 2: sets {0, 1} -> reward picks 1 (exact 0); {2, 3} -> picks 2 (exact 0) -> 0.0.
    # n = 4: one set -> picks 1 (exact 0) -> 0.0.
    reward_PN = np.array([[0.1, 0.9, 0.8, 0.2]])
    exact_PN = np.array([[1.0, 0.0, 0.0, 1.0]])
    assert headroom.best_of_n(reward_PN, exact_PN, 1) == 0.5
    assert headroom.best_of_n(reward_PN, exact_PN, 2) == 0.0
    # Reversed reward order: n = 2 picks 0 (exact 1) and 3 (exact 1) -> 1.0.
    assert headroom.best_of_n(reward_PN[:, ::-1].copy(), exact_PN, 2) == 0.0
    assert headroom.best_of_n(-reward_PN, exact_PN, 2) == 1.0
    # Prefix means are fractions: exact (0.25, 0.75), reward picks the second -> 0.75.
    assert headroom.best_of_n(np.array([[0.0, 1.0]]), np.array([[0.25, 0.75]]), 2) == 0.75


def test_curve_sizes_are_powers_of_two_and_the_total():
    assert headroom.curve_sizes(16) == [1, 2, 4, 8, 16]
    assert headroom.curve_sizes(12) == [1, 2, 4, 8, 12]
    assert headroom.curve_sizes(1) == [1]


def test_best_of_n_refuses_too_few_candidates():
    import pytest

    with pytest.raises(ValueError, match="at least 4 candidates"):
        headroom.best_of_n(np.zeros((1, 3)), np.zeros((1, 3)), 4)


def test_prefixes_are_chosen_on_half_the_completions_and_judged_on_the_other_half():
    # One prompt, two prefixes, K = 2 completions each: completion 0 chooses, completion 1 judges.
    # prefix 0: reward (0.9, 0.1), exact (1, 0)  -> chosen by 0.9, judged exact 0, reward 0.1
    # prefix 1: reward (0.5, 0.8), exact (0, 1)  -> 0.5 for choosing, judged exact 1, reward 0.8
    # best of 2 by reward picks prefix 0 (0.9 > 0.5): exact 0 (its lucky completion does not count),
    # reward 0.1; best of 1 averages the judged halves: exact (0 + 1) / 2 = 0.5, reward 0.45;
    # the oracle chooses by completion 0's exact (1 vs 0) -> prefix 0 -> judged exact 0.
    reward_PSK = np.array([[[0.9, 0.1], [0.5, 0.8]]])
    exact_PSK = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    row = headroom.headroom_row("counting", reward_PSK, exact_PSK)
    assert row["best_of_2"] == 0.0 and row["reward_best_of_2"] == 0.1
    assert row["best_of_1"] == 0.5 and row["reward_best_of_1"] == 0.45
    assert row["best_by_verifier"] == 0.0
    assert row["base_exact"] == 0.5  # all four completions
