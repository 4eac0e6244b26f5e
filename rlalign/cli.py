"""The `rlalign` command line.

Commands available in this version:
  config     print a config fully resolved (defaults, file, overrides) with its derived sizes
  showcase   render the built-in Shapes world with the verifier's report (the current demo)

Each command's implementation lives with its concept; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import yaml

from rlalign.config import ConfigError, derived_sizes, load_config, to_dict
from rlalign.config_loading import field_docs


def _explain(section: object, prefix: str = "") -> list[str]:
    """One line per field: dotted key, value, and the field's documentation."""
    lines = []
    docs = field_docs(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            lines.append(f"# {key}: {docs.get(f.name, '')}")
            lines.extend(_explain(value, key + "."))
        else:
            lines.append(f"{key} = {value!r}\n    {docs.get(f.name, '')}")
    return lines


def cmd_config(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.explain:
        print("\n".join(_explain(cfg)))
    else:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True).rstrip())
    print("# derived: " + ", ".join(f"{k}={v}" for k, v in derived_sizes(cfg).items()))
    return 0


def cmd_showcase(args: argparse.Namespace) -> int:
    from rlalign.shapes.showcase import format_report, run_showcase

    report = run_showcase(args.out, count=args.count, seed=args.seed)
    print(format_report(report))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlalign",
        description="Prefix-GRPO alignment of coarse-to-fine generative models.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = commands.add_parser("config", help="print the resolved config and its derived sizes")
    config.add_argument("config", help="path of a YAML config (see configs/)")
    config.add_argument("overrides", nargs="*", help="overrides such as grpo.group_size=4")
    config.add_argument("--explain", action="store_true", help="print every field with its documentation")
    config.set_defaults(handler=cmd_config)

    showcase = commands.add_parser("showcase", help="render Shapes scenes with the verifier's report")
    showcase.add_argument("--out", default="outputs/showcase", help="output directory (default: %(default)s)")
    showcase.add_argument("--count", type=int, default=16, help="scenes per split (default: %(default)s)")
    showcase.add_argument("--seed", type=int, default=0, help="scene seed (default: %(default)s)")
    showcase.set_defaults(handler=cmd_showcase)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
