"""Reward functions and their registry (docs/rewards.md).

Every reward follows TRL's convention, `fn(prompts, completions, **kwargs) -> list[float | None]`,
so TRL's own reward functions plug in unchanged. A spec names a reward as an importable
`module:function`, used as the reward itself with the spec's `args` bound as keyword arguments,
or as `module:factory()`, called once with the spec's `args` to return the reward (TRL's
`get_repetition_penalty_reward(ngram_size=...)` is such a factory; so is a class whose instances
are rewards). `REGISTRY` only gives short names to such import strings, so registered and
user-given rewards are resolved, and their args checked against the signature, by the same code.

Nothing heavy is imported here (the built-in tasks, for their reward names, and nothing else): a reward's module (open_clip, scipy, ...) is imported when the
reward is built, so this module (the config validates names against `REGISTRY`) stays cheap.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlalign.tasks.registry import builtin_tasks

RewardFn = Callable[..., list]

GENERAL: dict[str, str] = {
    "clip_score": "rlalign.rewards.clip:ClipScore()",
    "aesthetic": "rlalign.rewards.aesthetic:AestheticScore()",
}
"""Rewards of no particular task: name -> `module:function` or `module:factory()`."""

REGISTRY: dict[str, str] = {**GENERAL, **{name: target for task in builtin_tasks() for name, target in task.rewards.items()}}
"""Every registered name: the general rewards and those the built-in tasks declare (Task.rewards,
e.g. `shapes_eval` in rlalign/tasks/shapes/__init__.py); adding a reward is adding an entry to one."""

EVAL_ONLY: frozenset[str] = frozenset(name for task in builtin_tasks() for name in task.eval_only)
"""Rewards that are evaluation ground truth (the tasks' verifiers): the config refuses them as trained rewards."""

CALL_ARGS = frozenset({"prompts", "completions"})
"""What every call passes (by keyword, as GRPOTrainer does): never a spec's `args`."""
KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


CALLABLE_PREFIX = "python:"
"""Spec names of rewards given as Python objects (rlalign.api), which only their object can rebuild."""


def build_reward(spec: Any, callables: dict[str, Callable] | None = None) -> RewardFn:
    """The reward function a spec (name, args, ...) asks for; bad args fail here, not at the first call.

    `callables` holds the objects of rewards given in Python (`python:NAME` specs, rlalign.api)."""
    if spec.name.startswith(CALLABLE_PREFIX):
        fn = (callables or {}).get(spec.name)
        if fn is None:
            raise KeyError(f"reward {spec.name!r} was a Python function given to rlalign's Python API "
                           "(reward_funcs=[...]); a config cannot rebuild it: pass the same function again "
                           "(rlalign.GRPOTrainer(..., reward_funcs=[...])), or name an importable module:function")
        check_args(spec.name, fn, spec.args, is_factory=False)
        return functools.partial(fn, **spec.args) if spec.args else fn
    target = REGISTRY.get(spec.name, spec.name)
    fn, is_factory = _resolve(spec.name, target)
    _check_extras(spec.name, fn)
    check_args(spec.name, fn, spec.args, is_factory)
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


def _resolve(name: str, target: str) -> tuple[Callable, bool]:
    """The callable `module:attribute` or `module:attribute()` names, and whether it is a factory."""
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise KeyError(f"unknown reward {name!r}; registered: {', '.join(sorted(REGISTRY))}, "
                       "module:function or module:factory()")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if error.name and module_name.startswith(error.name):  # the module itself is not on the path
            raise KeyError(f"reward {name!r} cannot be imported: {error}; looked on the Python path: the working "
                           f"directory ({Path.cwd()}), PYTHONPATH and the installed packages") from None
        raise KeyError(f"reward {name!r}: importing {module_name!r} failed: {error}") from error
    fn = getattr(module, attribute.removesuffix("()"), None)
    if fn is None:
        raise KeyError(f"reward {name!r} cannot be imported: module {module_name!r} ({getattr(module, '__file__', '')}) "
                       f"has no attribute {attribute.removesuffix('()')!r}") from None
    if not callable(fn):
        raise TypeError(f"reward {name!r} is a {type(fn).__name__}, not a function; name a function "
                        f"fn(prompts, completions, **kwargs) or a factory module:factory() that returns one")
    return fn, attribute.endswith("()")


MATH_READERS = ("trl.rewards.accuracy_rewards",)
"""Modules whose rewards parse LaTeX answers with math-verify, which rlalign installs only as the `math` extra."""


def _check_extras(name: str, fn: Callable) -> None:
    if getattr(fn, "__module__", "") in MATH_READERS and importlib.util.find_spec("math_verify") is None:
        raise ImportError(f"reward {name!r} parses answers with math-verify, which is not installed; "
                          "install rlalign's math extra: pip install 'rlalign[math]' (or pip install math-verify)")


def reads_conversations(fn: Callable) -> bool:
    """Whether `fn` is one of TRL's own rewards that read conversational completions, i.e. lists of
    messages (`completion[0]["content"]`): a `trl.rewards` function or reward object that takes
    `completions` (those taking only `completion_ids`, like the repetition penalty, read token ids)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    owner = fn if inspect.isfunction(fn) else type(fn)
    if not (getattr(owner, "__module__", "") or "").startswith("trl.rewards"):
        return False
    try:
        return "completions" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def check_args(name: str, fn: Callable, args: dict, is_factory: bool) -> None:
    """Refuse args the signature cannot take, naming them and the accepted ones.

    A factory's args must bind to its signature (unknown and missing required ones fail). A plain
    reward function's args are bound before `prompts` and `completions`; its other parameters may
    be filled at call time from the batch's metadata (`scenes=`, a dataset column), so only unknown
    args fail, and none do when it takes `**kwargs`.
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: calling them is the only check
        return
    parameters = [p for p in signature.parameters.values() if is_factory or p.name not in CALL_ARGS]
    signature = signature.replace(parameters=parameters)
    try:
        if is_factory:
            signature.bind(**args)
        else:
            signature.bind_partial(**args)
    except TypeError as error:
        raise ValueError(_args_error(name, parameters, args, is_factory, error)) from None
    _check_boolean_args(name, parameters, args)


def _check_boolean_args(name: str, parameters: list[inspect.Parameter], args: dict) -> None:
    """Refuse text for a parameter that is a boolean (annotated `bool`, or with a bool default): config
    YAML is read as YAML 1.2, where `on`, `off`, `yes`, `no` are strings, and any non-empty string is
    true, so `use_logit_scale: off` would silently mean the opposite."""
    for parameter in parameters:
        value = args.get(parameter.name)
        is_boolean = parameter.annotation in (bool, "bool") or isinstance(parameter.default, bool)
        if is_boolean and isinstance(value, str):
            raise ValueError(f"reward {name!r}: args.{parameter.name} = {value!r} is text, but the parameter is a "
                             "boolean; write true or false (config files are YAML 1.2: on, off, yes and no are "
                             "text there)")


def _args_error(name: str, parameters: list[inspect.Parameter], args: dict, is_factory: bool,
                error: TypeError) -> str:
    """What is wrong with a spec's args, what is accepted, and what to do."""
    accepted = [p.name for p in parameters if p.kind in KEYWORD_KINDS]
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    unknown = [] if takes_any else sorted(set(args) - set(accepted))
    missing = [p.name for p in parameters if is_factory and p.kind in KEYWORD_KINDS
               and p.default is p.empty and p.name not in args]
    problems = []
    if unknown:
        problems.append(f"unknown args {unknown} (remove or rename them)")
    if missing:
        problems.append(f"missing required args {missing} (add them)")
    accepted_text = ", ".join(accepted) if accepted else "none"
    return (f"reward {name!r}: {'; '.join(problems) or error}; it accepts {accepted_text}"
            f"{' and any other keyword' if takes_any else ''} in the spec's `args` "
            "(docs/rewards.md lists the registered rewards' args)")
