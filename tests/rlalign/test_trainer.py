"""Integration tier: a few real GRPO steps on a tiny random next-scale model (real peft, real rewards)."""

import json

import pytest
import torch
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.training.trainer import NonFiniteTraining, Trainer
from rlalign.utils.metrics import read_metrics


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def parameters(trainer):
    return {name: p.detach().clone() for name, p in trainer.policy.model.named_parameters()}


def test_only_lora_parameters_change_and_the_rollouts_stay_on_policy(tmp_path, tiny_checkpoint):
    trainer = Trainer(tiny_config(tmp_path, tiny_checkpoint))
    before = parameters(trainer)
    trainer.run()
    after = parameters(trainer)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all("lora_" in name for name in changed)
    assert any("lora_B" in name for name in changed)
    steps = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "time/step" in r]
    assert len(steps) == 4
    # The on-policy check: before the first update of a step, logp equals the rollout's old_logp.
    assert max(r["debug/max_abs_logratio_first_iter"] for r in steps) <= 1e-5
    # Later inner iterations are off-policy, so the second pass of a step really moved the ratio.
    assert any(abs(r["charts/ratio_mean"] - 1) > 0 for r in steps)


def test_a_nan_loss_applies_no_update_and_stops_the_run(tmp_path, tiny_checkpoint):
    trainer = Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.steps": 1}))
    real_log_prob = trainer.policy.log_prob
    trainer.policy.log_prob = lambda rollout: [lp * float("nan") for lp in real_log_prob(rollout)]
    before = parameters(trainer)
    optimizer_state = json.dumps(trainer.optimizer.state_dict()["param_groups"])
    with pytest.raises(NonFiniteTraining, match="stopped at step 1: 2 of 2 updates had a non-finite loss"):
        trainer.train_step(1)  # both inner iterations
    assert all(torch.equal(before[name], p) for name, p in trainer.policy.model.named_parameters())
    assert trainer.optimizer.state_dict()["state"] == {}  # AdamW never stepped
    assert json.dumps(trainer.optimizer.state_dict()["param_groups"]) == optimizer_state


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, tiny_checkpoint):
    straight = Trainer(tiny_config(tmp_path / "a", tiny_checkpoint))
    straight.run()
    interrupted = Trainer(tiny_config(tmp_path / "b", tiny_checkpoint))
    interrupted.run(stop_after=2)
    resumed = Trainer(tiny_config(tmp_path / "b", tiny_checkpoint), resume=str(tmp_path / "b" / "run"))
    assert resumed.start_step == 2
    resumed.run()
    expected, got = straight.policy.adapter_state(), resumed.policy.adapter_state()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "run" / "metrics.jsonl") if "time/step" in r]
    assert steps == [1, 2, 3, 4]


def test_resume_from_an_empty_directory_says_what_to_pass(tmp_path, tiny_checkpoint):
    with pytest.raises(FileNotFoundError, match="no checkpoint there"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint), resume=str(tmp_path))


def test_a_fresh_run_never_overwrites_an_existing_one(tmp_path, tiny_checkpoint):
    Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.steps": 1})).run()
    written = (tmp_path / "run" / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="--resume"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint))
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == written


def test_a_start_that_failed_before_logging_blocks_nothing(tmp_path, tiny_checkpoint):
    # A start that failed (say, in its first evaluation) leaves an empty metrics.jsonl and no checkpoint.
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match="stopped before its first checkpoint.*start it again without --resume"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint), resume=str(run))
    Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.steps": 1})).run()  # a fresh start reuses it
    assert any("time/step" in row for row in read_metrics(run / "metrics.jsonl"))


def test_an_output_dir_that_cannot_hold_a_run_is_refused_before_any_work(tmp_path, tiny_checkpoint):
    import os

    from rlalign.config import ConfigError

    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    with pytest.raises(ConfigError, match="'output_dir'.*is a file, not a directory"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint, output_dir=str(blocker)))
    with pytest.raises(ConfigError, match="'output_dir'.*cannot be written .*Not a directory"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint, output_dir=str(blocker / "run")))
    assert blocker.read_text() == "keep me"
    if os.geteuid() != 0:  # root writes into read-only directories anyway
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(ConfigError, match="cannot be written .*Permission denied"):
            Trainer(tiny_config(tmp_path, tiny_checkpoint, output_dir=str(locked / "run")))


def test_middle_value_scores_k_frozen_completions_per_prefix(tmp_path, tiny_checkpoint):
    cfg = tiny_config(tmp_path, tiny_checkpoint, **{"grpo.suffix_samples": 3, "grpo.middle_value_eta": 0.05,
                                                    "train.steps": 1})
    trainer = Trainer(cfg)
    rollout = trainer.backend.generate(["a red circle", "a blue square"], 4, trainer.prefix_steps, 1)
    result, rewards_B = trainer.score_rollout(rollout, step=1)
    totals_BK = result.total.view(8, 3)
    assert result.total.shape == (24,) and rewards_B.shape == (8,)
    # The K endings differ (the suffix is sampled afresh), and the soft maximum lies between the
    # mean (Jensen) and the max of its prefix's K rewards.
    assert (totals_BK.std(dim=1) > 0).any()
    assert (rewards_B >= totals_BK.mean(dim=1) - 1e-6).all() and (rewards_B <= totals_BK.amax(dim=1) + 1e-6).all()
    # Same step, same seeds: the same completions and values (batching-independent generators).
    assert torch.equal(trainer.score_rollout(rollout, step=1)[1], rewards_B)
    metrics = trainer.train_step(1)
    assert "rewards/middle_value/mean" in metrics and metrics["debug/max_abs_logratio_first_iter"] <= 1e-5


def never_applies(prompts, completions, **_):
    """A reward that is None ("not applicable") for every sample: no finite value, no learning signal."""
    return [None] * len(prompts)


def always_fails(prompts, completions, **_):
    raise RuntimeError("judge model not loaded")


@pytest.mark.parametrize("reward", ["{name: 'MODULE:never_applies'}",
                                    "{name: 'MODULE:always_fails', on_error: skip}"])
def test_a_run_without_learning_signal_warns_then_saves_and_stops(tmp_path, tiny_checkpoint, reward):
    from rlalign.training.trainer import NoLearningSignal

    cfg = tiny_config(tmp_path, tiny_checkpoint, **{"train.steps": 10, "train.stop_after_steps_without_signal": 3,
                                                     "rewards.functions": f"[{reward.replace('MODULE', __name__)}]"})
    trainer = Trainer(cfg)
    with (pytest.warns(RuntimeWarning, match="step 1: no trained reward gave a finite value"),
          pytest.raises(NoLearningSignal, match="stopped at step 3: the last 3 steps had no learning signal")):
        trainer.run()
    assert (tmp_path / "run" / "checkpoints" / "step_000003").is_dir()  # what ran is kept, resumable
    steps = [row["step"] for row in read_metrics(tmp_path / "run" / "metrics.jsonl") if "debug/finite_rewards" in row]
    assert steps == [1, 2, 3]


def test_steps_with_signal_reset_the_count(tmp_path, tiny_checkpoint):
    trainer = Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.stop_after_steps_without_signal": 2}))
    trainer._watch_learning_signal(1, {"debug/finite_rewards": 8, "debug/advantage_abs_mean": 0.0})
    trainer._watch_learning_signal(2, {"debug/finite_rewards": 8, "debug/advantage_abs_mean": 0.7})
    trainer._watch_learning_signal(3, {"debug/finite_rewards": 8, "debug/advantage_abs_mean": 0.0})
    assert trainer.steps_without_signal == 1  # 0-signal, signal, 0-signal: never 2 in a row
