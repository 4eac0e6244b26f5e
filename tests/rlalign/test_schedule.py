"""The learning-rate schedule is transformers' (get_scheduler), over optimizer steps, with hand-computed factors."""

from types import SimpleNamespace

import pytest
import torch

from rlalign.training.setup import build_scheduler


def factors(schedule: str, *, steps: int, inner: int, warmup: int) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    train = SimpleNamespace(lr_schedule=schedule, steps=steps, warmup_steps=warmup)
    scheduler = build_scheduler(optimizer, train, inner)
    return [scheduler.lr_lambdas[0](step) for step in range(steps * inner)]


def test_warmup_starts_from_zero_then_each_schedule():
    # 5 steps × 2 inner iterations = 10 optimizer steps, 2 of warm-up: factors 0/2, 1/2, then the decay
    # over the remaining 8 steps, progress p = (s − 2) / 8.
    assert factors("constant", steps=5, inner=2, warmup=2) == [0.0, 0.5] + [1.0] * 8
    # linear: (10 − s) / 8 → s = 2: 1, s = 6: 0.5, s = 9: 0.125
    linear = factors("linear", steps=5, inner=2, warmup=2)
    assert linear[2] == 1.0 and linear[6] == 0.5 and linear[9] == 0.125
    # cosine: ½ (1 + cos(π p)) → s = 4: p = ¼, ½ (1 + √½) = 0.85355; s = 6: p = ½, 0.5
    cosine = factors("cosine", steps=5, inner=2, warmup=2)
    assert cosine[:3] == [0.0, 0.5, 1.0]
    assert cosine[4] == pytest.approx(0.5 * (1 + 2 ** -0.5)) and cosine[6] == pytest.approx(0.5)


def test_without_warmup_the_first_step_has_the_full_rate():
    assert factors("cosine", steps=4, inner=1, warmup=0)[0] == 1.0
