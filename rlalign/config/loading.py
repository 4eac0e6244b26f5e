"""Machinery behind rlalign/config/schema.py: typed construction of dataclass trees from YAML and overrides.

The schema lives in config.py; this module knows nothing about its sections. It checks types from
the annotations (bool, int, float, str, Literal, Union/Optional, list[...], dict[str, ...], nested
dataclasses), numeric bounds from field metadata, and rejects unknown keys with a suggestion.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import difflib
import inspect
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

import rlalign.config.yaml12 as yaml12


class ConfigError(ValueError):
    """A config value that cannot be used; the message names the key, the value and what is allowed."""

    def __init__(self, key: str, value: Any, problem: str):
        self.key, self.value, self.problem = key, value, problem
        super().__init__(f"config key '{key}' = {value!r}: {problem}")


class _NotFinite(ConfigError):
    """A number of the right type that is inf or nan: a `float | None` setting reports this, not its types."""


_BOUND_WORDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def bounded(default: Any, **bounds: float) -> Any:
    """A dataclass field with numeric bounds (ge, gt, le, lt) checked at load time."""
    unknown = set(bounds) - set(_BOUND_WORDS)
    if unknown:
        raise TypeError(f"unknown bound(s) {sorted(unknown)}")
    return dataclasses.field(default=default, metadata={"bounds": bounds})


def _check_bounds(key: str, value: Any, bounds: dict[str, float]) -> None:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    tests = {"ge": value >= bounds.get("ge", value), "gt": "gt" not in bounds or value > bounds["gt"],
             "le": value <= bounds.get("le", value), "lt": "lt" not in bounds or value < bounds["lt"]}
    if not all(tests.values()):
        allowed = " and ".join(f"{_BOUND_WORDS[name]} {limit}" for name, limit in bounds.items())
        raise ConfigError(key, value, f"must be {allowed}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check (and lightly convert) one value against its annotation."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(key, value, f"must be one of {', '.join(repr(a) for a in args)}")
        return value
    if origin in (Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(arm, value, key)
            except _NotFinite:
                raise  # the value has the float arm's type; "must be float or null" would hide why it is refused
            except ConfigError:
                continue
        raise ConfigError(key, value, f"must be {_type_name(tp)}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(key, value, f"must be a list of {_type_name(args[0])}")
        return [_coerce(args[0], item, f"{key}.{i}") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(key, value, "must be a mapping with string keys")
        return {k: _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(tp, value, key)


def _coerce_scalar(tp: Any, value: Any, key: str) -> Any:
    if tp is type(None):
        if value is not None:
            raise ConfigError(key, value, "must be null")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            hint = " (YAML 1.2: yes, no, on and off are strings)" if str(value).lower() in yaml12.YAML_11_BOOLS else ""
            raise ConfigError(key, value, f"must be true or false{hint}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, value, "must be an integer")
        return value
    if tp is float:
        # A quoted number ("1e-4", or a dict from Python) is accepted as any string Python reads as a float.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(key, value, "must be a number") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, value, "must be a number")
        if not math.isfinite(value):  # .inf / .nan would reach the optimizer or the sampler as they are
            raise _NotFinite(key, value, "must be a finite number (inf and nan are not settings)")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, value, "must be a string")
        return value
    raise TypeError(f"config annotation {tp!r} of '{key}' is not supported")


def _build_dataclass(cls: type, raw: Any, key: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(key or "<root>", raw, f"must be a mapping with keys {', '.join(_field_names(cls))}")
    names = _field_names(cls)
    for name in raw:
        if name not in names:
            near = difflib.get_close_matches(str(name), names, n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            where = f"'{key}'" if key else "the top level"
            raise ConfigError(_join(key, name), raw[name], f"unknown key{hint}; allowed keys in {where}: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in raw:
            sub = _join(key, f.name)
            values[f.name] = _coerce(hints[f.name], raw[f.name], sub)
            _check_bounds(sub, values[f.name], f.metadata.get("bounds", {}))
    return cls(**values)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _join(prefix: str, name: Any) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a config file" if path.is_dir() else "no such config file"
        raise ConfigError("<file>", str(path), f"{what}; pass the path of a YAML file (see configs/)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError("<file>", str(path), f"is not UTF-8 text (byte {error.object[error.start]:#x} at offset "
                          f"{error.start}); save it as UTF-8") from None
    except PermissionError:
        raise ConfigError("<file>", str(path), "cannot be read (permission denied); check the file's permissions") from None
    try:
        raw = yaml12.load(text) or {}
    except yaml12.DuplicateKeyError as error:
        raise ConfigError("<file>", str(path), str(error)) from None
    except yaml.YAMLError as error:
        raise ConfigError("<file>", str(path), f"is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigError("<file>", str(path), "must hold a mapping of sections (policy:, grpo:, ...)")
    # Top-level `x-NAME:` keys hold YAML anchors for merge keys (`x-common: &common {...}`, then
    # `<<: *common`), as docker-compose files do; they are not settings.
    return {key: value for key, value in raw.items() if not (isinstance(key, str) and key.startswith("x-"))}


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.c=value` in a raw config dict; the value is read as YAML (`4`, `true`, `[a, b]`)."""
    if "=" not in override:
        raise ConfigError(override, None, "an override must look like section.key=value")
    dotted, text = override.split("=", 1)
    parts = dotted.strip().split(".")
    if not all(parts):
        raise ConfigError(dotted, text, "an override key must be dotted names like grpo.group_size")
    value = yaml12.load(text) if text.strip() else ""  # YAML 1.2 scalars, as in files
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        # `prompts.train=file:` or `policy.device=cuda:` read as YAML is the mapping {file: null}; a mapping
        # on the command line is written in braces, so this is the text the user typed (its check names it).
        value = text.strip()
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: depth + 1]))
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, dotted)] = value
    else:
        node[last] = value


def _child(node: Any, part: str, key: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node.get(part, {}), (dict, list)):
        raise ConfigError(key, node[part], "is a value, not a section; cannot set keys below it")
    return node.setdefault(part, {})


def _index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(key, part, f"no such list entry: the list has {len(node)} (indices from 0)")
    return int(part)


def _defaults_as_raw(cls: type) -> dict:
    return to_dict(cls())


def build(cls: type, source: str | Path | dict | None, overrides: typing.Iterable[str] = ()) -> Any:
    """Build dataclass `cls` from a YAML path, a dict or nothing, then `key=value` overrides.

    Overrides apply on top of the file's values merged over the defaults, so a list in the
    defaults (e.g. rewards.functions) can be indexed by an override even if the file omits it.
    """
    if source is None:
        raw: dict = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = _read_yaml(source)
    if overrides:
        raw = _merge(_defaults_as_raw(cls), raw, cls)
        for override in overrides:
            apply_override(raw, override)
    return _build_dataclass(cls, raw, "")


def build_section(cls: type, raw: Any, key: str) -> Any:
    """Dataclass `cls` from a mapping found at config key `key` (a family's own section), with the same
    checks and messages as the schema's sections: types, bounds, unknown keys named with a suggestion."""
    return _build_dataclass(cls, copy.deepcopy(raw) if raw is not None else {}, key)


def _merge(base: dict, top: dict, cls: type) -> dict:
    """`top` over `base`, recursing into config sections only: a dict-valued field (prompts.eval)
    is a value, replaced whole, so the file's eval sets never gain the default ones."""
    hints = typing.get_type_hints(cls)
    merged = dict(base)
    for name, value in top.items():
        section = hints.get(name)
        if dataclasses.is_dataclass(section) and isinstance(value, dict) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value, section)
        else:
            merged[name] = value
    return merged


def to_dict(obj: Any) -> dict:
    """A config (or section) as plain dicts and lists, ready for YAML or JSON."""
    return dataclasses.asdict(obj)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def reference_markdown(cls: type, title: str) -> str:
    """A Markdown reference of every field of a dataclass tree: key, type, default, documentation."""
    lines = [f"# {title}", "", "Generated from the docstrings in `rlalign/config/schema.py` and the families' own settings",
             "(`rlalign/policies/*/settings.py`) by `scripts/gen_config_docs.py`; do not edit by hand.", "",
             ("Config files are YAML with YAML 1.2 integers (`010` is ten; `0o10`, `0x10` for octal and hex), "
              "booleans (only true/false: `yes`, `on` are strings) and floats (`1e-4` is a number), and "
              "merge keys: top-level `x-NAME:` keys only hold anchors (`x-common: &common {...}`, then "
              "`<<: *common`) and are not settings. `~` and `$VARIABLES` in `output_dir` and checkpoint paths "
              "are expanded."), ""]
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    nested = [f for f in dataclasses.fields(cls) if dataclasses.is_dataclass(hints[f.name])]
    flat = [f for f in dataclasses.fields(cls) if f not in nested]
    if flat:
        lines += _field_table(cls, flat, "", docs, hints)
    for f in nested:
        lines += [f"## `{f.name}`", "", docs.get(f.name, ""), ""]
        sub = hints[f.name]
        lines += _field_table(sub, dataclasses.fields(sub), f"{f.name}.", field_docs(sub), typing.get_type_hints(sub))
        for inner in dataclasses.fields(sub):
            inner_type = typing.get_type_hints(sub)[inner.name]
            if dataclasses.is_dataclass(inner_type):
                lines += [f"### `{f.name}.{inner.name}`", ""]
                lines += _field_table(inner_type, dataclasses.fields(inner_type), f"{f.name}.{inner.name}.",
                                      field_docs(inner_type), typing.get_type_hints(inner_type))
    return "\n".join(lines).rstrip() + "\n"


def section_markdown(cls: type, key: str, title: str, doc: str) -> str:
    """A Markdown table of one dataclass section found at config key `key` (e.g. a family's own settings)."""
    lines = [f"## `{key}` ({title})", "", doc, ""]
    lines += _field_table(cls, dataclasses.fields(cls), f"{key}.", field_docs(cls), typing.get_type_hints(cls))
    return "\n".join(lines).rstrip() + "\n"


def _field_table(cls: type, fields: typing.Iterable, prefix: str, docs: dict, hints: dict) -> list[str]:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    defaults = cls()
    for f in fields:
        if dataclasses.is_dataclass(hints[f.name]):
            continue
        default = getattr(defaults, f.name)
        bounds = " and ".join(f"{_BOUND_WORDS[k]} {v}" for k, v in f.metadata.get("bounds", {}).items())
        kind = _type_name(hints[f.name]).replace("|", "\\|") + (f" ({bounds})" if bounds else "")
        rows.append(f"| `{prefix}{f.name}` | {kind} | `{default!r}` | {docs.get(f.name, '')} |")
    return rows + [""]
