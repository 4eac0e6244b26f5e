"""Sums rewards in TRL's convention, through the reward worker with prompt rows: the rows' columns
arrive as keywords, TRL's accuracy_reward (unchanged) reads `solution`, and the verifier stays eval-only."""

import pytest
from rlalign.rewards.sums import sums_eval, sums_format
from rlalign.rewards.worker import RewardWorker

from rlalign import sums
from rlalign.config import RewardSpec


def test_sums_rewards_by_hand():
    completions = ["\\boxed{5+4+3}", "\\boxed{9+3}", "\\boxed{4+4+5}", "12"]
    assert sums_eval(completions, target=[12] * 4, terms=[3] * 4) == [1.0, 0.0, 0.0, 0.0]
    assert sums_format(completions, terms=[3] * 4) == [1.0, 0.0, 1.0, 0.0]


def test_worker_passes_row_columns_to_trl_accuracy_reward():
    pytest.importorskip("math_verify")
    rows = [sums.row(12, 3)] * 4
    worker = RewardWorker([RewardSpec(name="trl.rewards:accuracy_reward", label="accuracy"),
                           RewardSpec(name="sums_format", label="format")], combine=None)
    result = worker.score(rows, ["\\boxed{5+4+3}", "\\boxed{9+3}", "\\boxed{4+4+5}", "12"])
    # accuracy_reward judges the boxed value only (9+3 = 12 counts); format the number of terms only.
    assert result.per_reward["accuracy"].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert result.per_reward["format"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_the_verifier_cannot_be_a_trained_reward():
    from rlalign.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="sums_eval"):
        load_config("configs/editflow_text.yaml", ["rewards.functions=[{name: sums_eval}]"])
