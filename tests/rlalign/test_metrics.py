"""The metrics logger: JSONL always, wandb offline writes a run, non-finite values become null."""

import math

import pytest

from rlalign.utils.metrics import MetricsLogger, read_metrics
from rlalign.utils.warning_lines import RlalignWarning


def test_jsonl_records_in_order_and_non_finite_as_null(tmp_path):
    with MetricsLogger(tmp_path, wandb_mode="disabled") as logger:
        logger.log({"losses/policy": 0.5, "debug/max_abs_logratio_first_iter": float("nan")}, step=0)
        logger.log({"losses/policy": 0.25, "charts/kl": math.inf}, step=1)
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1]
    assert records[0]["losses/policy"] == 0.5 and records[0]["debug/max_abs_logratio_first_iter"] is None
    assert records[1]["charts/kl"] is None
    assert not (tmp_path / "wandb").exists()


def test_reopening_appends_so_a_resumed_run_keeps_its_history(tmp_path):
    for step in range(2):
        with MetricsLogger(tmp_path, wandb_mode="disabled") as logger:
            logger.log({"x": step}, step=step)
    assert [r["x"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1]


def test_wandb_offline_writes_a_local_run(tmp_path):
    with MetricsLogger(tmp_path, wandb_mode="offline", project="rlalign-test", config={"seed": 3}) as logger:
        logger.log({"rewards/total/mean": 1.5}, step=0)
        run_dir = logger.wandb_dir
    assert run_dir is not None and run_dir.is_dir() and run_dir.name.startswith("offline-run-")
    assert any(run_dir.glob("*.wandb"))


def test_unknown_wandb_mode_is_named(tmp_path):
    with pytest.raises(ValueError, match="'cloud'"):
        MetricsLogger(tmp_path, wandb_mode="cloud")


def test_a_torn_last_line_is_skipped_with_a_warning_and_a_bad_middle_line_is_named(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1.0}\n{"step": 2, "a": 2.0}\n{"step": 3, "a"')  # killed mid-write
    with pytest.warns(RlalignWarning, match="the last line is torn"):
        assert [r["step"] for r in read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1}\n{"step": 2, oops}\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not a JSON record"):
        read_metrics(path)


def test_resume_moves_a_torn_last_line_aside_with_the_tail(tmp_path):
    from rlalign.training.run_files import supersede_records

    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x"')
    supersede_records(tmp_path, "metrics", after_step=2)
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert (tmp_path / "metrics.superseded.jsonl").read_text() == '{"step": 3}\n{"step": 4, "x"\n'


def test_online_wandb_without_a_login_is_refused_before_any_work(tmp_path, monkeypatch):
    from rlalign.utils.metrics import check_wandb_login

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # no netrc file: no login
    with pytest.raises(ValueError, match=r"wandb_mode=online needs a W&B login for api.wandb.ai"):
        check_wandb_login("online")
    check_wandb_login("offline")  # offline and disabled need none
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password KEY\n")
    check_wandb_login("online")
