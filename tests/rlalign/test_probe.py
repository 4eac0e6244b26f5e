"""The reward-variance probe: hand-computed shares, and `rlalign probe` end to end on a tiny model."""

import json
import math

import pytest
import torch
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.cli import main
from rlalign.commands.probe import ProbeSizes, branch, suggest_prefix_steps, variance_shares


def test_shares_by_hand():
    # One prompt, N = 3 prefixes × K = 2 completions: rewards (0, 0), (1, 1), (0, 1).
    # within  = mean(0, 0, 0.5) = 1/6            (unbiased Var of (0, 1) is 0.5)
    # between = Var(0, 1, 0.5) − within/K = 0.25 − 1/12 = 1/6
    # share   = (1/6) / (1/6 + 1/6) = 0.5; best prefix mean = 1; mean = 0.5
    out = variance_shares(torch.tensor([[[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]]))
    assert out["share_decided"] == pytest.approx(0.5) and out["best_prefix_mean"] == 1.0 and out["mean"] == 0.5
    # The prefix fixes everything: share 1. The suffix decides everything: between 0.25 − 0.5/2 → 0.
    assert variance_shares(torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]))["share_decided"] == 1.0
    assert variance_shares(torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]))["share_decided"] == 0.0
    # A prompt whose samples all agree carries no information: left out, and counted.
    both = variance_shares(torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]]))
    assert both["share_decided"] == 1.0 and both["prompts_with_variance"] == 1
    assert math.isnan(variance_shares(torch.ones(1, 2, 2))["share_decided"])


def test_suggestion_is_the_first_step_reaching_the_level():
    rows = [{"step": 1, "metric": "r", "share_decided": 0.2}, {"step": 2, "metric": "r", "share_decided": 0.6},
            {"step": 3, "metric": "r", "share_decided": 0.9}]
    assert suggest_prefix_steps(rows, "r", 0.5) == 2 and suggest_prefix_steps(rows, "r", 0.95) is None


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def test_branches_share_their_prefix(tiny_checkpoint, tmp_path):
    from rlalign.policies import load_policy

    policy = load_policy(tiny_config(tmp_path, tiny_checkpoint).policy)
    images, prompts = branch(policy, ["a red circle"], 2, ProbeSizes(prefixes=2, completions=3))
    assert images.shape[0] == 6 and prompts == ["a red circle"] * 6
    # Completions of one prefix differ (fresh suffixes); the last step fixes the sample entirely.
    assert not torch.equal(images[0], images[1])
    final, _ = branch(policy, ["a red circle"], policy.num_steps, ProbeSizes(prefixes=2, completions=2))
    assert torch.equal(final[0], final[1]) and torch.equal(final[2], final[3])


def test_probe_command_writes_rows_plot_and_suggestion(tiny_checkpoint, tmp_path, capsys):
    cfg_path = tmp_path / "probe.yaml"
    cfg = tiny_config(tmp_path, tiny_checkpoint)
    import yaml

    from rlalign.config import to_dict

    cfg_path.write_text(yaml.safe_dump(to_dict(cfg)))
    out = tmp_path / "probe"
    assert main(["probe", str(cfg_path), "--count", "2", "--prefixes", "3", "--completions", "2",
                 "--steps", "1,all", "--out", str(out)]) == 0
    report = json.loads((out / "probe.json").read_text())
    steps = {row["step"] for row in report["rows"]}
    assert steps == {1, 6} and (out / "probe.png").stat().st_size > 1000
    last = next(r for r in report["rows"] if r["step"] == 6 and r["metric"] == "reward")
    assert last["share_decided"] == pytest.approx(1.0)  # the whole trajectory fixes the sample
    assert report["suggested_prefix_steps"]["reward"] in (1, 6)
    assert "Smallest m" in capsys.readouterr().out
