"""Config inputs read as a user means them (issue 31): YAML 1.2 integers, merge keys, finite floats,
`~` and `$VARS` in paths, and a clear error for a file that is not UTF-8 (an unreadable one: tests/test_permissions.py)."""

from __future__ import annotations

import re
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


def test_booleans_and_floats_are_yaml_1_2(tmp_path):
    """YAML 1.1's yes/no/on/off are strings in YAML 1.2: a bool setting refuses them by name rather than guessing,
    and a string setting keeps them; `1e-4` is a number even in a free-form mapping (reward args)."""
    with pytest.raises(ConfigError, match=r"'logging.progress_bar' = 'on': must be true or false \(YAML 1.2"):
        load_config(DEMO, ["logging.progress_bar=on"])
    assert load_config(DEMO, ["logging.run_name=no"]).logging.run_name == "no"
    assert load_config(DEMO, ["logging.progress_bar=False"]).logging.progress_bar is False
    config = tmp_path / "c.yaml"
    config.write_text("rewards: {functions: [{name: clip_score, args: {scale: 1e-4, on: yes}}]}\n")
    assert load_config(str(config)).rewards.functions[0].args == {"scale": 1e-4, "on": "yes"}
    with pytest.raises(ConfigError, match=r"'train.steps' = 1000.0: must be an integer"):
        load_config(DEMO, ["train.steps=1e3"])


def test_an_optional_float_names_a_non_finite_value_and_timeouts_have_a_ceiling():
    with pytest.raises(ConfigError, match=r"'grpo.clip_eps_high' = inf: must be a finite number"):
        load_config(DEMO, ["grpo.clip_eps_high=.inf"])  # it used to say "must be float or null"
    with pytest.raises(ConfigError, match=r"'rewards.timeout_s' = 1e\+300: must be > 0 and ≤ 1000000000"):
        load_config(DEMO, ["rewards.timeout_s=1e300"])  # a wait that long overflowed the timers (a traceback)


def test_an_override_ending_in_a_colon_is_its_text():
    """`prompts.train=file:` read as YAML is the mapping {file: null}; it is the text the user typed."""
    with pytest.raises(ConfigError, match=r"'prompts.train' = 'file:': prompt source names no file"):
        load_config(DEMO, ["prompts.train=file:"])
    with pytest.raises(ConfigError, match=r"'policy.device' = 'cuda:': must be a torch device"):
        load_config(DEMO, ["policy.device=cuda:"])
    assert load_config(DEMO, ["prompts.eval={a: 'shapes-eval:heldout'}"]).prompts.eval == {"a": "shapes-eval:heldout"}


@pytest.mark.parametrize("override, message", [
    ("output_dir=", r"'output_dir' = '': is empty"),  # it used to train into the working directory
    ("policy.checkpoint=", r"'policy.checkpoint' = '': is empty"),
    ("output_dir=~nosuchuser/x", r"starts with ~nosuchuser, but this machine has no user 'nosuchuser'"),
])
def test_paths_that_name_no_place_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DEMO, [override])


def test_a_directory_given_as_the_config_is_named_as_one(tmp_path):
    with pytest.raises(ConfigError, match="is a directory, not a config file"):  # it said "no such config file"
        load_config(str(tmp_path))


def test_what_rlalign_writes_reads_back_the_same_in_yaml_1_2_and_1_1():
    """A checkpoint's config.yaml, `rlalign config` and the API's overrides are written by yaml12.dump: a
    string either YAML version reads as another type is quoted, so nothing changes type on the way back."""
    import yaml

    from rlalign.api import _yaml_value
    from rlalign.config import yaml12

    data = {"run_name": "1e-4", "flag": "on", "octal": "0o7", "eleven": "010", "rate": 1e-5, "steps": 10, "on": True,
            "limit": float("inf"), "words": "a red circle"}
    text = yaml12.dump(data)
    assert yaml12.load(text) == data and yaml.safe_load(text) == data
    assert load_config(DEMO, [f"logging.run_name={_yaml_value('1e-4')}"]).logging.run_name == "1e-4"


def test_every_user_path_is_expanded_and_refused_alike(monkeypatch, tmp_path):
    """One rule (rlalign.utils.files.user_path) for the config's paths, --resume, --adapter, sweep --out and
    Python's load_adapter: `~` and `$VARS` expand; empty, unset and `~NOUSER` are refused naming the input."""
    from rlalign.training.checkpoint import resume_path
    from rlalign.utils.files import PathInputError, user_path

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("RUNS", "~/runs")  # a ~ brought in by a variable: a shell would not expand it either
    monkeypatch.delenv("NOT_SET", raising=False)
    assert user_path("~/x", "--out") == str(tmp_path / "x") and resume_path("$HOME/run") == tmp_path / "run"
    for value, problem in [("", "is empty"), ("$NOT_SET/x", "NOT_SET that are not set"),
                           ("~nosuchuser/x", "no user 'nosuchuser'"), ("$RUNS/x", "a ~ that an environment variable")]:
        with pytest.raises(PathInputError, match=rf"^--adapter '{re.escape(value)}': .*{problem}"):
            user_path(value, "--adapter")
