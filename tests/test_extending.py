"""Extending rlalign from outside its source tree (docs/extending.md): a policy family named by
`module:Class`, and the errors a wrong name gets."""

from __future__ import annotations

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.config.loading import ConfigError
from rlalign.policies import declared_num_steps, load_policy
from rlalign.training.trainer import Trainer
from rlalign.utils.metrics import read_metrics

EXTERNAL = "support.external_family:CountingNextScale"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def test_a_family_from_outside_trains_through_the_trainer(tmp_path, tiny_checkpoint):
    cfg = tiny_config(tmp_path, tiny_checkpoint, **{"policy.kind": EXTERNAL, "train.steps": 2})
    assert declared_num_steps(cfg.policy) == 6  # the family's own answer (the tiny model's scales), no weights loaded
    trainer = Trainer(cfg)
    trainer.run()
    assert type(trainer.policy).__name__ == "CountingNextScale"
    assert trainer.policy.rollouts >= 2  # its rollout ran (training steps and evaluations)
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "time/step" in r]
    assert steps == [1, 2]


@pytest.mark.parametrize("kind, message", [
    ("next_scal", r"did you mean 'next_scale'\? It is neither a registered family \(next_scale, insertion, edit_flow, "
                  r"infinity\) nor `module:Class`"),
    ("support.no_such_module:Family", r"cannot import 'support.no_such_module'.*Python path"),
    ("support.external_family:NotAFamily", r"NotAFamily is no family class \(it lacks from_config, declared_num_steps"),
    ("support.external_family:Missing", r"has no attribute 'Missing'$"),
])
def test_a_wrong_family_name_says_what_was_tried(tmp_path, tiny_checkpoint, kind, message):
    if ":" not in kind:  # caught when the config loads, like a misspelt reward
        with pytest.raises(ConfigError, match=message):
            tiny_config(tmp_path, tiny_checkpoint, **{"policy.kind": kind})
        return
    cfg = tiny_config(tmp_path, tiny_checkpoint, **{"policy.kind": kind})
    with pytest.raises(ValueError, match=message):
        load_policy(cfg.policy)


def test_rlalign_score_asks_the_family_for_a_text_policys_word_ids():
    """`rlalign score` on captions gets rewards' completion_ids from the family's own hook (no family name
    is written into the command): the insertion family's ids equal its policy's; an image family has none."""
    from rlalign.commands.score import _caption_tokenizer
    from rlalign.config.loading import build
    from rlalign.config.schema import PolicyConfig

    captioner = build(PolicyConfig, {"kind": "insertion", "checkpoint": "builtin:shapes-captioner"})
    texts = ["a red circle", "two blue squares"]
    assert _caption_tokenizer(captioner)(texts) == load_policy(captioner).completion_tokenizer()(texts)
    assert _caption_tokenizer(build(PolicyConfig, {})) is None


def test_an_installed_packages_entry_point_names_a_family(tmp_path, tiny_checkpoint, monkeypatch):
    """A package that declares `[project.entry-points."rlalign.policies"] counting = "module:Class"` is found
    by its name once installed; an installed distribution here is its dist-info folder on the path."""
    dist_info = tmp_path / "site" / "rlalign_counting-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: rlalign-counting\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[rlalign.policies]\ncounting = {EXTERNAL}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    cfg = tiny_config(tmp_path, tiny_checkpoint, **{"policy.kind": "counting"})
    assert type(load_policy(cfg.policy)).__name__ == "CountingNextScale"
    with pytest.raises(ConfigError, match=r"installed: counting\) nor"):
        tiny_config(tmp_path, tiny_checkpoint, **{"policy.kind": "countin"})


def test_a_familys_own_settings_are_checked_by_it_with_the_schemas_messages():
    """`policy.edit_flow` / `policy.infinity` are mappings the schema passes on; the family checks them as
    the schema checks its own sections (unknown keys with a suggestion, bounds), naming the full key."""
    from rlalign.config.loading import build
    from rlalign.config.schema import PolicyConfig
    from rlalign.policies.infinity.settings import settings

    typo = build(PolicyConfig, {"kind": "infinity", "infinity": {"resolutio": "1M"}})
    with pytest.raises(ConfigError, match=r"'policy.infinity.resolutio'.*did you mean 'resolution'"):
        settings(typo)
    with pytest.raises(ConfigError, match=r"'policy.infinity.num_scales' = -1: must be ≥ 0"):
        settings(build(PolicyConfig, {"kind": "infinity", "infinity": {"num_scales": -1}}))


# -------------------------------------------------------------------------------------------------
# A task of your own: prompt source, verifier and categories, through `rlalign eval`
# -------------------------------------------------------------------------------------------------

TASK = "support.external_task:TASK"


def test_a_task_from_outside_gets_the_same_per_category_tables_through_rlalign_eval(tmp_path, tiny_checkpoint):
    """An external task's eval set gets a GenEval-style table (its categories, base vs adapter, 95%
    intervals) exactly like a built-in task's set evaluated beside it."""
    import yaml

    from rlalign.cli import main
    from rlalign.config import to_dict

    cfg = tiny_config(tmp_path, tiny_checkpoint, **{
        "prompts.task": TASK, "prompts.eval": {"colours": "colour-words:heldout",
                                               "position": "shapes-eval:heldout:position"}})
    config = tmp_path / "task.yaml"
    config.write_text(yaml.safe_dump(to_dict(cfg)))
    policy = load_policy(cfg.policy)
    policy.save_adapter(tmp_path / "adapter")
    out = tmp_path / "eval"
    assert main(["eval", str(config), "--adapter", str(tmp_path / "adapter"), "--out", str(out)]) == 0
    metrics = __import__("json").loads((out / "eval.json").read_text())
    # The external judge's categories in the order of Task.categories (red, green, blue), those present.
    colour_rows = [k for k in metrics if k.startswith("eval/colours/") and k.endswith("/exact") and "/base/" not in k]
    assert colour_rows == ["eval/colours/exact", "eval/colours/red/exact", "eval/colours/blue/exact"]
    assert metrics["eval/colours/samples"] == 2 * 2 and metrics["eval/position/samples"] > 0
    from rlalign.evaluation.run_report import geneval_table

    tables = {name: geneval_table(metrics, name) for name in ("colours", "position")}
    (colour_lines, colour_numbers), (shapes_lines, shapes_numbers) = tables["colours"], tables["position"]
    assert list(colour_numbers) == ["red", "blue", "overall"] and list(shapes_numbers) == ["position", "overall"]
    assert colour_lines[2].splitlines()[:2] == shapes_lines[2].splitlines()[:2]  # the same header and columns
    assert set(colour_numbers["overall"]) == set(shapes_numbers["overall"])  # base, final, both intervals, samples


def test_a_task_from_outside_owns_its_prompt_kind_only_where_it_is_named(tmp_path, tiny_checkpoint):
    from rlalign.tasks import parse_prompt_source

    assert parse_prompt_source("colour-words:train", TASK).all() == ["a red circle", "a green square"]
    with pytest.raises(ValueError, match=r"is not one of: file:PATH.*shapes:SPLIT.*sums:SPLIT"):
        parse_prompt_source("colour-words:train")  # without the task, the kind is unknown
    with pytest.raises(ConfigError, match=r"prompts\.task.*did you mean 'shapes'"):
        tiny_config(tmp_path, tiny_checkpoint, **{"prompts.task": "shape"})
    with pytest.raises(ConfigError, match=r"prompts\.task.*names a dict, not an rlalign.tasks.Task"):
        tiny_config(tmp_path, tiny_checkpoint, **{"prompts.task": "support.external_task:PROMPTS"})


def test_a_users_own_rewards_and_rollouts_modules_do_not_shadow_rlaligns(tmp_path):
    """rewards/ and rollouts/ install as rlalign.rewards and rlalign.rollouts, so modules named `rewards`
    and `rollouts` in the working directory (first on sys.path under `python -m`) are never imported."""
    import subprocess
    import sys
    from pathlib import Path

    for name in ("rewards", "rollouts"):
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the user\\'s {name}.py was imported')\n")
    config = Path(__file__).resolve().parents[1] / "configs" / "shapes_nextscale.yaml"
    done = subprocess.run([sys.executable, "-m", "rlalign.cli", "config", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "rewards:" in done.stdout and "was imported" not in done.stderr


@pytest.mark.parametrize("override, message", [
    ({"policy.edit_flow": {"tau": 0.1}}, r"policy\.edit_flow.*read by policy\.kind=edit_flow only.*kind is next_scale"),
    ({"policy.insertion": {"steps": 4}}, r"policy\.insertion.*read by policy\.kind=insertion only"),
    ({"policy.insertion_steps": 4}, r"unknown key \(did you mean 'insertion'\?\)"),  # the key before it moved
])
def test_a_family_section_the_chosen_family_never_reads_is_refused(tmp_path, tiny_checkpoint, override, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, tiny_checkpoint, **override)
