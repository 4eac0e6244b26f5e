"""Config YAML read and written as YAML 1.2 means it, in one place.

PyYAML implements YAML 1.1, whose plain scalars surprise: `010` is octal 8, `1e-4` (no dot) is a
string, `yes`/`on` are booleans, and a key given twice keeps the last value without a word. rlalign
reads config files, overrides and the configs it saved itself with `Loader`:

- integers as YAML 1.2 reads them: `010` is ten; `0o10` and `0x10` are octal and hex;
- floats as YAML 1.2 reads them: `1e-4` is a number wherever it is written, also in free-form mappings
  (reward args, policy.options);
- booleans as YAML 1.2 reads them: only true/false (YAML 1.1's `yes`, `no`, `on`, `off` are strings, so a
  boolean setting refuses `on` with that reason and `run_name: no` stays the text "no");
- a key given twice in one mapping is an error (`DuplicateKeyError`); merge keys (`<<: *defaults`) work.

`dump` writes with `Dumper`, which quotes every string that YAML 1.1 *or* 1.2 would read as another
type, so what rlalign writes (a checkpoint's config.yaml, `rlalign config`, the API's overrides) reads
back the same with this loader and with any YAML 1.1 reader.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

INT_12 = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
FLOAT_12 = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                      r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
YAML_11_BOOLS = ("yes", "no", "on", "off")
"""Booleans in YAML 1.1 (and PyYAML's default loader), strings in YAML 1.2."""
_TAG = "tag:yaml.org,2002:"


def _add_12_resolvers(cls: type) -> None:
    # Order matters: a plain integer matches the float pattern too, so ints are tried first.
    cls.add_implicit_resolver(f"{_TAG}bool", BOOL_12, list("tTfF"))
    cls.add_implicit_resolver(f"{_TAG}int", INT_12, list("-+0123456789"))
    cls.add_implicit_resolver(f"{_TAG}float", FLOAT_12, list("-+.0123456789"))


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 integers, floats and booleans, refusing duplicate keys."""


class Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that also quotes strings YAML 1.2 would read as numbers or booleans."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag.removeprefix(_TAG) not in ("int", "bool", "float")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_add_12_resolvers(Loader)
_add_12_resolvers(Dumper)  # beside YAML 1.1's: a string either version would read as another type is quoted


def _construct_int_12(loader: Loader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


class DuplicateKeyError(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, second_line: int):
        self.key, self.lines = key, (first_line, second_line)
        super().__init__(f"key {key!r} is given twice in one section (lines {first_line} and {second_line}); "
                         f"keep one of them")


def _construct_unique_mapping(loader: Loader, node: yaml.MappingNode) -> dict:
    """A mapping, refusing a key given twice (plain YAML keeps the last value silently, which turns a
    forgotten line, `steps: 450` ... `steps: 7`, into a wrong run)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == f"{_TAG}merge":
            continue  # `<<:` merges a mapping in; its keys may be given again (construct_mapping flattens it)
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            if key in seen:
                raise DuplicateKeyError(key, seen[key], line)
            seen[key] = line
        except TypeError:  # an unhashable key: construct_mapping reports it
            pass
    return loader.construct_mapping(node, deep=True)


Loader.add_constructor(f"{_TAG}int", _construct_int_12)
Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load(text: str) -> Any:
    """YAML text read as YAML 1.2 (module docstring); raises DuplicateKeyError or yaml.YAMLError."""
    return yaml.load(text, Loader=Loader)


def dump(data: Any, **options: Any) -> str:
    """YAML text that reads back as `data` with `load` and with YAML 1.1 readers (keys kept in order)."""
    return yaml.dump(data, Dumper=Dumper, **{"sort_keys": False, "allow_unicode": True, **options})
