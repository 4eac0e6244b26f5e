"""GRPO-family losses, checked against hand-computed numbers (torchtune style)."""

import math
from types import SimpleNamespace

import pytest
import torch

from rlalign.grpo.loss import action_weights, kl_k3, policy_loss, step_weights
from rlalign.grpo.update import loss_weights, micro_batch_normalizers

LOG = math.log


def test_step_weights_balance_steps_or_actions():
    # Counts (1, 4), α = 1: raw (1, 1/4), Σ raw·count = 1 + 1 = 2 → k = (0.5, 0.125).
    assert step_weights([1, 4], alpha=1.0).tolist() == pytest.approx([0.5, 0.125])
    # α = 0: raw (1, 1), Σ = 5 → every action weighs 0.2.
    assert step_weights([1, 4], alpha=0.0).tolist() == pytest.approx([0.2, 0.2])


def test_per_sample_step_weights_count_only_valid_actions():
    # An insertion-like sample: step 1 has 1 real gap (width 1), step 2 has 2 real gaps of width 4.
    # α = 1, real counts (1, 2): raw (1, 1/2), Σ raw·count = 1 + 1 = 2 → k = (0.5, 0.25): each step
    # holds half of the weight. (Widths would give k ∝ (1, 1/4) → step 2 only 1/3 after renormalising.)
    masks = [torch.tensor([[True]]), torch.tensor([[True, True, False, False]])]
    weights = action_weights(masks, alpha=1.0, per_sample=True)
    assert weights.tolist() == [pytest.approx([0.5, 0.25, 0.25, 0.0, 0.0])]
    # α = 0: every valid action weighs 1/3.
    assert action_weights(masks, alpha=0.0, per_sample=True).tolist() == [pytest.approx([1 / 3] * 3 + [0, 0])]


def two_actions(log_ratios, advantage):
    """One sample, two one-action steps (k = 0.5 each), given log-ratios, with grad on logp."""
    logp = torch.tensor([log_ratios], requires_grad=True)
    weights = action_weights([torch.ones(1, 1, dtype=torch.bool)] * 2, alpha=1.0, per_sample=True)
    return logp, weights, torch.tensor([advantage])


def test_clipped_surrogate_and_its_gradient():
    logp, weights, advantage = two_actions([LOG(1.5), LOG(0.5)], 1.0)
    out = policy_loss(logp, torch.zeros(1, 2), advantage, weights, clip_eps=0.2)
    # ρ = (1.5, 0.5), clip → (1.2, 0.8); A = +1: min(1.5, 1.2) = 1.2, min(0.5, 0.8) = 0.5
    #   → loss = −(0.5·1.2 + 0.5·0.5) = −0.85.
    assert out.loss.item() == pytest.approx(-0.85)
    out.loss.backward()
    # The clipped action gets no gradient; the other: d(−0.5·ρ)/dlogp = −0.5·0.5 = −0.25.
    assert logp.grad[0].tolist() == pytest.approx([0.0, -0.25])
    assert out.stats["clip_fraction_high"] == pytest.approx(0.5)


def test_negative_advantage_and_clip_higher():
    logp, weights, advantage = two_actions([LOG(1.5), LOG(0.5)], -1.0)
    # A = −1: min(−1.5, −1.2) = −1.5, min(−0.5, −0.8) = −0.8 → loss = 0.5·1.5 + 0.5·0.8 = 1.15.
    assert policy_loss(logp, torch.zeros(1, 2), advantage, weights).loss.item() == pytest.approx(1.15)
    # DAPO's clip-higher only widens the upper side: with A = +1 and ε_high = 0.6, ρ = 1.5 is kept.
    logp, weights, advantage = two_actions([LOG(1.5), LOG(0.5)], 1.0)
    out = policy_loss(logp, torch.zeros(1, 2), advantage, weights, clip_eps=0.2, clip_eps_high=0.6)
    assert out.loss.item() == pytest.approx(-(0.5 * 1.5 + 0.5 * 0.5))


def test_gspo_uses_one_sequence_ratio():
    logp, weights, advantage = two_actions([LOG(1.5), LOG(0.5)], 1.0)
    # Weighted mean log-ratio 0.5·(ln 1.5 + ln 0.5) = 0.5·ln 0.75 → r = √0.75 = 0.8660, inside [0.8, 1.2]
    #   → loss = −0.8660.
    out = policy_loss(logp, torch.zeros(1, 2), advantage, weights, loss_type="gspo")
    assert out.loss.item() == pytest.approx(-math.sqrt(0.75), abs=1e-6)


def test_normalisation_of_each_loss_type_with_a_padded_action():
    # Two samples, one step of 2 slots; sample 2's second slot is padding. ρ = 1, A = (1, 2).
    mask = [torch.tensor([[True, True], [True, False]])]
    zeros, advantages = torch.zeros(2, 2), torch.tensor([1.0, 2.0])
    # grpo: per-sample weights (0.5, 0.5) and (1, 0) → −(1 + 2)/2 = −1.5.
    per_sample = action_weights(mask, alpha=1.0, per_sample=True)
    assert policy_loss(zeros, zeros, advantages, per_sample).loss.item() == pytest.approx(-1.5)
    # dr_grpo: k = 1/2 from the full step size → −(0.5 + 0.5 + 0.5·2)/B=2 = −1.0.
    fixed = action_weights(mask, alpha=1.0, per_sample=False)
    assert policy_loss(zeros, zeros, advantages, fixed, loss_type="dr_grpo").loss.item() == pytest.approx(-1.0)
    # dapo: the same sum −2 over the batch's total weight 0.5 + 0.5 + 0.5 = 1.5 → −1.3333.
    assert policy_loss(zeros, zeros, advantages, fixed, loss_type="dapo").loss.item() == pytest.approx(-4 / 3)


def test_k3_kl_penalty():
    # logp = ln 0.5, ref = ln 0.25: δ = ln 0.5 = −0.6931 → e^δ − δ − 1 = 0.5 + 0.6931 − 1 = 0.1931.
    kl = kl_k3(torch.tensor([[LOG(0.5)]]), torch.tensor([[LOG(0.25)]]))
    assert kl.item() == pytest.approx(0.5 + LOG(2) - 1)
    weights = torch.ones(1, 1)
    out = policy_loss(torch.tensor([[LOG(0.5)]]), torch.tensor([[LOG(0.5)]]), torch.tensor([0.0]), weights,
                      beta=0.1, kl_BA=kl)
    # ρ = 1 and A = 0 → surrogate 0; loss = β·KL = 0.1·0.1931 = 0.01931.
    assert out.loss.item() == pytest.approx(0.1 * (0.5 + LOG(2) - 1))
    with pytest.raises(ValueError, match="kl_BA"):
        policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), weights, beta=0.1)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "gspo"])
def test_micro_batches_add_up_to_the_full_batch(loss_type):
    generator = torch.Generator().manual_seed(0)
    logp, old = torch.randn(4, 5, generator=generator) * 0.1, torch.randn(4, 5, generator=generator) * 0.1
    advantages = torch.randn(4, generator=generator)
    mask = [torch.rand(4, 2, generator=generator) > 0.3, torch.ones(4, 3, dtype=torch.bool)]
    weights = action_weights(mask, alpha=1.0, per_sample=loss_type in ("grpo", "gspo"))
    full = policy_loss(logp, old, advantages, weights, loss_type=loss_type).loss
    normalizer = float(weights.sum()) if loss_type == "dapo" else 4.0
    halves = sum(policy_loss(logp[s], old[s], advantages[s], weights[s], loss_type=loss_type,
                             normalizer=normalizer).loss for s in (slice(0, 2), slice(2, 4)))
    assert halves.item() == pytest.approx(full.item(), abs=1e-6)


def test_cispo_caps_and_stops_the_ratio_by_hand():
    # ρ = 0.5 / 0.25 = 2, A = 1, one action of weight 1. ε_max = 1.5 caps ρ at 1.5 (no gradient through
    # it): loss = −1.5·1·ln 0.5 = 1.0397, d loss / d logp = −1.5. With ε_max = 5 the coefficient is 2.
    for cap, coefficient in [(1.5, 1.5), (5.0, 2.0)]:
        logp = torch.tensor([[LOG(0.5)]], requires_grad=True)
        out = policy_loss(logp, torch.tensor([[LOG(0.25)]]), torch.tensor([1.0]), torch.ones(1, 1),
                          loss_type="cispo", clip_eps_high=cap)
        out.loss.backward()
        assert out.loss.item() == pytest.approx(-coefficient * LOG(0.5))
        assert logp.grad.item() == pytest.approx(-coefficient)
        assert out.stats["clip_fraction_high"] == (1.0 if cap < 2 else 0.0)  # ρ > ε_max with A > 0


def test_sapo_soft_gate_by_hand():
    # ρ = 1: the gate (4/τ)·σ(0) = 2/τ. A = +1 with τ_pos = 1 → term −2; A = −1 with τ_neg = 1.05 →
    # +2/1.05 = 1.90476. The mean over B = 2 is (−2 + 1.90476)/2 = −0.04762. At ρ = 1 the gate's slope
    # is (4/τ)·τ·σ'(0) = 1, so d loss / d logp_i = −A_i / B = (−0.5, +0.5), as the unclipped surrogate.
    logp = torch.zeros(2, 1, requires_grad=True)
    out = policy_loss(logp, torch.zeros(2, 1), torch.tensor([1.0, -1.0]), torch.ones(2, 1), loss_type="sapo",
                      sapo_temperatures=(1.0, 1.05))
    out.loss.backward()
    assert out.loss.item() == pytest.approx((-2 + 2 / 1.05) / 2, abs=1e-6)  # float32
    assert logp.grad.flatten().tolist() == pytest.approx([-0.5, 0.5])


def test_bnpo_divides_each_micro_batch_by_its_own_actions():
    # Two micro-batches of one sample each, A = 1, ρ = 1 → term −1 per valid action; 3 and 1 valid
    # actions of 3 (k = 1/3). bnpo: each micro-batch's mean over its own actions, averaged over the two:
    # (−1 + −1)/2 = −1. dapo over the same batch: −(3 + 1)/(3 + 1) = −1 as well, but weighted by actions:
    # with A = (1, −1), bnpo gives (−1 + 1)/2 = 0 while dapo gives (−3 + 1)/4 = −0.5.
    mask = torch.tensor([[True, True, True], [True, False, False]])
    advantages = torch.tensor([1.0, -1.0])
    grpo = SimpleNamespace(loss_type="bnpo", step_weight_alpha=1.0, dr_grpo_length=None)
    weights = loss_weights([mask], grpo)
    chunks = [torch.tensor([0]), torch.tensor([1])]
    for loss_type, expected in [("bnpo", 0.0), ("dapo", -0.5)]:
        total = sum(policy_loss(torch.zeros(1, 3), torch.zeros(1, 3), advantages[c], weights[c], loss_type=loss_type,
                                normalizer=n).loss.item()
                    for c, n in zip(chunks, micro_batch_normalizers(weights, chunks, loss_type)))
        assert total == pytest.approx(expected), loss_type


def test_kl_bias_correction_multiplies_by_the_ratio():
    # logp = ln 0.5, old = ref = ln 0.25: ρ = 2, κ = e^δ − δ − 1 with δ = −ln 2: 0.5 + 0.6931 − 1 = 0.1931.
    # A = 0, β = 0.1: plain loss 0.1·0.1931 = 0.01931; corrected 0.1·2·0.1931 = 0.03863.
    logp, old = torch.tensor([[LOG(0.5)]]), torch.tensor([[LOG(0.25)]])
    kl = kl_k3(logp, old)
    for correction, factor in [(False, 1.0), (True, 2.0)]:
        out = policy_loss(logp, old, torch.tensor([0.0]), torch.ones(1, 1), beta=0.1, kl_BA=kl,
                          kl_bias_correction=correction)
        assert out.loss.item() == pytest.approx(0.1 * factor * (0.5 + LOG(2) - 1))
        assert out.stats["kl"] == pytest.approx(factor * (0.5 + LOG(2) - 1))
