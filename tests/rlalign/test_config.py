"""Config loading: every error class names its key; overrides, files and docs behave."""

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from rlalign.config import Config, ConfigError, derived_sizes, load_config
from rlalign.config.loading import field_docs

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"rewards": {"functions": [{"name": "rlalign.rewards.examples:saturation"}]}}


def load(*overrides, base=None):
    return load_config(base if base is not None else MINIMAL, list(overrides))


def error_of(*overrides, base=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(*overrides, base=base)
    return info.value


# -- each error class names the key (and the value) --------------------------------------------


@pytest.mark.parametrize(
    "override, key, words",
    [
        ("grpo.gruop_size=4", "grpo.gruop_size", "did you mean 'group_size'"),  # unknown nested key
        ("sede=3", "sede", "did you mean 'seed'"),  # unknown top-level key
        ("train.steps=abc", "train.steps", "must be an integer"),  # wrong type
        ("logging.progress_bar=1", "logging.progress_bar", "true or false"),  # int is not a bool
        ("policy.lora.target_modules=mat_qkv", "policy.lora.target_modules", "list of str"),
        ("policy=3", "policy", "must be a mapping"),  # a section given a scalar
        ("grpo.loss_type=ppo", "grpo.loss_type", "one of 'grpo', 'dr_grpo', 'dapo', 'gspo'"),
        ("grpo.prefix_steps=two", "grpo.prefix_steps", "int or 'all'"),
        ("grpo.group_size=1", "grpo.group_size", "≥ 2"),  # out of range
        ("policy.top_p=1.5", "policy.top_p", "> 0 and ≤ 1"),
        ("train.learning_rate=0", "train.learning_rate", "> 0"),
        ("grpo.prefix_steps=0", "grpo.prefix_steps", "≥ 1"),  # impossible combination / value
        ("train.micro_batch_size=7", "train.micro_batch_size", "8 × 8 = 64"),
        ("grpo.clip_eps_high=0.1", "grpo.clip_eps_high", "≥ grpo.clip_eps"),
        ("rollout.ray_address=auto", "rollout.ray_address", "rollout.backend=ray"),
        ("rewards.functions.0.name=shapes_eval", "rewards.functions.0.name", "never be trained on"),
        ("rewards.functions.0.name=no_such_reward", "rewards.functions.0.name", "unknown reward"),
        ("rewards.functions.0.on_error=ignore", "rewards.functions.0.on_error", "'raise', 'skip'"),
        ("rewards.functions.0.weight=0", "rewards.functions", "nonzero weight"),
        ("rewards.functions.2.weight=1", "rewards.functions.2", "no such list entry"),
        ("seed", "seed", "section.key=value"),  # malformed override
        ("seed.x=1", "seed", "is a value, not a section"),
    ],
)
def test_errors_name_the_key(override, key, words):
    error = error_of(override)
    assert error.key == key
    assert f"'{key}'" in str(error) and words in str(error)


def test_missing_rewards_is_an_error():
    assert error_of(base={}).key == "rewards.functions"


def test_duplicate_reward_labels_are_an_error():
    spec = {"name": "rlalign.rewards.examples:saturation"}
    error = error_of(base={"rewards": {"functions": [spec, spec]}})
    assert error.key == "rewards" and "distinct label" in str(error)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grpo: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of sections"):
        load_config(bad)


def test_a_key_given_twice_is_refused_with_both_lines(tmp_path):
    # Plain YAML keeps the last value silently: steps 7 would replace 450 without a word.
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  steps: 450\n  learning_rate: 0.001\n  steps: 7\n")
    with pytest.raises(ConfigError, match=r"key 'steps' is given twice in one section \(lines 2 and 4\)"):
        load_config(path)
    # The same key in two different mappings is fine (name, label, args in each reward).
    path.write_text("train:\n  steps: 5\nrewards:\n  functions:\n"
                    "    - {name: clip_score, label: a, args: {architecture: shapes-clip}}\n"
                    "    - {name: clip_score, label: b, args: {architecture: shapes-clip}}\n")
    cfg = load_config(path)
    assert cfg.train.steps == 5 and [spec.label for spec in cfg.rewards.functions] == ["a", "b"]


# -- values ----------------------------------------------------------------------------------------


def test_overrides_are_typed_and_reach_nested_lists():
    cfg = load("grpo.group_size=4", "train.learning_rate=1e-5", "grpo.prefix_steps=all",
               "rewards.functions.0.weight=2.5", "policy.lora.target_modules=[mat_qkv, fc1]", "grpo.clip_eps_high=0.28")
    assert cfg.grpo.group_size == 4 and cfg.train.learning_rate == 1e-5 and cfg.grpo.prefix_steps == "all"
    assert cfg.rewards.functions[0].weight == 2.5 and cfg.policy.lora.target_modules == ["mat_qkv", "fc1"]
    assert cfg.grpo.clip_eps_high == 0.28


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "grpo": {"group_size": 4}, "train": {"micro_batch_size": 8}}))
    cfg = load_config(path, ["train.prompts_per_step=2"])
    assert (cfg.grpo.group_size, cfg.train.micro_batch_size, cfg.train.prompts_per_step) == (4, 8, 2)
    assert derived_sizes(cfg) == {"samples_per_step": 8, "micro_batches_per_step": 1,
                                  "optimizer_steps_per_step": 1, "total_samples": 8 * cfg.train.steps}


# -- every field documented once; every shipped config loads -------------------------------------


def sections(cls=Config):
    yield cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = typing.get_args(hints[f.name]) or (hints[f.name],)
        for tp in inner:
            if dataclasses.is_dataclass(tp):
                yield from sections(tp)


def test_every_field_has_a_docstring():
    from rlalign.policies.edit_flow.settings import EditFlowSettings
    from rlalign.policies.infinity.settings import InfinitySettings

    for cls in set(sections()) | {EditFlowSettings, InfinitySettings}:
        docs = field_docs(cls)
        missing = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_config_reference_doc_is_current():
    # docs/config.md is generated; rerun `python scripts/gen_config_docs.py` after editing the schema or a
    # family's settings.
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_config_docs", ROOT / "scripts" / "gen_config_docs.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (ROOT / "docs" / "config.md").read_text() == generator.markdown()


CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))


def test_configs_exist():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_and_has_a_header(path):
    load_config(path)
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line)
    text = "\n".join(header)
    assert "Purpose:" in text and "Launch:" in text, f"{path.name} needs a '# Purpose: / # Launch:' header"



def test_a_dict_valued_field_is_replaced_whole_with_or_without_overrides(tmp_path):
    # prompts.eval is a value, not a section: the file's eval sets must not gain the default
    # heldout/train sets just because an override (here output_dir) made the loader merge defaults.
    path = tmp_path / "c.yaml"
    path.write_text("prompts:\n  eval: {tiny: 'shapes-eval:heldout'}\ngrpo: {group_size: 4}\n"
                    "rewards:\n  functions: [{name: clip_score}]\n")
    assert load_config(str(path)).prompts.eval == {"tiny": "shapes-eval:heldout"}
    cfg = load_config(str(path), ["output_dir=runs/x"])
    assert cfg.prompts.eval == {"tiny": "shapes-eval:heldout"} and cfg.grpo.group_size == 4
    assert cfg.grpo.beta == Config().grpo.beta  # sections still merge over the defaults
