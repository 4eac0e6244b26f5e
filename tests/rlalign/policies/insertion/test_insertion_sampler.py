"""Pure functions of one insertion step, against hand-computed numbers (docs/insertion.md)."""

import math

import pytest
import torch

from rlalign.policies.insertion.model import PAD, GapOutputs
from rlalign.policies.insertion.sampler import (
    FIRE_EPS,
    StepDistribution,
    apply_insertions,
    fire_log_probs,
    guide,
    insertable_log_probs,
    open_gaps,
    rate_factors,
    sample_step,
    step_distribution,
    step_log_prob,
    step_width,
)

# A 5-token vocabulary: 3 specials (pad, unk, BOS) and two words, ids 3 ("a") and 4 ("b").
# The specials get the largest logits on purpose: they must still have probability 0.
LOGITS_V = torch.tensor([9.0, 9.0, 9.0, 0.0, math.log(3.0)])  # words: Q(a) = 1/4, Q(b) = 3/4


def test_fire_probability_is_the_product_of_both_bernoullis():
    # gap 0: π = σ(0) = 1/2, λ = 2, Δt·w_t = 0.25  → p = 1/2 · min(1, 0.5) = 1/4
    # gap 1: π = σ(log 3) = 3/4, λ = 8             → p = 1/4 · min(1, 2)  = 1/4 (the rate saturates)
    # gap 2: π = σ(−log 3) = 1/4, λ = 1            → p = 3/4 · 0.25      = 3/16
    zero_BI = torch.tensor([[0.0, math.log(3.0), -math.log(3.0)]])
    log_rate_BI = torch.tensor([[math.log(2.0), math.log(8.0), 0.0]])
    log_fire, log_skip = fire_log_probs(zero_BI, log_rate_BI, torch.tensor([0.25], dtype=torch.float64))
    expected = torch.tensor([[1 / 4, 1 / 4, 3 / 16]])
    assert torch.allclose(log_fire.exp(), expected, atol=1e-7)
    assert torch.allclose(log_skip.exp(), 1 - expected, atol=1e-7)


def test_rate_factor_is_dt_over_one_minus_t_and_fails_at_one():
    # T = 4: steps at t = 0, 1/4, 1/2, 3/4 → Δt/(1 − t) = 1/4, 1/3, 1/2, 1 (the last step fills every gap
    # whose rate is ≥ 1).
    factors = rate_factors(torch.tensor([0.0, 0.25, 0.5, 0.75], dtype=torch.float64), 0.25)
    assert torch.allclose(factors, torch.tensor([1 / 4, 1 / 3, 1 / 2, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="0 ≤ t < 1"):
        rate_factors(torch.tensor([1.0]), 0.25)


def test_clamp_near_t_one_keeps_both_outcomes_possible():
    # t = 1 − 1e-9: Δt·w_t ≈ 2.5e8, so min(1, ·) = 1 and p = 1 − π. With z = −40, 1 − π = 1 − 4e-18 → clamped
    # to 1 − ε; with z = +40, 1 − π = 4e-18 → clamped up to ε. log(1 − p) stays finite in both.
    factor = rate_factors(torch.tensor([1 - 1e-9], dtype=torch.float64), 0.25)
    log_fire, log_skip = fire_log_probs(torch.tensor([[-40.0, 40.0]]), torch.tensor([[0.0, 0.0]]), factor)
    assert log_fire[0, 0].item() == pytest.approx(math.log1p(-FIRE_EPS), abs=1e-9)
    assert log_fire[0, 1].item() == pytest.approx(math.log(FIRE_EPS), abs=1e-5)
    assert log_skip[0, 0].exp().item() == pytest.approx(FIRE_EPS, rel=0.1)  # float32 rounding of 1 − (1 − ε)
    assert log_skip[0, 1].item() == pytest.approx(-FIRE_EPS, rel=1e-3)
    assert torch.isfinite(log_skip).all()


def test_token_distribution_masks_specials_and_applies_temperature():
    logp = insertable_log_probs(LOGITS_V[None, None])
    assert torch.isinf(logp[0, 0, :3]).all()
    assert torch.allclose(logp[0, 0, 3:].exp(), torch.tensor([0.25, 0.75]))
    # temperature 2: Q ∝ exp(ℓ/2) = [1, √3]
    hot = insertable_log_probs(LOGITS_V[None, None], temperature=2.0)[0, 0, 3:].exp()
    assert torch.allclose(hot, torch.tensor([1.0, math.sqrt(3)]) / (1 + math.sqrt(3)))


def test_guidance_is_geometric_in_rate_and_token_distribution():
    # w = 2: λ = λ_c² / λ_u = 4²/2 = 8; Q ∝ Q_c² / Q_u; z = 2·z_c − z_u = 2·1 − 3 = −1.
    cond = GapOutputs(torch.tensor([[1.0]]), torch.tensor([[math.log(4.0)]]), LOGITS_V[None, None])
    uncond_logits = torch.tensor([0.0, 0.0, 0.0, math.log(3.0), 0.0])  # Q_u = [3/4, 1/4]
    uncond = GapOutputs(torch.tensor([[3.0]]), torch.tensor([[math.log(2.0)]]), uncond_logits[None, None])
    mixed = guide(cond, uncond, 2.0)
    assert mixed.zero_logit_BI.item() == pytest.approx(-1.0)
    assert mixed.log_rate_BI.exp().item() == pytest.approx(8.0, rel=1e-6)
    q_c, q_u = torch.tensor([0.25, 0.75]), torch.tensor([0.75, 0.25])
    expected = q_c**2 / q_u / (q_c**2 / q_u).sum()
    assert torch.allclose(insertable_log_probs(mixed.token_logits_BIV)[0, 0, 3:].exp(), expected, atol=1e-6)
    assert guide(cond, None, 2.0) is cond


def test_step_log_prob_of_each_outcome():
    # One text of length 1 (two gaps) and max_len 4; a third, padded gap slot.
    # gap 0 (p = 1/4) fires "b" (Q = 3/4): log(1/4) + log(3/4); gap 1 (p = 1/4) does not: log(3/4); gap 2: 0.
    outputs = GapOutputs(torch.zeros(1, 3), torch.full((1, 3), math.log(2.0)), LOGITS_V.expand(1, 3, 5))
    dist = step_distribution(outputs, t_B=torch.tensor([0.0], dtype=torch.float64), dt=0.25,
                             lengths_B=torch.tensor([1]), max_len=4)
    assert dist.open_BI.tolist() == [[True, True, False]]
    logp = step_log_prob(dist, torch.tensor([[True, False, False]]), torch.tensor([[4, PAD, PAD]]))
    expected = [math.log(1 / 4) + math.log(3 / 4), math.log(3 / 4), 0.0]
    assert torch.allclose(logp, torch.tensor([expected]), atol=1e-6)


def test_open_gaps_respect_length_and_cap():
    # max_len 6: n = 0 → gap 0; n = 2 → gaps 0..2; n = 5 → only gap 0 (one more token fits); n = 6 → none.
    open_BI = open_gaps(torch.tensor([0, 2, 5, 6]), 7, 6)
    assert open_BI.sum(1).tolist() == [1, 3, 1, 0]
    assert open_BI[1].tolist() == [True, True, True, False, False, False, False]


def test_sample_step_fires_below_p_and_never_on_closed_gaps():
    # p = 1/4 on every gap; Q = [1/4, 3/4]: inverse CDF gives "a" (3) for u < 1/4, else "b" (4).
    log_fire = torch.full((1, 4), math.log(0.25))
    dist = StepDistribution(log_fire, torch.log1p(-log_fire.exp()), insertable_log_probs(LOGITS_V.expand(1, 4, 5)),
                            torch.tensor([[True, True, True, False]]))
    fired, tokens = sample_step(dist, torch.tensor([[0.2, 0.3, 0.1, 0.0]]), torch.tensor([[0.1, 0.1, 0.9, 0.1]]))
    assert fired.tolist() == [[True, False, True, False]]
    assert tokens.tolist() == [[3, PAD, 4, PAD]]


def test_apply_insertions_puts_every_token_in_its_gap():
    # row 0: "x y" with gaps 0 and 2 firing → "a x y b"; row 1: empty text, gap 0 fires "b" → "b";
    # row 2: "x" and nothing fires → "x".
    x, y, a, b = 5, 6, 3, 4
    tokens_BN = torch.tensor([[x, y], [0, 0], [x, 0]])
    lengths_B = torch.tensor([2, 0, 1])
    fired = torch.tensor([[True, False, True], [True, False, False], [False, False, False]])
    inserted = torch.tensor([[a, 0, b], [b, 0, 0], [0, 0, 0]])
    out, lengths = apply_insertions(tokens_BN, lengths_B, fired, inserted, max_len=5)
    assert lengths.tolist() == [4, 1, 1]
    assert out.tolist() == [[a, x, y, b, 0], [b, 0, 0, 0, 0], [x, 0, 0, 0, 0]]
    # between tokens: "x y", gap 1 fires → "x a y"
    out, _ = apply_insertions(torch.tensor([[x, y]]), torch.tensor([2]), torch.tensor([[False, True, False]]),
                              torch.tensor([[0, a, 0]]), max_len=3)
    assert out.tolist() == [[x, a, y]]
    with pytest.raises(ValueError, match="max_len"):
        apply_insertions(tokens_BN[:1], lengths_B[:1], torch.ones(1, 3, dtype=torch.bool), torch.full((1, 3), a), 4)
    with pytest.raises(ValueError, match="within each text"):
        apply_insertions(tokens_BN[1:2], lengths_B[1:2], torch.tensor([[False, True, False]]), inserted[:1], 5)


def test_step_width_doubles_then_caps():
    assert [step_width(s, 12) for s in range(6)] == [0, 1, 3, 7, 12, 12]
