"""`rlalign sample`: draw samples of a policy (base, or with a trained adapter) into a labelled grid
(images) or a Markdown table of prompts and texts (text families)."""

from __future__ import annotations

import sys
from pathlib import Path

from rlalign.config import load_config
from rlalign.evaluation.geneval import generate
from rlalign.policies import load_policy, resolve_prefix_steps
from rlalign.tasks import check_prompt_words, parse_prompt_source, prompts_from_arguments, source_task
from rlalign.training.adapter_card import CARD, read_card
from rlalign.utils.files import user_path, write_json_atomic, write_text_atomic
from rlalign.utils.grids import save_grid
from rlalign.utils.rows import prompt_text
from rlalign.utils.tables import records_table


def adapter_prefix_steps(adapter: str, asked: str | None, configured: int | str, num_steps: int, *,
                         configured_as: str = "the config's grpo.prefix_steps") -> int | str:
    """m for sampling with `adapter`: `asked` (--prefix-steps) if given, else the m the adapter was trained
    with (its card, rlalign.training.adapter_card), else `configured`. Says on stderr when the adapter's m
    differs (as a number of steps) from the one used, and when it was trained with another T."""
    card = read_card(adapter)
    trained = card["prefix_steps"] if card else None
    if card and card.get("num_steps") not in (None, num_steps):
        print(f"[rlalign] note: the adapter was trained with T = {card['num_steps']} steps; this policy takes "
              f"{num_steps}, so its steps fall at other times than in training", file=sys.stderr)
    m = asked if asked is not None else trained if trained is not None else configured
    m = int(m) if str(m).isdigit() else m
    if trained is not None and resolve_prefix_steps(trained, num_steps) != resolve_prefix_steps(m, num_steps):
        source = "--prefix-steps" if asked is not None else configured_as
        print(f"[rlalign] note: the adapter was trained with m = {trained} ({CARD}); sampling with m = {m} "
              f"({source})", file=sys.stderr)
    elif trained is not None and asked is None and resolve_prefix_steps(configured, num_steps) != resolve_prefix_steps(
            trained, num_steps):
        print(f"[rlalign] note: the adapter was trained with m = {trained} ({CARD}); {configured_as} = {configured}: "
              f"using {trained} (--prefix-steps chooses another)", file=sys.stderr)
    return m


def run_sample(config: str, overrides: list[str], *, prompts: list[str], prefix_steps: str | None,
               adapter: str | None, samples: int, seed: int, out: str) -> str:
    """Sample `samples` images per prompt and save them as a PNG grid; returns a one-line summary.

    Steps 1..m use the adapter (when one is given), steps m+1..T the base model, exactly as in
    training rollouts; without an adapter every step is the base model whatever m is. m is
    `prefix_steps` when given, else the adapter's own (its card), else all steps.
    """
    if not Path(out).name:  # checked before any sampling; the format is checked by save_grid
        raise ValueError(f"--out {out!r} names no file; pass a file name such as samples.png")
    cfg = load_config(config, overrides)
    policy = load_policy(cfg.policy)
    if adapter:
        adapter = user_path(adapter, "--adapter")
        policy.load_adapter(adapter)
        m = adapter_prefix_steps(adapter, prefix_steps, "all", policy.num_steps, configured_as="the default")
    else:
        m = int(prefix_steps) if str(prefix_steps).isdigit() else (prefix_steps or "all")
    chosen = prompts_from_arguments(prompts, cfg.prompts.task)
    check_prompt_words(policy, {"--prompts": chosen}, allow_unknown=cfg.prompts.allow_unknown_words)
    if samples < 1:
        raise ValueError(f"--samples must be ≥ 1, got {samples}")
    images, repeated = generate(policy, chosen, samples_per_prompt=samples, seed=seed, prefix_steps=m,
                                adapter=bool(adapter), purpose="sample", batch_size=cfg.prompts.eval_batch_size)
    which = f"adapter {adapter} on steps 1..{m}" if adapter else "base model"
    if not hasattr(images, "ndim"):  # a text family: the samples as a Markdown table beside --out
        table = records_table([{"prompt": prompt_text(p), "sample": text} for p, text in zip(repeated, images)],
                              ["prompt", "sample"])
        path = write_text_atomic(Path(out).with_suffix(".md"), table + "\n")
        return f"{table}\nwrote {path} ({len(repeated)} samples of {len(chosen)} prompts, {which}, seed {seed})"
    labels = [f"class {p}" if isinstance(p, int) else str(prompt_text(p)) for p in repeated]  # a row: its prompt
    columns = samples if 2 <= samples <= 16 else 8
    path = save_grid(images, labels, Path(out), columns=columns)
    return f"wrote {path} ({len(repeated)} samples of {len(chosen)} prompts, {which}, seed {seed})"


def run_eval(config: str, overrides: list[str], *, adapter: str, out: str, prefix_steps: str | None = None) -> str:
    """`rlalign eval`: base vs adapter on the config's eval sets; writes eval.json and grids; returns a table.
    m is `prefix_steps` when given, else the adapter's own (its card), else the config's grpo.prefix_steps."""

    from rlalign.evaluation.geneval import evaluate_sets
    from rlalign.evaluation.run_report import geneval_table, verifier_categories
    from rlalign.rewards.worker import RewardWorker

    cfg = load_config(config, overrides)
    policy = load_policy(cfg.policy)
    adapter = user_path(adapter, "--adapter")
    policy.load_adapter(adapter)
    m = adapter_prefix_steps(adapter, prefix_steps, cfg.grpo.prefix_steps, policy.num_steps)
    worker = RewardWorker(cfg.rewards.functions + cfg.rewards.eval, combine=None, tokenizer=policy.completion_tokenizer())
    sources = {name: parse_prompt_source(source, cfg.prompts.task) for name, source in cfg.prompts.eval.items()}
    sets = {name: source.all() for name, source in sources.items()}
    check_prompt_words(policy, {f"prompts.eval.{name}": prompts for name, prompts in sets.items()},
                       allow_unknown=cfg.prompts.allow_unknown_words)
    metrics = evaluate_sets(policy, sets, worker, samples_per_prompt=cfg.prompts.eval_samples_per_prompt,
                            seed=cfg.seed, prefix_steps=m, grid_dir=out, step=0, base_cache={},
                            batch_size=cfg.prompts.eval_batch_size,
                            tasks={name: source_task(source) for name, source in sources.items()})
    Path(out).mkdir(parents=True, exist_ok=True)
    write_json_atomic(Path(out) / "eval.json", metrics)
    tables = [line for name in sets for line in geneval_table(metrics, name)[0]]
    rows = ["| metric | base | adapter |", "|---|---|---|"]
    for key in sorted(k for k in metrics if "/base/" not in k and not k.endswith(("_low", "_high", "/samples"))):
        name, metric = key.split("/", 2)[1:]
        if metric.split("/")[0] in (*verifier_categories(metrics, name), "exact"):
            continue  # in the GenEval-style tables above
        base = metrics.get(f"eval/{name}/base/{metric}")
        rows.append(f"| {name}/{metric} | {base:.4f} | {metrics[key]:.4f} |")
    return "\n".join(tables + rows) + (f"\n(wrote {out}/eval.json and sample grids; adapter on steps "
                                        f"1..{m}; the tables' final column is the adapter)")
