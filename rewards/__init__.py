"""Reward functions and their registry (docs/rewards.md).

Every reward follows TRL's convention, `fn(prompts, completions, **kwargs) -> list[float | None]`,
so TRL's own reward functions plug in unchanged. `REGISTRY` maps a name to a factory that takes the
reward's config spec (rlalign.config.RewardSpec) and returns such a function; a spec may instead
name any importable `module:function`, which is used as the reward function itself with the spec's
`args` bound as keyword arguments, or `module:function()`, a factory called once with the spec's
`args` whose result is the reward function (TRL's `get_repetition_penalty_reward(ngram_size=...)`,
`get_soft_overlong_punishment(...)`, `get_cosine_scaled_reward(...)` are such factories).
"""

from __future__ import annotations

import functools
import importlib
from typing import Any, Callable

# Imported under another name so that `rewards.shapes_eval` stays the module.
from rewards.shapes_eval import shapes_eval as _shapes_eval

RewardFn = Callable[..., list]


def _shapes_eval_factory(spec: Any) -> RewardFn:
    return functools.partial(_shapes_eval, **spec.args)


# The CLIP-based rewards import open_clip (and torchvision) when first built, not when `rewards` is
# imported: that import takes seconds and most users of this package never build them.
def _clip_score_factory(spec: Any) -> RewardFn:
    from rewards.clip import clip_score_factory

    return clip_score_factory(spec)


def _aesthetic_factory(spec: Any) -> RewardFn:
    from rewards.aesthetic import aesthetic_factory

    return aesthetic_factory(spec)


REGISTRY: dict[str, Callable[[Any], RewardFn]] = {
    "shapes_eval": _shapes_eval_factory,
    "clip_score": _clip_score_factory,
    "aesthetic": _aesthetic_factory,
}
"""name -> factory(spec) -> reward function."""

EVAL_ONLY: frozenset[str] = frozenset({"shapes_eval"})
"""Rewards that are evaluation ground truth: the config refuses them as trained rewards."""


def build_reward(spec: Any) -> RewardFn:
    """The reward function a spec (name, args, ...) asks for."""
    if spec.name in REGISTRY:
        return REGISTRY[spec.name](spec)
    module_name, _, attribute = spec.name.partition(":")
    if not attribute:
        raise KeyError(f"unknown reward {spec.name!r}; registered: {', '.join(sorted(REGISTRY))}, "
                       "module:function or module:factory()")
    is_factory = attribute.endswith("()")
    try:
        fn = getattr(importlib.import_module(module_name), attribute.removesuffix("()"))
    except (ImportError, AttributeError) as error:
        raise KeyError(f"reward {spec.name!r} cannot be imported: {error}") from None
    if not callable(fn):
        raise TypeError(f"reward {spec.name!r} is a {type(fn).__name__}, not a function; name a function "
                        f"fn(prompts, completions, **kwargs) or a factory module:factory() that returns one")
    if not is_factory:
        return functools.partial(fn, **spec.args) if spec.args else fn
    try:
        reward = fn(**spec.args)
    except (TypeError, ValueError) as error:
        raise ValueError(f"reward factory {spec.name!r} refused args {spec.args}: {error}") from error
    if not callable(reward):
        raise TypeError(f"reward factory {spec.name!r} returned a {type(reward).__name__}, not a reward function; "
                        f"name a plain function without '()' to bind args to it instead")
    return reward
