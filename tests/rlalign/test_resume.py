"""Resuming is strict: a changed setting that alters training is refused unless accepted (rlalign.training.resume)."""

import shutil

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.training.checkpoint import find_checkpoint
from rlalign.training.resume import ResumeConfigError, config_changes
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture
def stopped_run(tmp_path, tiny_checkpoint):
    """A 4-step run (constant learning rate 0.05) stopped after step 2, and a resume helper."""
    Trainer(tiny_config(tmp_path, tiny_checkpoint)).run(stop_after=2)
    run = tmp_path / "run"

    def resume(*accept, **overrides):
        return Trainer(tiny_config(tmp_path, tiny_checkpoint, **overrides), resume=str(run), accept_changes=accept)

    return run, resume


def test_a_changed_learning_rate_is_refused_listing_old_and_new_and_nothing_is_written(stopped_run):
    run, resume = stopped_run
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ResumeConfigError) as caught:
        resume(**{"train.learning_rate": 0.01, "grpo.prefix_steps": 1})
    message = str(caught.value)
    assert "train.learning_rate: 0.05 → 0.01" in message and "grpo.prefix_steps: 2 → 1" in message
    assert "--accept-changes grpo.prefix_steps,train.learning_rate" in message  # in config order
    assert (run / "metrics.jsonl").read_text() == before and not (run / "metrics.superseded.jsonl").exists()


def test_an_accepted_learning_rate_is_the_one_used(stopped_run):
    _, resume = stopped_run
    trainer = resume("train.learning_rate", **{"train.learning_rate": 0.01})
    group = trainer.optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.01) and group["initial_lr"] == 0.01  # constant schedule: factor 1
    assert trainer.scheduler.base_lrs == [0.01]


def test_logging_evaluation_and_saving_cadence_change_freely(stopped_run):
    _, resume = stopped_run
    trainer = resume(**{"train.eval_every": 3, "train.save_every": 1, "logging.log_every": 2,
                        "prompts.eval_samples_per_prompt": 1})
    assert trainer.start_step == 2


def test_extending_steps_under_a_constant_schedule_passes_with_a_note(stopped_run, capsys):
    _, resume = stopped_run
    assert resume(**{"train.steps": 6}).start_step == 2
    assert "train.steps 4 → 6: the constant schedule gives every step the same rate" in capsys.readouterr().out


def test_extending_steps_under_a_decaying_schedule_says_why_and_can_be_accepted(tmp_path, tiny_checkpoint):
    cosine = {"train.lr_schedule": "cosine"}
    Trainer(tiny_config(tmp_path, tiny_checkpoint, **cosine)).run(stop_after=2)
    run = tmp_path / "run"
    with pytest.raises(ResumeConfigError, match=r"(?s)train.steps: 4 → 8.*cosine schedule decays over train.steps"):
        Trainer(tiny_config(tmp_path, tiny_checkpoint, **cosine, **{"train.steps": 8}), resume=str(run))
    trainer = Trainer(tiny_config(tmp_path, tiny_checkpoint, **cosine, **{"train.steps": 8}), resume=str(run),
                      accept_changes=["train.steps"])
    # 2 steps × 2 inner iterations = 4 optimizer steps of 16: cosine factor 0.5 (1 + cos(π/4)) ≈ 0.854
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5 * (1 + 2 ** -0.5))


def test_accepting_a_setting_that_did_not_change_is_an_error(stopped_run):
    _, resume = stopped_run
    with pytest.raises(ResumeConfigError, match="names train.learning_rat, which did not change"):
        resume("train.learning_rat")


def test_config_changes_by_hand():
    saved = {"train": {"steps": 4, "eval_every": 2}, "grpo": {"beta": 0.0}, "output_dir": "a",
             "rewards": {"functions": [{"name": "x", "weight": 1.0}]}}
    current = {"train": {"steps": 4, "eval_every": 9, "new_setting": 1}, "grpo": {"beta": 0.1}, "output_dir": "b",
               "rewards": {"functions": [{"name": "x", "weight": 2.0}]}}
    # eval_every and output_dir are free; new_setting is absent from the checkpoint; lists compare whole.
    assert config_changes(saved, current) == {
        "grpo.beta": (0.0, 0.1), "rewards.functions": ([{"name": "x", "weight": 1.0}], [{"name": "x", "weight": 2.0}])}


# -- checkpoint integrity: the newest damaged or missing checkpoint falls back to the newest intact one --


@pytest.fixture
def two_checkpoints(tmp_path, tiny_checkpoint):
    """A run stopped after step 2 with checkpoints of steps 1 and 2 (save_every 1)."""
    Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.save_every": 1})).run(stop_after=2)
    run = tmp_path / "run"
    return run, lambda: Trainer(tiny_config(tmp_path, tiny_checkpoint, **{"train.save_every": 1}), resume=str(run))


def truncate_state(checkpoint):
    (checkpoint / "trainer_state.pt").write_bytes((checkpoint / "trainer_state.pt").read_bytes()[:100])


def garble_adapter(checkpoint):  # same size, other bytes: only the checksum notices
    weights = checkpoint / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(b"x" * weights.stat().st_size)


def delete_state(checkpoint):
    (checkpoint / "trainer_state.pt").unlink()


def delete_directory(checkpoint):  # `latest` then names a directory that is gone
    shutil.rmtree(checkpoint)


@pytest.mark.parametrize("damage, why", [
    (truncate_state, "trainer_state.pt has 100 bytes"),
    (garble_adapter, "adapter/adapter_model.safetensors does not match its checksum"),
    (delete_state, "trainer_state.pt is missing"),
    (delete_directory, "the directory does not exist"),
])
def test_a_damaged_newest_checkpoint_falls_back_to_the_older_intact_one(two_checkpoints, damage, why):
    run, resume = two_checkpoints
    damage(run / "checkpoints" / "step_000002")
    with pytest.warns(RuntimeWarning, match=f"skipped checkpoint step_000002 \\({why}.*resuming from step_000001"):
        trainer = resume()
    assert trainer.start_step == 1
    trainer.run()  # and the run goes on from there
    steps = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "time/step" in r]
    assert steps == [1, 2, 3, 4]


def test_a_named_damaged_checkpoint_is_refused_pointing_at_the_run(two_checkpoints):
    run, _ = two_checkpoints
    newest = run / "checkpoints" / "step_000002"
    (newest / "config.yaml").write_text("garbled")
    with pytest.raises(FileNotFoundError, match=f"this checkpoint is damaged \\(config.yaml has 7 bytes.*pass its "
                                                f"run directory {run}"):
        find_checkpoint(newest)


def test_no_intact_checkpoint_says_so(two_checkpoints):
    run, _ = two_checkpoints
    for step in (1, 2):
        (run / "checkpoints" / f"step_{step:06d}" / "trainer_state.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no intact checkpoint: step_000002: .*; step_000001: "):
        find_checkpoint(run)


def test_a_family_setting_left_at_its_default_on_one_side_is_a_change(tmp_path):
    """Family sections hold only what a config writes; a run saves and a resume compares them resolved
    (defaults filled in by the family), so `num_scales` unset (0) against 3 is refused like any change."""
    from support.infinity import GOLDEN_DIR

    from rlalign.config import load_config
    from rlalign.policies import resolved_config

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a photo of a cat\n")
    values = {"policy": {"kind": "infinity", "checkpoint": str(GOLDEN_DIR)},
              "prompts": {"train": f"file:{prompts}", "eval": {}},
              "rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}]}}
    saved = resolved_config(load_config(values))
    assert saved["policy"]["infinity"]["num_scales"] == 0 and "text_encoder" in saved["policy"]["infinity"]
    changed = resolved_config(load_config(values, ["policy.infinity.num_scales=3"]))
    assert config_changes(saved, changed) == {"policy.infinity.num_scales": (0, 3)}


def test_a_resume_notices_an_edited_prompt_file(tmp_path, tiny_checkpoint):
    """prompts.train names the same file, but its prompts changed since the checkpoint: refused like a
    changed setting (issue 31), and accepted with --accept-changes prompts.train."""
    from pathlib import Path

    Trainer(tiny_config(tmp_path, tiny_checkpoint, steps=3)).run(stop_after=1)
    cfg = tiny_config(tmp_path, tiny_checkpoint, steps=3)  # (writes the same prompt file again)
    Path(cfg.prompts.train.removeprefix("file:")).write_text("a blue square\na green circle\n")
    with pytest.raises(ResumeConfigError, match=r"prompts.train: .*prompts digest .* → 'the same source, now digest"):
        Trainer(cfg, resume=str(tmp_path / "run"))
    resumed = Trainer(cfg, resume=str(tmp_path / "run"), accept_changes=["prompts.train"])
    assert resumed.start_step == 1
    resumed.lock.release()


def test_a_resume_path_expands_home_and_a_file_or_missing_run_is_named(stopped_run, monkeypatch, tmp_path):
    """`--resume "~/run"` (quoted, or resume="~/run" in Python) names the run in the home directory; a file (the
    config given twice) or a run that is not there is named, instead of becoming the run's output_dir."""
    from rlalign.training.checkpoint import run_directory

    run, _ = stopped_run
    monkeypatch.setenv("HOME", str(tmp_path))
    assert run_directory("~/run") == run and find_checkpoint("$HOME/run") == run / "checkpoints" / "step_000002"
    assert run_directory("~/run/checkpoints/step_000002") == run
    (tmp_path / "config.yaml").write_text("train: {steps: 4}\n")
    with pytest.raises(FileNotFoundError, match=r"--resume .*config.yaml is a file; pass a run directory"):
        run_directory(tmp_path / "config.yaml")
    with pytest.raises(FileNotFoundError, match=r"--resume ~/nothing: no such directory"):
        run_directory("~/nothing")
    assert not (tmp_path / "nothing").exists()  # nothing was created on the way (a lock file used to be)
