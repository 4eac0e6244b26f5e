"""scripts/gradient_snr.py: the signal / noise split of independent gradient estimates, by hand."""

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gradient_snr", ROOT / "scripts" / "gradient_snr.py")
gradient_snr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gradient_snr)


def test_two_gradients_by_hand():
    # g1 = (2, 1), g2 = (2, -1): the one pair's dot product 4 - 1 = 3 is the signal² estimate;
    # mean |g|² = (5 + 5) / 2 = 5, so noise² = 5 - 3 = 2 and SNR = 3 / 2; cosine 3 / (√5 · √5) = 0.6.
    out = gradient_snr.snr_estimate(torch.tensor([[2.0, 1.0], [2.0, -1.0]]))
    assert out["signal_sq"] == pytest.approx(3.0) and out["noise_sq"] == pytest.approx(2.0)
    assert out["snr"] == pytest.approx(1.5) and out["cos"] == pytest.approx(0.6)
    assert out["grad_norm"] == pytest.approx(5 ** 0.5)


def test_recovers_a_known_signal_to_noise_ratio():
    # μ = (1, 0, ..., 0) in 100 dimensions plus N(0, 0.1²) noise per coordinate: |μ|² = 1,
    # noise² = 100 · 0.01 = 1, so SNR = 1. With 200 draws the estimates land within a few percent.
    generator = torch.Generator().manual_seed(0)
    mean_P = torch.zeros(100)
    mean_P[0] = 1.0
    draws_NP = mean_P + 0.1 * torch.randn(200, 100, generator=generator)
    out = gradient_snr.snr_estimate(draws_NP)
    assert out["signal_sq"] == pytest.approx(1.0, abs=0.05)
    assert out["noise_sq"] == pytest.approx(1.0, abs=0.05)
    assert out["snr"] == pytest.approx(1.0, abs=0.1)


def test_pure_noise_has_no_signal():
    generator = torch.Generator().manual_seed(1)
    out = gradient_snr.snr_estimate(torch.randn(100, 50, generator=generator))
    assert abs(out["signal_sq"]) < 0.1 * out["noise_sq"] and abs(out["cos"]) < 0.02


def test_needs_two_gradients():
    with pytest.raises(ValueError, match="≥ 2 independent gradients"):
        gradient_snr.snr_estimate(torch.zeros(1, 3))
