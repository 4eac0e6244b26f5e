"""`rlalign sweep`: runs per (m, seed) with paired prompts, a resumable directory, and its report."""

import json
from pathlib import Path

import pytest
import yaml
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.cli import main
from rlalign.commands.sweep import parse_prefix_steps
from rlalign.config import to_dict
from rlalign.utils.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def write_config(tmp_path, checkpoint, **overrides):
    cfg = tiny_config(tmp_path, checkpoint, steps=2, **{"train.eval_every": 1, "grpo.inner_iterations": 1,
                                                        "rewards.eval": [{"name": "rlalign.rewards.examples:saturation",
                                                                          "label": "sat_eval"}], **overrides})
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    return path


def test_prefix_steps_are_checked():
    assert parse_prefix_steps("1,3,all", 6) == [1, 3, "all"]
    with pytest.raises(ValueError, match="1..6"):
        parse_prefix_steps("0,2", 6)
    with pytest.raises(ValueError, match="twice"):
        parse_prefix_steps("6,all", 6)


def test_sweep_trains_every_run_writes_the_report_and_resumes(tmp_path, tiny_checkpoint, capsys):
    config = write_config(tmp_path, tiny_checkpoint)
    out = tmp_path / "sweep"
    args = ["sweep", str(config), "--prefix-steps", "1,all", "--seeds", "2", "--out", str(out)]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["m1-seed0", "m1-seed1", "mall-seed0", "mall-seed1"]
    # Paired runs: the same seed draws the same prompts at every step whatever m is; other seeds differ.
    m1, mall = (read_metrics(out / n / "metrics.jsonl") for n in ("m1-seed0", "mall-seed0"))
    assert [r["step"] for r in m1 if "time/step" in r] == [1, 2]
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    assert set(rows) == {"1", "all"} and report["eval_key"] == "eval/tiny/exact"  # Shapes prompts: the verifier
    # m = T trains every action, m = 1 only the first scale's: share = 1 / T-th of the tokens or so.
    assert rows["all"]["action_share"] == 1.0 and 0 < rows["1"]["action_share"] < 0.2
    for name in ("reward_vs_step", "eval_vs_step", "eval_vs_time", "kl_vs_step", "time_split", "trained_actions"):
        assert (out / f"{name}.png").stat().st_size > 1000
    text = (out / "report.md").read_text()
    assert "Best gain per wall-clock minute" in text and "## Per category" in text
    assert ("reaches the m = all result" in text) or text.count("Yes: m = 1") == 1
    assert set(report["categories"]) == {"1", "all"} and "overall" in report["categories"]["1"]["final"]
    assert (out / "gain_by_category.png").stat().st_size > 1000
    # Re-running keeps finished runs untouched.
    before = (out / "m1-seed0" / "metrics.jsonl").read_bytes()
    assert main(args) == 0
    assert "finished earlier, kept" in capsys.readouterr().out
    assert (out / "m1-seed0" / "metrics.jsonl").read_bytes() == before
    assert mall[0]["eval/tiny/base/sat_eval"] == m1[0]["eval/tiny/base/sat_eval"]  # the same base eval


def test_parallel_sweep_on_ray_matches_the_sequential_one(tmp_path, tiny_checkpoint):
    # Two runs at a time as Ray tasks (one CPU each): the same metrics as one after another, since
    # every sample's randomness is fixed by its seed, not by the process that draws it (up to float
    # rounding: the tasks run 1 torch thread, this process 2).
    config = write_config(tmp_path, tiny_checkpoint)
    sequential, parallel = tmp_path / "sequential", tmp_path / "parallel"
    assert main(["sweep", str(config), "--prefix-steps", "1,2", "--out", str(sequential)]) == 0
    assert main(["sweep", str(config), "--prefix-steps", "1,2", "--out", str(parallel), "--parallel", "2"]) == 0
    for name in ("m1-seed0", "m2-seed0"):
        a, b = (read_metrics(d / name / "metrics.jsonl") for d in (sequential, parallel))
        keys = [k for k in a[-1] if k.startswith(("eval/", "rewards/"))]
        assert keys and all(a[-1][k] == pytest.approx(b[-1][k], abs=1e-5) for k in keys)
    assert json.loads((parallel / "report.json").read_text())["rows"].keys() == {"1", "2"}


def test_pooled_categories_and_their_overall_match_hand_computation():
    from rlalign.evaluation.sweep_report import _pooled, _pooled_overall

    # Two seeds of one category: 0.5 of 8 and 0.75 of 8 -> 4 + 6 = 10 hits of 16 = 0.625.
    finals = [{"eval/h/counting/exact": 0.5, "eval/h/counting/samples": 8},
              {"eval/h/counting/exact": 0.75, "eval/h/counting/samples": 8}]
    pooled = _pooled(finals, "eval/h/counting")
    assert pooled["exact"] == 0.625 and pooled["samples"] == 16
    # Overall of two categories 0.625 (n 16) and 1.0 (n 16): mean 0.8125; half-width
    # 1.96 · sqrt(0.625·0.375/16 + 0) / 2 = 1.96 · 0.12103 / 2 = 0.11861.
    overall = _pooled_overall({"counting": pooled, "colors": {"exact": 1.0, "samples": 16}})
    assert overall["exact"] == pytest.approx(0.8125)
    assert overall["ci95"] == pytest.approx([0.8125 - 0.11861, 0.8125 + 0.11861], abs=1e-4)


def _verdict_summary(full_final, full_ci, base):
    rows = {"1": {"final": 0.60, "ci95": [0.55, 0.65], "wall_minutes": 4.0, "base": base},
            "all": {"final": full_final, "ci95": full_ci, "wall_minutes": 10.0, "base": base}}
    return {"rows": rows, "manifest": {"num_steps": 6}, "eval_key": "eval/heldout/exact"}


def test_prefix_verdict_names_the_cheap_m_and_flags_an_m_all_that_did_not_move():
    from rlalign.evaluation.sweep_report import prefix_verdict

    # m = all 0.62 [0.58, 0.66] over a base of 0.40: m = 1's 0.60 ≥ 0.58 in 4 of 10 minutes (40%).
    text = prefix_verdict(_verdict_summary(0.62, [0.58, 0.66], base=0.40), {})
    assert text.startswith("Yes: m = 1 reaches") and "40%" in text and "cannot tell" not in text
    # Same, but the base 0.59 lies inside m = all's interval: the "yes" carries the caveat.
    text = prefix_verdict(_verdict_summary(0.62, [0.58, 0.66], base=0.59), {})
    assert text.startswith("Yes: m = 1") and "cannot tell the m apart" in text
    # m = all 0.80 [0.76, 0.84]: m = 1's 0.60 is below 0.76, so no m reaches it.
    text = prefix_verdict(_verdict_summary(0.80, [0.76, 0.84], base=0.40), {})
    assert text.startswith("No m < T reaches") and "cannot tell" not in text


def test_a_relaunch_with_other_settings_refuses_finished_runs_or_redoes_them_when_asked(tmp_path, tiny_checkpoint,
                                                                                       capsys):
    from rlalign.commands.sweep import run_sweep

    config = write_config(tmp_path, tiny_checkpoint)
    out = tmp_path / "sweep"
    assert main(["sweep", str(config), "--prefix-steps", "1", "--out", str(out)]) == 0
    manifest = (out / "sweep.json").read_bytes()
    assert main(["sweep", str(config), "train.learning_rate=0.01", "--prefix-steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "m1-seed0: train.learning_rate 0.05 → 0.01" in err and "--rerun-changed" in err
    assert (out / "sweep.json").read_bytes() == manifest  # nothing claims the new value
    run_sweep(str(config), ["train.learning_rate=0.01"], prefix_steps="1", seeds=1, out=str(out), rerun_changed=True)
    moved = [p.name for p in out.iterdir() if p.name.startswith("m1-seed0.superseded-")]
    assert len(moved) == 1 and (out / moved[0] / "summary.json").is_file()  # the old run, kept whole
    saved = (out / "m1-seed0" / "checkpoints" / "step_000002" / "config.yaml").read_text()
    assert "learning_rate: 0.01" in saved


def test_a_second_sweep_on_a_running_sweep_directory_or_a_sweep_without_eval_sets_is_refused(
        tmp_path, tiny_checkpoint, capsys):
    """Two sweeps on one directory ran side by side, the second rewriting sweep.json under the first (whose report
    then listed the second's runs only); a sweep without prompts.eval trained every run, then failed in its report."""
    from rlalign.utils.run_lock import RunLock

    config = write_config(tmp_path, tiny_checkpoint)
    out = tmp_path / "sweep"
    holder = RunLock(out)  # as a running sweep holds it
    assert main(["sweep", str(config), "--prefix-steps", "1", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert f"{out} is being written by another rlalign run" in error and "choose another --out" in error
    assert not (out / "sweep.json").exists()
    holder.release()
    assert main(["sweep", str(config), "prompts.eval={}", "--prefix-steps", "1", "--out", str(tmp_path / "s2")]) == 2
    assert "a sweep compares its runs by their evaluations, and prompts.eval is empty" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()


def test_a_run_is_not_trained_into_a_sweeps_own_directory(tmp_path):
    from rlalign.config import ConfigError
    from rlalign.training.run_files import check_writable

    (tmp_path / "sweep.json").write_text("{}\n")
    (tmp_path / "m2-seed0").mkdir()
    (tmp_path / "m2-seed0" / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match=r"is a sweep's directory \(sweep.json\); its runs live in its folders "
                                          r"\(m2-seed0\).*--resume \S+/NAME"):
        check_writable(tmp_path)
    check_writable(tmp_path / "m2-seed0")  # a member's own directory is a run's


NEVER_ANSWERS = '''import threading


def never_answers(prompts, completions, **kwargs):
    threading.Event().wait()
'''


def test_a_member_that_stops_says_to_run_the_sweep_again(tmp_path, tiny_checkpoint):
    """A member stopped by a failure (here a reward past rewards.timeout_s) ends the sweep with one error whose
    advice is the sweep's own (run it again), not only the member's `--resume`; exit 1, no traceback. Before,
    the evaluation's rewards had no timeout at all, and this sweep waited forever."""
    import os
    import subprocess
    import sys

    (tmp_path / "slow.py").write_text(NEVER_ANSWERS)
    config = write_config(tmp_path, tiny_checkpoint, **{"rewards.functions": [{"name": "slow:never_answers"}],
                                                        "rewards.eval": [], "rewards.timeout_s": 1})
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "rlalign.cli", "sweep", str(config), "--prefix-steps", "1",
                             "--out", str(tmp_path / "sweep")], env=environment, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    # The step-0 evaluation meets it first: evaluations score in process, within the same timeout.
    assert "error: sweep run m1-seed0: evaluation rewards: no answer within rewards.timeout_s = 1 s" in result.stderr
    assert "run the same `rlalign sweep` command again instead" in result.stderr
