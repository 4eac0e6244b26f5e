"""The `rlalign` command line.

Commands available in this version:
  config     print a config fully resolved (defaults, file, overrides) with its derived sizes
  showcase   render the built-in Shapes world with the verifier's report
  train      prefix-GRPO training of a config (the main job); --resume DIR continues a run
  eval       base vs adapter on the config's eval prompts: table + sample grid
  sample     sample a policy (optionally with an adapter) for some prompts into a labelled PNG grid
  score      score a folder of images or a captions file with a config's rewards, as a table

Each command's implementation lives with its concept; this module only parses arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import os
import sys
from pathlib import Path

from rlalign.config import ConfigError, derived_sizes, load_config, yaml12
from rlalign.config.loading import field_docs
from rlalign.training.interrupts import TrainingInterrupted
from rlalign.utils.stops import RunStopped
from rlalign.utils.warning_lines import one_line_warnings


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
    from rlalign.policies import declared_num_steps, resolve_prefix_steps, resolved_config

    cfg = load_config(args.config, args.overrides)
    num_steps = declared_num_steps(cfg.policy)  # checks that need the policy's T, from its metadata only
    if num_steps is not None:
        try:
            resolve_prefix_steps(cfg.grpo.prefix_steps, num_steps)
        except ValueError as error:
            raise ConfigError("grpo.prefix_steps", cfg.grpo.prefix_steps, str(error)) from None
    if args.explain:
        print("\n".join(_explain(cfg)))
    else:
        print(yaml12.dump(resolved_config(cfg)).rstrip())
    print("# derived: " + ", ".join(f"{k}={v}" for k, v in derived_sizes(cfg).items()))
    return 0


def cmd_showcase(args: argparse.Namespace) -> int:
    from rlalign.commands.showcase import format_report, run_showcase

    report = run_showcase(args.out, count=args.count, seed=args.seed)
    print(format_report(report))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from rlalign.evaluation.run_report import write_summary
    from rlalign.training.trainer import train

    cfg = load_config(args.config, args.overrides)
    if args.stop_after is not None and args.stop_after < 1:
        raise ValueError(f"--stop-after must be a step ≥ 1 (the run stops after it), got {args.stop_after}")
    if args.resume:  # a resumed run continues in its own run directory
        from rlalign.training.checkpoint import run_directory

        run_dir = run_directory(args.resume)
        if any(o.partition("=")[0].strip() == "output_dir" for o in args.overrides) and \
                Path(cfg.output_dir).resolve() != run_dir.resolve():
            raise ValueError(f"--resume {args.resume} continues the run in {run_dir}; the override output_dir="
                             f"{cfg.output_dir} would be ignored: leave it out (copy the run first to continue elsewhere)")
        cfg.output_dir = str(run_dir)
    accept = [key.strip() for key in (args.accept_changes or "").split(",") if key.strip()]
    if accept and not args.resume:
        raise ValueError("--accept-changes only applies with --resume (it names settings changed since the checkpoint)")
    train(cfg, resume=args.resume, stop_after=args.stop_after, accept_changes=accept)
    text, written = write_summary(cfg.output_dir)
    print(text)
    print(f"[rlalign] run directory: {cfg.output_dir} (metrics.jsonl, {', '.join(written)}, checkpoints/)")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rlalign.commands.sample import run_eval

    print(run_eval(args.config, args.overrides, adapter=args.adapter, out=args.out, prefix_steps=args.prefix_steps))
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from rlalign.commands.sample import run_sample

    print(run_sample(args.config, args.overrides, prompts=args.prompts, prefix_steps=args.prefix_steps,
                     adapter=args.adapter, samples=args.samples, seed=args.seed, out=args.out))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from rlalign.commands.score import run_score

    print(run_score(args.config, args.path, args.overrides, eval_rewards=args.eval, per_item=args.per_item,
                    batch_size=args.batch_size))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from rlalign.commands.sweep import run_sweep
    from rlalign.evaluation.sweep_report import write_report
    from rlalign.utils.files import user_path

    args.out = user_path(args.out, "--out")  # ~ and $VARS, as the members' output_dir are expanded
    if args.report_only:
        print(write_report(args.out) + f"\n(wrote {args.out}/report.md and its plots)")
        return 0
    print(run_sweep(args.config, args.overrides, prefix_steps=args.prefix_steps, seeds=args.seeds, out=args.out,
                    parallel=args.parallel, rerun_changed=args.rerun_changed))
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    from rlalign.commands.probe import ProbeSizes, run_probe

    sizes = ProbeSizes(prefixes=args.prefixes, completions=args.completions, seed=args.seed)
    print(run_probe(args.config, args.overrides, prompts=args.prompts, count=args.count, sizes=sizes,
                    steps=args.steps, level=args.share, out=args.out))
    return 0


VERSION_PACKAGES = ("torch", "trl", "peft", "transformers", "open_clip_torch")
"""The dependencies whose installed versions `rlalign --version` prints beside rlalign's own."""


def version_text() -> str:
    """`rlalign X (torch …, trl …, …)`, read from the installed packages' metadata (nothing is imported)."""
    from importlib import metadata

    import rlalign

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"rlalign {rlalign.__version__} ({', '.join(f'{name} {installed(name)}' for name in VERSION_PACKAGES)})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlalign",
        description="Prefix-GRPO alignment of coarse-to-fine generative models.",
    )
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the versions of rlalign, torch, trl, peft, transformers and open_clip_torch")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_training_commands(commands)
    _add_tool_commands(commands)
    return parser


def _add_training_commands(commands: argparse._SubParsersAction) -> None:
    """config, showcase, train, eval, sample: set up, train and look at a run."""
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

    train = commands.add_parser("train", help="prefix-GRPO training (the main job)")
    train.add_argument("config", help="path of a YAML config (see configs/)")
    train.add_argument("overrides", nargs="*", help="overrides such as train.steps=10")
    train.add_argument("--resume", default=None, help="a run directory (its latest checkpoint) or a checkpoint")
    train.add_argument("--accept-changes", default="", metavar="KEYS",
                       help="with --resume: comma list of settings changed since the checkpoint to train on with")
    train.add_argument("--stop-after", type=int, default=None, help="stop after this step (as if killed there)")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("eval", help="base vs adapter on the eval prompts: table + grid")
    evaluate.add_argument("config", help="path of a YAML config (policy, prompts.eval and rewards are used)")
    evaluate.add_argument("overrides", nargs="*", help="overrides such as prompts.eval_samples_per_prompt=16")
    evaluate.add_argument("--adapter", required=True, help="a peft adapter directory (e.g. RUN/checkpoints/step_N/adapter)")
    evaluate.add_argument("--out", default="outputs/eval", help="directory for eval.json and grids (default: %(default)s)")
    evaluate.add_argument("--prefix-steps", default=None,
                          help="m: steps sampled with the adapter (default: the m the adapter was trained with, "
                               "from its rlalign_adapter.json, else the config's grpo.prefix_steps)")
    evaluate.set_defaults(handler=cmd_eval)

    sample = commands.add_parser("sample", help="sample prompts into a PNG grid labelled with the prompts")
    sample.add_argument("config", help="path of a YAML config (its policy section is used)")
    sample.add_argument("overrides", nargs="*", help="overrides such as policy.cfg_scale=2")
    sample.add_argument("--prompts", nargs="+", required=True,
                        help="prompts, or one source such as shapes-eval:heldout, file:PATH, classes:0-7")
    sample.add_argument("--prefix-steps", default=None,
                        help="m: steps sampled with the adapter on, 1..T or 'all' (default: the m the adapter was "
                             "trained with, from its rlalign_adapter.json, else all)")
    sample.add_argument("--adapter", default=None, help="a peft adapter directory (from rlalign train)")
    sample.add_argument("--samples", type=int, default=1, help="samples per prompt (default: %(default)s)")
    sample.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    sample.add_argument("--out", default="outputs/sample.png", help="PNG path (default: %(default)s)")
    sample.set_defaults(handler=cmd_sample)


def _add_tool_commands(commands: argparse._SubParsersAction) -> None:
    """score, sweep, probe: score outputs, compare prefix lengths, choose m."""
    score = commands.add_parser("score", help="score images or captions with a config's rewards")
    score.add_argument("config", help="path of a YAML config (its rewards section is used)")
    score.add_argument("path", help="a folder of PNG/JPG images (prompts from prompts.json or the file names) "
                       "or a text file of prompt<TAB>caption lines")
    score.add_argument("overrides", nargs="*", help="overrides such as rewards.combine=normalize_then_sum")
    score.add_argument("--eval", action="store_true", help="use rewards.eval instead of rewards.functions")
    score.add_argument("--per-item", action="store_true", help="also print one row per image or caption")
    score.add_argument("--batch-size", type=int, default=32, help="items per reward call (default: %(default)s)")
    score.set_defaults(handler=cmd_score)

    sweep = commands.add_parser("sweep", help="one run per prefix length m and seed, then a report (docs/sweeps.md)")
    sweep.add_argument("config", help="path of a YAML config (see configs/)")
    sweep.add_argument("overrides", nargs="*", help="overrides applied to every run, such as train.steps=150")
    sweep.add_argument("--prefix-steps", required=True, help="the m values, e.g. 1,2,3,all")
    sweep.add_argument("--seeds", type=int, default=1, help="seeds per m: seed, seed+1, ... (default: %(default)s)")
    sweep.add_argument("--rerun-changed", action="store_true",
                       help="train again the finished runs whose settings differ from the ones asked for now "
                            "(the old runs are moved aside, never deleted); without it such a sweep is refused")
    sweep.add_argument("--out", default="runs/sweep", help="sweep directory; re-running resumes it (default: %(default)s)")
    sweep.add_argument("--parallel", type=int, default=1,
                       help="runs at a time, as Ray tasks sharing this machine's CPUs (default: %(default)s, in order)")
    sweep.add_argument("--report-only", action="store_true", help="only rebuild report.md and the plots from --out")
    sweep.set_defaults(handler=cmd_sweep)

    probe = commands.add_parser("probe", help="how much of the reward each step decides: choose m (docs/sweeps.md)")
    probe.add_argument("config", help="path of a YAML config (policy, prompts and rewards are used)")
    probe.add_argument("overrides", nargs="*", help="overrides such as policy.insertion.steps=8")
    probe.add_argument("--prompts", default=None, help="prompt source (default: the config's first eval set)")
    probe.add_argument("--count", type=int, default=16, help="prompts, spread over the source (default: %(default)s)")
    probe.add_argument("--prefixes", type=int, default=8, help="N prefixes per prompt and step (default: %(default)s)")
    probe.add_argument("--completions", type=int, default=8,
                       help="K frozen-suffix completions per prefix (default: %(default)s)")
    probe.add_argument("--steps", default="all", help="steps t to probe, e.g. 1,2,3 (default: all of 1..T)")
    probe.add_argument("--share", type=float, default=0.5, help="share level for the suggested m (default: %(default)s)")
    probe.add_argument("--seed", type=int, default=0, help="sampling seed (default: %(default)s)")
    probe.add_argument("--out", default="outputs/probe", help="directory for probe.md/json/png (default: %(default)s)")
    probe.set_defaults(handler=cmd_probe)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `section.key=value` overrides may also follow the options (argparse stops a positional list
    # at the first option); anything else left over is an error as usual.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # Read `module:function` rewards (and module:attr tasks, families) from the working directory, as
    # `python -m` would: the console script's own directory is what Python put first on the path.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with one_line_warnings():
            return args.handler(args)
    except TrainingInterrupted as stopped:  # SIGINT / SIGTERM during training: saved, resumable
        print(f"[rlalign] {stopped}", file=sys.stderr)
        return stopped.exit_code
    except KeyboardInterrupt:
        print("[rlalign] interrupted (Ctrl-C); nothing was saved by this command", file=sys.stderr)
        return 130
    except RunStopped as stopped:  # a worker or reward failed for good: saved what it could, says how to go on
        if os.environ.get("RLALIGN_DEBUG"):
            raise
        print(f"error: {stopped}", file=sys.stderr)
        return 1
    except (ConfigError, ValueError, FileNotFoundError, FileExistsError, KeyError) as error:
        # Bad input (config, checkpoint, prompt, reward output): one clear line, exit code 2.
        # RLALIGN_DEBUG=1 shows the traceback instead.
        if os.environ.get("RLALIGN_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except PermissionError as error:  # a file (config, prompts, checkpoint, run) this user may not read or write
        if os.environ.get("RLALIGN_DEBUG"):
            raise
        print(f"error: {error.filename or 'a file'}: permission denied; check its permissions and its folders' "
              f"(ls -ld {error.filename or 'PATH'}), or run as a user who may read and write it", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or os.environ.get("RLALIGN_DEBUG"):
            raise
        print(f"error: {error.strerror} while writing {error.filename or 'a file'}: free space (or raise the quota); "
              "a run's checkpoints are written whole or not at all, so a run that saved one continues from its "
              "newest with rlalign train CONFIG --resume RUN_DIR (one that saved none starts again)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
