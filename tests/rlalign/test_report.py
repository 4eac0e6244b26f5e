"""The end-of-run summary: the GenEval-style table is read back from metrics.jsonl."""

import json

import pytest

from rlalign.evaluation.run_report import summarize_run


def test_summary_has_the_geneval_table_with_intervals(tmp_path):
    final = {"step": 10, "eval/heldout/exact": 0.6, "eval/heldout/exact_ci95_low": 0.55,
             "eval/heldout/exact_ci95_high": 0.65, "eval/heldout/samples": 384.0,
             "eval/heldout/base/exact": 0.4, "eval/heldout/base/exact_ci95_low": 0.35,
             "eval/heldout/base/exact_ci95_high": 0.45, "eval/heldout/base/samples": 384,
             "eval/heldout/clip": 0.9, "eval/heldout/base/clip": 0.8}
    for category, base, value in (("counting", 0.25, 0.5), ("position", 0.55, 0.7)):
        for prefix, number in (("eval/heldout/base", base), ("eval/heldout", value)):
            final.update({f"{prefix}/{category}/exact": number, f"{prefix}/{category}/samples": 192,
                          f"{prefix}/{category}/exact_ci95_low": number - 0.05,
                          f"{prefix}/{category}/exact_ci95_high": number + 0.05})
    step = {"step": 10, "time/step": 1.0, "rewards/clip/mean": 0.9, "charts/kl": 0.1}
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in (step, final)) + "\n")
    text, numbers = summarize_run(tmp_path)
    assert "| counting | 192 | 0.250 [0.200, 0.300] | 0.500 [0.450, 0.550] | +0.250 |" in text
    assert "| **overall** | 384 | 0.400 [0.350, 0.450] | **0.600** [0.550, 0.650] | +0.200 |" in text
    table = numbers["geneval"]["heldout"]
    assert list(table) == ["counting", "position", "overall"]  # GenEval's order, overall last
    assert table["position"]["final"] == pytest.approx(0.7) and table["overall"]["base_ci95"] == [0.35, 0.45]
    # Other metrics stay in the generic table; categories are not repeated there.
    assert "| heldout | clip | 0.800 | 0.900 | +0.100 |" in text and "| heldout | counting/exact" not in text
    assert "| heldout | exact |" not in text  # the overall is the GenEval table's last row


def test_a_run_without_eval_sets_says_so_and_names_only_files_it_wrote(tmp_path):
    # prompts.eval={} : no eval records, no sample grids. The summary says evaluation was not measured
    # and how to measure it; no before_after.png is claimed.
    from rlalign.evaluation.run_report import write_summary

    step = {"step": 1, "time/step": 1.0, "rewards/clip/mean": 0.5, "charts/kl": 0.0}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(step) + "\n")
    text, written = write_summary(tmp_path)
    assert text.startswith("no evaluation: prompts.eval names no sets") and "rlalign eval CONFIG --adapter" in text
    assert "| eval set |" not in text
    assert written == ["summary.md", "summary.json"] and not (tmp_path / "before_after.png").exists()
