"""The checks a Config passes after its fields are built (each field's own type and bounds are checked
by rlalign.config.loading): combinations of settings, prompt sources and reward names, and the paths
expanded (`~`, `$VARS`). `load_config` (schema.py) runs them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rlalign.config.families import family_problem
from rlalign.config.loading import ConfigError
from rlalign.utils.files import PathInputError, user_path

if TYPE_CHECKING:
    from rlalign.config.schema import Config, GrpoConfig, PromptsConfig, RewardsConfig

FAMILY_SECTIONS = ("insertion", "edit_flow", "infinity")
"""PolicyConfig fields that hold one built-in family's own settings (named as the family's kind)."""


def check_combinations(cfg: Config) -> None:
    """Constraints that span several fields."""
    problem = family_problem(cfg.policy.kind)
    if problem:
        raise ConfigError("policy.kind", cfg.policy.kind, problem)
    if not DEVICE.match(cfg.policy.device):
        raise ConfigError("policy.device", cfg.policy.device, "must be a torch device: cpu, cuda, cuda:N, mps, xpu or xpu:N")
    for section in FAMILY_SECTIONS:  # a section the chosen family never reads would be silently ignored
        if getattr(cfg.policy, section) and cfg.policy.kind != section:
            raise ConfigError(f"policy.{section}", getattr(cfg.policy, section),
                              f"is read by policy.kind={section} only, and this config's kind is "
                              f"{cfg.policy.kind}: remove the section (or set policy.kind: {section})")
    samples = cfg.train.prompts_per_step * cfg.grpo.group_size
    if samples % cfg.train.micro_batch_size:
        raise ConfigError(
            "train.micro_batch_size",
            cfg.train.micro_batch_size,
            f"must divide the samples per step, train.prompts_per_step × grpo.group_size = "
            f"{cfg.train.prompts_per_step} × {cfg.grpo.group_size} = {samples}",
        )
    prefix = cfg.grpo.prefix_steps
    if isinstance(prefix, int) and prefix < 1:
        raise ConfigError("grpo.prefix_steps", prefix, "must be ≥ 1 (the number of trained steps) or 'all'")
    _check_loss_settings(cfg.grpo)
    if not cfg.rewards.functions:
        raise ConfigError("rewards.functions", [], "needs at least one reward to train on")
    _check_reward_names(cfg.rewards)
    if all(spec.weight == 0 for spec in cfg.rewards.functions):
        raise ConfigError("rewards.functions", "all weights 0", "at least one trained reward needs a nonzero weight")
    labels = [spec.label or spec.name for spec in cfg.rewards.functions + cfg.rewards.eval]
    duplicated = sorted({label for label in labels if labels.count(label) > 1})
    if duplicated:
        raise ConfigError("rewards", duplicated, "each reward needs a distinct label (set `label:` to tell them apart)")
    if cfg.rollout.backend == "local" and cfg.rewards.backend == "local" and cfg.rollout.ray_address:
        raise ConfigError("rollout.ray_address", cfg.rollout.ray_address,
                          "is only used with rollout.backend=ray or rewards.backend=ray")
    if cfg.rollout.backend == "ray" and cfg.rollout.shards not in (0, cfg.rollout.num_workers):
        raise ConfigError("rollout.shards", cfg.rollout.shards, f"the Ray backend samples one shard per actor; use 0 "
                          f"(or rollout.num_workers = {cfg.rollout.num_workers}) with rollout.backend=ray")
    _check_prompt_sources(cfg.prompts)


def _check_loss_settings(grpo: GrpoConfig) -> None:
    high = grpo.clip_eps_high
    if grpo.loss_type == "cispo":
        if high is None or not 1 <= high < 100:
            raise ConfigError("grpo.clip_eps_high", high, "cispo caps the ratio at ε_max = grpo.clip_eps_high: set "
                              "it to a ratio ≥ 1 (5.0 in the ScaleRL paper; TRL would silently cap at clip_eps)")
    elif high is not None and not grpo.clip_eps <= high < 10:
        raise ConfigError("grpo.clip_eps_high", high, f"must be ≥ grpo.clip_eps = {grpo.clip_eps} (or null)")
    if grpo.dr_grpo_length is not None and (grpo.loss_type != "dr_grpo" or grpo.dr_grpo_length < 1):
        raise ConfigError("grpo.dr_grpo_length", grpo.dr_grpo_length,
                          "is dr_grpo's constant normaliser: a length ≥ 1, with grpo.loss_type=dr_grpo (or null)")


DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")


def _check_prompt_sources(prompts_cfg: PromptsConfig) -> None:
    from rlalign.tasks import parse_prompt_source, resolve_task

    if prompts_cfg.task is not None:
        try:
            resolve_task(prompts_cfg.task)
        except ValueError as error:
            message = str(error).removeprefix(f"prompts.task={prompts_cfg.task!r}").lstrip(": ")
            raise ConfigError("prompts.task", prompts_cfg.task, message) from None
    sources = {"prompts.train": prompts_cfg.train, **{f"prompts.eval.{k}": v for k, v in prompts_cfg.eval.items()}}
    for key, source in sources.items():
        try:
            parse_prompt_source(source, prompts_cfg.task)
        except (ValueError, FileNotFoundError) as error:
            raise ConfigError(key, source, str(error)) from None


def _check_reward_names(rewards_cfg: RewardsConfig) -> None:
    from rlalign.rewards.registry import EVAL_ONLY, REGISTRY  # imported here: only needed to check names

    for section in ("functions", "eval"):
        for index, spec in enumerate(getattr(rewards_cfg, section)):
            key = f"rewards.{section}.{index}.name"
            if spec.name not in REGISTRY and ":" not in spec.name:
                raise ConfigError(
                    key, spec.name, f"unknown reward; registered: {', '.join(sorted(REGISTRY))}, "
                    "or give an importable module:function"
                )
            if section == "functions" and spec.name in EVAL_ONLY:
                raise ConfigError(key, spec.name, "is evaluation ground truth and may never be trained on; "
                                  "list it under rewards.eval instead")


def _expand_path(key: str, value: str) -> str:
    """A config path expanded (rlalign.utils.files.user_path), its refusal as this key's ConfigError."""
    try:
        return user_path(value, key)
    except PathInputError as error:
        raise ConfigError(key, value, error.problem) from None


def expand_paths(cfg: Config) -> None:
    """Expand `~` and environment variables in the settings that are paths (output_dir, checkpoints)."""
    cfg.output_dir = _expand_path("output_dir", cfg.output_dir)
    if not cfg.policy.checkpoint.startswith("builtin:"):
        cfg.policy.checkpoint = _expand_path("policy.checkpoint", cfg.policy.checkpoint)
    if cfg.policy.vae_checkpoint:
        cfg.policy.vae_checkpoint = _expand_path("policy.vae_checkpoint", cfg.policy.vae_checkpoint)
