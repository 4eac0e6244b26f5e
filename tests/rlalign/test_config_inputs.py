"""Config inputs read as a user means them (issue 31): YAML 1.2 integers, merge keys, finite floats,
`~` and `$VARS` in paths, and a clear error for a file that is not UTF-8 (an unreadable one: tests/test_permissions.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlalign.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / "configs" / "shapes_nextscale.yaml")
REWARDS = "rewards: {functions: [{name: clip_score}]}\n"


def test_integers_are_yaml_1_2_so_a_leading_zero_is_not_octal(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(REWARDS + "train: {steps: 010, eval_every: 0o10, save_every: 0x10}\n")
    cfg = load_config(str(config))
    assert (cfg.train.steps, cfg.train.eval_every, cfg.train.save_every) == (10, 8, 16)
    assert load_config(DEMO, ["train.steps=010"]).train.steps == 10  # overrides read the same way


def test_merge_keys_work_and_x_keys_only_hold_anchors(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(REWARDS + "x-short: &short {steps: 7, eval_every: 7}\ntrain:\n  <<: *short\n  steps: 5\n")
    cfg = load_config(str(config))
    assert (cfg.train.steps, cfg.train.eval_every) == (5, 7)  # the explicit key wins, as YAML defines


def test_a_key_given_twice_is_still_refused(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  steps: 5\n  steps: 7\n")
    with pytest.raises(ConfigError, match="given twice"):
        load_config(str(config))


@pytest.mark.parametrize("override", ["train.learning_rate=.inf", "rewards.functions.0.weight=.nan",
                                      "rewards.timeout_s=.inf"])
def test_non_finite_floats_are_refused(override):
    with pytest.raises(ConfigError, match="must be a finite number"):
        load_config(DEMO, [override])


def test_home_and_variables_expand_in_paths_and_an_unset_variable_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RUNS_ROOT", str(tmp_path / "runs"))
    assert load_config(DEMO, ["output_dir=~/x"]).output_dir == str(tmp_path / "x")
    assert load_config(DEMO, ["output_dir=${RUNS_ROOT}/y"]).output_dir == str(tmp_path / "runs" / "y")
    monkeypatch.delenv("RUNS_ROOT")
    with pytest.raises(ConfigError, match=r"output_dir.*RUNS_ROOT that are not set"):
        load_config(DEMO, ["output_dir=$RUNS_ROOT/y"])


def test_a_latin_1_byte_names_the_file_and_the_offset(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"train: {steps: 5}  # caf\xe9\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*is not UTF-8 text \(byte 0xe9 at offset 24\)"):
        load_config(str(config))
