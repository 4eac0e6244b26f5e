"""A run whose loss, gradient or adapter stops being finite stops at once, saves nothing over the last
good checkpoint, and says why (rlalign/training/trainer.py, `_stop_if_not_finite`)."""

from __future__ import annotations

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.training.trainer import NonFiniteTraining, Trainer
from rlalign.utils.metrics import read_metrics


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def test_a_temperature_near_zero_stops_at_the_first_step_saying_why(tmp_path, tiny_checkpoint):
    cfg = tiny_config(tmp_path, tiny_checkpoint, steps=3, **{"policy.temperature": 1e-45})
    with pytest.raises(NonFiniteTraining, match=r"stopped at step 1: .*non-finite loss or gradient norm.*"
                                                r"policy.temperature.*No checkpoint was written yet"):
        Trainer(cfg).run()
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_learning_rate_that_blows_up_keeps_the_last_finite_checkpoint(tmp_path, tiny_checkpoint):
    cfg = tiny_config(tmp_path, tiny_checkpoint, steps=4, **{"train.learning_rate": 1e30, "train.save_every": 1,
                                                             "train.eval_every": 0, "grpo.inner_iterations": 1})
    with pytest.raises(NonFiniteTraining, match=r"stopped at step (\d+): .*train.learning_rate=1e\+30.*"
                                                r"The newest checkpoint, step_\d+, is intact.*--resume") as stopped:
        Trainer(cfg).run()
    step = int(stopped.value.args[0].split("stopped at step ")[1].split(":")[0])
    latest = (tmp_path / "run" / "checkpoints" / "latest").read_text().strip()
    assert latest == f"step_{step - 1:06d}"  # the step that failed wrote nothing
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "time/step" in r]
    assert steps == list(range(1, step))
