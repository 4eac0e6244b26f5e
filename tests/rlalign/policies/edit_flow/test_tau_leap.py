"""The τ-leap step as pure functions: hand-computed log-probs, edits, open actions, and a Monte-Carlo
check that the sampler draws a step's joint outcome with exactly the probabilities log_prob scores."""

import itertools
import math

import pytest
import torch

from rlalign.policies.edit_flow.tau_leap import (
    DELETE,
    KEEP,
    SUBSTITUTE,
    StepActions,
    apply_step,
    open_actions,
    sample_step,
    step_distribution,
    step_log_prob,
    step_times,
)


def outputs_1x5():
    """One text [BOS, x, MASK] (width 5, prompt = BOS, x) with rates and 2-token logits at every position."""
    return {
        "sub_rate_hat": torch.tensor([[9.0, 9.0, 1.0, 9.0, 9.0]]),
        "del_rate_hat": torch.tensor([[9.0, 9.0, 3.0, 9.0, 9.0]]),
        "ins_rate_hat": torch.tensor([[9.0, 0.5, 2.0, 9.0, 9.0]]),
        "sub_logits": torch.tensor([[[0.0, math.log(3.0)]] * 5]),
        "ins_logits": torch.tensor([[[0.0, math.log(4.0)]] * 5]),
    }


def distribution_1x5(temperature=1.0):
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 5)
    return step_distribution(outputs_1x5(), weight=torch.tensor(2.0), tau=0.1, positions_BW=positions, gaps_BW=gaps,
                             temperature=temperature)


def test_open_actions_protect_the_prompt_and_cap_the_length():
    # Text of 3 tokens, prompt of 2 (BOS + one word), width 5: only position 2 may change; insertions
    # may follow position 1 (the prompt's last token) and later: 2 gaps, and 5 − 3 = 2 tokens of room.
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 5)
    assert positions.tolist() == [[False, False, True, False, False]]
    assert gaps.tolist() == [[False, True, True, False, False]]
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 4)  # room for one: no insertion at all
    assert positions.tolist() == [[False, False, True, False]] and not gaps.any()
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 8, edit_prompt=True)
    assert positions.tolist() == [[True] * 3 + [False] * 5] and gaps.tolist() == [[True] * 3 + [False] * 5]
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 8, insertion_only=True)
    assert not positions.any() and gaps.sum() == 2


def test_step_log_prob_by_hand():
    dist = distribution_1x5()
    # w·τ = 2 · 0.1 = 0.2. Position 2: p_edit = (del 3 + sub 1)·0.2 = 0.8, d = 3 / (4 + 1e-8) ≈ 0.75;
    # q_sub = softmax(0, ln 3) = (0.25, 0.75). Gaps after positions 1 and 2: p_ins = 0.5·0.2 = 0.1 and
    # 2·0.2 = 0.4; q_ins = softmax(0, ln 4) = (0.2, 0.8). Position 0, 1, 3, 4 and other gaps are closed: 0.
    assert torch.allclose(dist.edit_prob_BW, torch.tensor([[0.0, 0.0, 0.8, 0.0, 0.0]]))
    assert torch.allclose(dist.insert_prob_BW, torch.tensor([[0.0, 0.1, 0.4, 0.0, 0.0]]))
    cases = {
        # substitute position 2 with token 1; nothing after 1; insert token 0 after 2:
        # log(0.8·0.25·0.75) = log 0.15, log(1 − 0.1) = log 0.9, log(0.4·0.2) = log 0.08
        (SUBSTITUTE, 1, False, True, 0): [math.log(0.15), math.log(0.9), math.log(0.08)],
        # delete position 2: log(0.8·0.75) = log 0.6; insert token 1 after 1: log(0.1·0.8) = log 0.08; none after 2: log 0.6
        (DELETE, 0, True, False, 1): [math.log(0.6), math.log(0.08), math.log(0.6)],
        # keep position 2: log(1 − 0.8) = log 0.2; nothing anywhere: log 0.9, log 0.6
        (KEEP, 0, False, False, 0): [math.log(0.2), math.log(0.9), math.log(0.6)],
    }
    for (op, sub_token, ins1, ins2, ins_token), expected in cases.items():
        actions = StepActions(torch.tensor([[KEEP, KEEP, op, KEEP, KEEP]]), torch.tensor([[0, 0, sub_token, 0, 0]]),
                              torch.tensor([[False, ins1, ins2, False, False]]),
                              torch.tensor([[0, ins_token if ins1 else 0, ins_token if ins2 else 0, 0, 0]]))
        logp = step_log_prob(dist, actions)
        assert logp.shape == (1, 10)  # 5 positions, then 5 gaps
        got = [logp[0, 2], logp[0, 5 + 1], logp[0, 5 + 2]]
        assert torch.allclose(torch.stack(got), torch.tensor(expected), atol=1e-6), (op, got, expected)
        assert logp[0, [0, 1, 3, 4, 5, 8, 9]].abs().max() == 0  # closed actions are exactly 0


def test_temperature_divides_both_token_logits():
    dist = distribution_1x5(temperature=2.0)
    # logits / 2: q_sub ∝ (1, √3), q_ins ∝ (1, 2)
    assert torch.allclose(dist.sub_logp_BWV[0, 2].exp(), torch.tensor([1, 3**0.5]) / (1 + 3**0.5))
    assert torch.allclose(dist.ins_logp_BWV[0, 2].exp(), torch.tensor([1 / 3, 2 / 3]))


def test_apply_step_by_hand():
    tokens, lengths = torch.tensor([[2, 7, 4, 0, 0], [2, 7, 4, 0, 0]]), torch.tensor([3, 3])
    actions = StepActions(
        position_op_BW=torch.tensor([[KEEP, KEEP, SUBSTITUTE, KEEP, KEEP], [KEEP, KEEP, DELETE, KEEP, KEEP]]),
        sub_token_BW=torch.tensor([[0, 0, 9, 0, 0], [0] * 5]),
        inserted_BW=torch.tensor([[False, True, False, False, False], [False, False, True, False, False]]),
        ins_token_BW=torch.tensor([[0, 5, 0, 0, 0], [0, 0, 6, 0, 0]]))
    new_tokens, new_lengths = apply_step(tokens, lengths, actions)
    # Row 0: MASK → 9 and 5 inserted after "7": [2, 7, 5, 9]. Row 1: MASK deleted, 6 inserted after it: [2, 7, 6].
    assert new_tokens.tolist() == [[2, 7, 5, 9, 0], [2, 7, 6, 0, 0]] and new_lengths.tolist() == [4, 3]
    overfull = actions._replace(inserted_BW=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="max_length"):
        apply_step(tokens, lengths, overfull)


def test_step_times_follow_dllms_loop():
    assert step_times(0.25) == [0.0, 0.25, 0.5, 0.75]
    assert len(step_times(0.05)) == 20 and len(step_times(0.1)) == 10 and len(step_times(0.3)) == 4
    with pytest.raises(ValueError, match="tau"):
        step_times(0.0)


# -------------------------------------------------------------------------------------------------
# Monte Carlo: the joint outcome of one step
# -------------------------------------------------------------------------------------------------

VOCAB = 3


def small_distribution(swap_split=False):
    """[BOS, x, MASK] in width 6 (prompt BOS, x): one open position (2), two open gaps (after 1 and 2), 3 tokens."""
    generator = torch.Generator().manual_seed(0)
    outputs = {
        "sub_rate_hat": torch.tensor([[1.0, 1.0, 1.2, 0.5, 1.0, 1.0]]),
        "del_rate_hat": torch.tensor([[1.0, 1.0, 0.7, 1.5, 1.0, 1.0]]),
        "ins_rate_hat": torch.tensor([[1.0, 1.5, 0.9, 1.0, 1.0, 1.0]]),
        "sub_logits": torch.randn(1, 6, VOCAB, generator=generator),
        "ins_logits": torch.randn(1, 6, VOCAB, generator=generator),
    }
    if swap_split:
        outputs["sub_rate_hat"], outputs["del_rate_hat"] = outputs["del_rate_hat"], outputs["sub_rate_hat"]
    positions, gaps = open_actions(torch.tensor([3]), torch.tensor([2]), 6)
    assert positions[0].nonzero().flatten().tolist() == [2] and gaps[0].nonzero().flatten().tolist() == [1, 2]
    return step_distribution(outputs, weight=torch.tensor(1 / 0.75), tau=0.25, positions_BW=positions, gaps_BW=gaps)


POSITION_OUTCOMES = [(KEEP, 0), (DELETE, 0)] + [(SUBSTITUTE, v) for v in range(VOCAB)]
GAP_OUTCOMES = [(False, 0)] + [(True, v) for v in range(VOCAB)]
OUTCOMES = len(POSITION_OUTCOMES) * len(GAP_OUTCOMES) ** 2  # 5 · 4 · 4 = 80


def outcome_code(actions):
    """One integer per sample for the joint outcome of position 2 and the gaps after 1 and 2."""
    op, sub, ins, tok = actions
    position = torch.where(op[:, 2] == SUBSTITUTE, 2 + sub[:, 2], op[:, 2])
    gap = lambda i: torch.where(ins[:, i], 1 + tok[:, i], 0)
    return (position * 4 + gap(1)) * 4 + gap(2)


def exact_probabilities(dist):
    """exp(step_log_prob) of all 80 joint outcomes, in outcome_code order."""
    rows = []
    for (op, sub), (i1, t1), (i2, t2) in itertools.product(POSITION_OUTCOMES, GAP_OUTCOMES, GAP_OUTCOMES):
        rows.append(StepActions(torch.tensor([[KEEP, KEEP, op, KEEP, KEEP, KEEP]]),
                                torch.tensor([[0, 0, sub, 0, 0, 0]]),
                                torch.tensor([[False, i1, i2, False, False, False]]),
                                torch.tensor([[0, t1, t2, 0, 0, 0]])))
    actions = StepActions(*(torch.cat(parts) for parts in zip(*rows)))
    expanded = type(dist)(*(x.expand(len(rows), *x.shape[1:]) for x in dist))
    probabilities = step_log_prob(expanded, actions).sum(1).double().exp()
    assert outcome_code(actions).tolist() == list(range(OUTCOMES))
    return probabilities


def test_sampled_joint_outcomes_match_the_scored_probabilities():
    dist = small_distribution()
    exact = exact_probabilities(dist)
    assert abs(float(exact.sum()) - 1.0) < 1e-5  # the 80 outcomes are the whole outcome space
    counts, samples, generator = torch.zeros(OUTCOMES, dtype=torch.float64), 0, torch.Generator().manual_seed(1)
    for _ in range(10):
        rows = 100_000
        expanded = type(dist)(*(x.expand(rows, *x.shape[1:]) for x in dist))
        actions = sample_step(expanded, torch.rand(5, rows, 6, generator=generator))
        counts += torch.bincount(outcome_code(actions), minlength=OUTCOMES).double()
        samples += rows
    total_variation = 0.5 * float((counts / samples - exact).abs().sum())
    assert total_variation <= 0.01, total_variation
    # The check can fail: the same samples against a distribution with deletion and substitution swapped.
    assert 0.5 * float((counts / samples - exact_probabilities(small_distribution(swap_split=True))).abs().sum()) > 0.05


def test_a_step_that_would_overflow_the_width_is_refused():
    """A full text (length = W = 3) with an insertion after position 0 would need 4 slots: refused on the
    CPU with the length it would reach (on a GPU the same check is queued, tau_leap.apply_step)."""
    tokens_BW, lengths_B = torch.tensor([[5, 6, 7]]), torch.tensor([3])
    actions = StepActions(torch.full((1, 3), KEEP), torch.zeros(1, 3, dtype=torch.long),
                          torch.tensor([[True, False, False]]), torch.tensor([[9, 0, 0]]))
    with pytest.raises(ValueError, match=r"grow a text to 4 > max_length=3"):
        apply_step(tokens_BW, lengths_B, actions)
    # The same step on a text of length 2 fits: 5, 9, 6.
    out_BW, new_lengths_B = apply_step(tokens_BW, torch.tensor([2]), actions)
    assert out_BW.tolist() == [[5, 9, 6]] and new_lengths_B.tolist() == [3]
