"""The Sums world: prompts and splits, uniform right answers, the verifier, and prompt rows."""

import collections

import numpy as np
import pytest

from rlalign import sums
from rlalign.tasks import parse_prompt_source
from rlalign.utils.rows import prompt_text, split_rows


def test_splits_partition_the_75_prompts():
    train, heldout, every = sums.prompts("train"), sums.prompts("heldout"), sums.prompts("all")
    # terms 2: targets 2..18 (17), terms 3: 3..27 (25), terms 4: 4..36 (33)
    assert len(every) == 75 and len(heldout) == 25 and len(train) == 50
    assert {r["prompt"] for r in train}.isdisjoint({r["prompt"] for r in heldout})
    assert every[0] == {"prompt": "write 2 as a sum of 2 digits", "solution": "2", "target": 2, "terms": 2,
                        "category": "two"}
    assert {r["category"] for r in heldout} == set(sums.CATEGORIES)
    with pytest.raises(ValueError, match="split"):
        sums.prompts("test")


def test_answers_are_right_and_uniform_over_all_right_answers():
    rng = np.random.default_rng(0)
    # 10 as 2 digits: (1,9) … (9,1), nine answers, each with probability 1/9.
    counts = collections.Counter(sums.sample_answer(10, 2, rng) for _ in range(9000))
    assert len(counts) == 9 and all(abs(c / 9000 - 1 / 9) < 0.015 for c in counts.values())
    for target, terms in [(3, 3), (27, 3), (17, 4)]:
        answer = sums.sample_answer(target, terms, rng)
        assert sums.verify(answer, target, terms).exact
    with pytest.raises(ValueError, match="not a sum"):
        sums.sample_answer(40, 4, rng)


def test_verifier_checks_form_count_and_sum():
    assert sums.verify("\\boxed{5+4+3}", 12, 3) == (True, 1.0)
    assert sums.verify("\\boxed{5 + 4 + 3}", 12, 3).exact  # spaces do not matter
    assert sums.verify("\\boxed{9+3}", 12, 3) == (False, 2 / 3)  # right sum, wrong number of terms
    assert sums.verify("\\boxed{5+4+4}", 12, 3) == (False, 2 / 3)  # right count, wrong sum
    assert sums.verify("\\boxed{0+9+3}", 12, 3) == (False, 2 / 3)  # 0 is not a digit term
    assert sums.verify("5+4+3", 12, 3) == (False, 0.0) and sums.verify("\\boxed{5++3}", 8, 2) == (False, 0.0)


def test_prompt_sources_give_rows_and_split_rows_gives_columns(tmp_path):
    rows = parse_prompt_source("sums:heldout").all()
    assert rows == sums.prompts("heldout")
    texts, columns = split_rows(rows[:3])
    assert texts == [r["prompt"] for r in rows[:3]] and columns["target"] == [r["target"] for r in rows[:3]]
    assert split_rows(["a", "b"]) == (["a", "b"], {})
    with pytest.raises(ValueError, match="mixes"):
        split_rows([rows[0], "plain"])
    assert prompt_text(rows[0]) == rows[0]["prompt"] and prompt_text("x") == "x"
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "p1", "solution": "1"}\n\n{"prompt": "p2", "solution": "2"}\n')
    assert parse_prompt_source(f"jsonl:{path}").all() == [{"prompt": "p1", "solution": "1"},
                                                           {"prompt": "p2", "solution": "2"}]
    path.write_text('{"prompt": "p1", "solution": "1"}\n{"prompt": "p2"}\n')
    with pytest.raises(ValueError, match="rows.jsonl:2 has columns"):
        parse_prompt_source(f"jsonl:{path}")
    path.write_text('{"question": "p1"}\n')
    with pytest.raises(ValueError, match='rows.jsonl:1 must be a JSON object with a "prompt"'):
        parse_prompt_source(f"jsonl:{path}")
