"""Prompt sources: the strings configs and the CLI use to name where prompts come from.

  shapes:SPLIT        prompts of the six GenEval categories (equal shares) of a split (train | heldout
                      | all), endless; never an evaluation-list string where the category has others
                      (rlalign.shapes.categories.training_pool)
  shapes-eval:SPLIT   the fixed per-category evaluation lists of a split (147 entries, docs/shapes.md)
  shapes-eval:SPLIT:CATEGORY   one category's list (e.g. shapes-eval:heldout:counting)
  file:PATH           one prompt per line (blank lines and lines starting with # are skipped)
  classes:A-B         class ids A..B inclusive, for class-conditional models such as VAR
  classes:A,B,C       an explicit list of class ids
  shapes-scenes:SPLIT        described Shapes scenes (one or two objects, everything named) of a
                             split, endless: the prompts of an image-conditioned model such as the
                             captioner
  shapes-scenes-eval:SPLIT   48 fixed described scenes, one per prompt of described_eval_prompts
  sums:SPLIT          the Sums task's prompts of a split (train 50 | heldout 25 | all), as rows
                      {"prompt", "solution", "target", "terms", "category"} (rlalign.sums)
  jsonl:PATH          a dataset in TRL's convention: one JSON object per line with a "prompt" and any
                      other columns, which rewards receive as keywords (e.g. "solution" for accuracy_reward)

Fixed sources (all but `shapes:`) have a finite list; `draw(count, seed)` walks seeded permutations
of it, so one draw holds no prompt twice before every prompt has appeared once. The trainer draws
with a new seed each step, so across steps every prompt is seen equally often in expectation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlalign import sums
from rlalign.shapes import (
    CATEGORIES,
    SPLITS,
    described_eval_prompts,
    eval_prompts,
    eval_prompts_by_category,
    parse_prompt,
    place,
    sample_category_prompts,
    sample_scenes,
)

KINDS = ("shapes", "shapes-eval", "file", "classes", "shapes-scenes", "shapes-scenes-eval", "sums", "jsonl")
EVAL_SCENE_SEED = 20261201
"""Seed of the placements of `shapes-scenes-eval` (one fixed scene per evaluation prompt)."""


@dataclass(frozen=True)
class PromptSource:
    """A parsed prompt source; `fixed` holds the whole list for finite sources."""

    spec: str
    fixed: tuple | None = None
    split: str | None = None
    scenes: bool = False
    """Whether the prompts are Shapes scenes (images to caption) rather than texts."""

    def draw(self, count: int, seed: int) -> list:
        """`count` prompts, determined by (source, count, seed) alone.

        Finite lists are walked in one seeded permutation per pass, so prompt i of a pass differs
        from prompt j of the same pass unless the list is shorter than `count`.
        """
        if self.fixed is None:
            if self.scenes:
                return sample_scenes(self.split, count, seed)
            return sample_category_prompts(self.split, count, seed)
        rng = np.random.default_rng([seed, len(self.fixed)])
        order: list[int] = []
        while len(order) < count:
            order.extend(rng.permutation(len(self.fixed)).tolist())
        return [self.fixed[i] for i in order[:count]]

    def all(self) -> list:
        """The whole list of a finite source."""
        if self.fixed is None:
            raise ValueError(f"prompt source {self.spec!r} is endless; use draw(count, seed), or a fixed source "
                             "such as shapes-eval:heldout")
        return list(self.fixed)


def parse_prompt_source(spec: str) -> PromptSource:
    """Parse a source string; a bad one fails with the accepted forms."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or kind not in KINDS:
        raise ValueError(f"prompt source {spec!r} is not one of: shapes:SPLIT, shapes-eval:SPLIT[:CATEGORY], file:PATH, "
                         "classes:A-B, classes:A,B,..., shapes-scenes:SPLIT, shapes-scenes-eval:SPLIT, sums:SPLIT, "
                         "jsonl:PATH")
    if kind in ("shapes", "shapes-scenes"):
        if rest not in SPLITS:
            raise ValueError(f"prompt source {spec!r}: split must be one of {', '.join(SPLITS)}")
        return PromptSource(spec, split=rest, scenes=kind == "shapes-scenes")
    if kind in ("shapes-eval", "shapes-scenes-eval"):
        split, _, category = rest.partition(":")
        if split not in ("train", "heldout"):
            raise ValueError(f"prompt source {spec!r}: fixed evaluation lists exist for train and heldout")
        if kind == "shapes-eval" and category:
            if category not in CATEGORIES:
                raise ValueError(f"prompt source {spec!r}: category must be one of {', '.join(CATEGORIES)}")
            return PromptSource(spec, fixed=eval_prompts_by_category(split)[category])
        if kind == "shapes-eval":
            return PromptSource(spec, fixed=eval_prompts(split))
        if category:
            raise ValueError(f"prompt source {spec!r}: shapes-scenes-eval takes a split only")
        rng = np.random.default_rng([EVAL_SCENE_SEED, SPLITS.index(split)])
        scenes = tuple(place(parse_prompt(prompt), rng) for prompt in described_eval_prompts(split))
        return PromptSource(spec, fixed=scenes, scenes=True)
    if kind == "file":
        return PromptSource(spec, fixed=tuple(_read_prompt_file(rest)))
    if kind == "sums":
        return PromptSource(spec, fixed=tuple(sums.prompts(rest)))
    if kind == "jsonl":
        return PromptSource(spec, fixed=tuple(_read_jsonl(rest)))
    return PromptSource(spec, fixed=tuple(_class_ids(spec, rest)))


def _read_jsonl(path: str) -> list[dict]:
    """TRL-style rows, one JSON object with a "prompt" per line; every row must have the same columns."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"prompt file {path!r} does not exist (jsonl:PATH takes one JSON object per line)")
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number} is not JSON ({error})") from None
        if not isinstance(row, dict) or "prompt" not in row:
            raise ValueError(f"{path}:{number} must be a JSON object with a \"prompt\" key (TRL's dataset rows)")
        if rows and set(row) != set(rows[0]):
            raise ValueError(f"{path}:{number} has columns {sorted(row)}, line 1 has {sorted(rows[0])}; "
                             "rewards get one list per column, so every row needs the same ones")
        rows.append(row)
    if not rows:
        raise ValueError(f"prompt file {path!r} holds no rows")
    return rows


def _read_prompt_file(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"prompt file {path!r} does not exist (file:PATH takes one prompt per line)")
    prompts = [line.strip() for line in file.read_text().splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise ValueError(f"prompt file {path!r} holds no prompts (one per line; # starts a comment)")
    return prompts


def _class_ids(spec: str, rest: str) -> list[int]:
    try:
        if "-" in rest:
            low, high = (int(part) for part in rest.split("-", 1))
            ids = list(range(low, high + 1))
        else:
            ids = [int(part) for part in rest.split(",")]
    except ValueError:
        raise ValueError(f"prompt source {spec!r}: write classes:A-B or classes:A,B,C with integer ids") from None
    if not ids or min(ids) < 0:
        raise ValueError(f"prompt source {spec!r} gives no non-negative class ids")
    return ids


def check_prompt_words(policy: Any, named_prompts: dict[str, list], *, allow_unknown: bool) -> None:
    """Refuse prompts with words the policy's text encoder does not know (they would read as <unk>),
    for policies that can tell (`check_prompts`), unless `allow_unknown` (prompts.allow_unknown_words)."""
    check = getattr(policy, "check_prompts", None)
    if check is None or allow_unknown:
        return
    for where, prompts in named_prompts.items():
        check(prompts, where=where)


def prompts_from_arguments(arguments: list[str]) -> list:
    """CLI prompts: one argument that is a source gives that source's list; otherwise the literal strings.

    An endless `shapes:SPLIT` source gives 8 prompts drawn with seed 0.
    """
    if len(arguments) == 1 and arguments[0].partition(":")[0] in KINDS:
        source = parse_prompt_source(arguments[0])
        return source.draw(8, seed=0) if source.fixed is None else source.all()
    return list(arguments)
