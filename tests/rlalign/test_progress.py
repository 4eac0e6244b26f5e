"""Progress lines: plain lines with rate and time left off a terminal, the per-step line's raw trained
reward (not the normalised combined one), and each evaluation's headline."""

import io
import time

from rlalign.config import RewardSpec
from rlalign.training.lines import eval_headline, step_line
from rlalign.utils.progress import Progress, format_duration


def test_format_duration():
    assert [format_duration(s) for s in (4.4, 59.6, 725, 3720)] == ["4s", "1m00s", "12m05s", "1h02m"]


def test_plain_lines_off_a_terminal_say_done_total_and_time_left():
    stream = io.StringIO()  # not a terminal: one plain line per update
    progress = Progress(4, "step", stream=stream, initial=1)
    progress.started -= 2.0  # pretend 2 s passed: 1 unit done since start → 2 s/it, 2 units left → 4 s
    progress.done = 2
    rate, left = progress.rate_and_left()
    assert abs(rate - 0.5) < 0.01 and abs(left - 4.0) < 0.1
    silent = Progress(4, "step", enabled=False, stream=stream)
    silent.update("nothing")
    assert stream.getvalue() == ""


def test_step_line_shows_the_weighted_raw_reward_means():
    specs = [RewardSpec(name="a", weight=1.0), RewardSpec(name="b", label="fmt", weight=0.5),
             RewardSpec(name="c", weight=0.0)]
    metrics = {"rewards/a/mean": 0.8, "rewards/fmt/mean": 0.6, "rewards/c/mean": 7.0, "rewards/total/mean": -0.0,
               "charts/kl": 0.01, "debug/max_abs_logratio_first_iter": 0.0, "time/step": 0.5}
    # 1.0·0.8 + 0.5·0.6 = 1.1 (c has weight 0: logged, not trained)
    assert step_line(metrics, specs).startswith("reward 1.1000 (a 0.800 fmt 0.600 c 7.000)  kl 1.00e-02")


def test_eval_headline_prefers_the_verifier_and_falls_back_to_a_reward():
    metrics = {"eval/heldout/exact": 0.85, "eval/heldout/exact_ci95_low": 0.8, "eval/heldout/exact_ci95_high": 0.9,
               "eval/heldout/base/exact": 0.45, "eval/rows/match": 0.25, "eval/rows/base/match": 0.125}
    assert eval_headline(metrics, ["heldout", "rows"]) == ("heldout exact 0.850 [0.800, 0.900] (base 0.450); "
                                                          "rows match 0.250 (base 0.125)")


def test_paused_work_does_not_count_and_extra_time_is_added():
    progress = Progress(10, "step", stream=io.StringIO())
    before = progress.started
    with progress.paused():  # an evaluation: its time moves the start forward, so the rate ignores it
        time.sleep(0.05)
    assert progress.started - before >= 0.05
    progress.started -= 4.0  # 4 s of steps
    progress.done = 2  # 2 steps in ~4 s → 0.5 steps/s, 8 left → 16 s, plus two evaluations of 30 s
    progress.extra_left = 60.0
    rate, left = progress.rate_and_left()
    assert abs(rate - 0.5) < 0.01 and abs(left - 76.0) < 0.5
