"""One writer per run directory (rlalign/utils/run_lock.py): a second writer is refused at once naming
the holder; a lock left by a dead run is taken over with a warning."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.training import save_tiny_checkpoint, tiny_config

from rlalign.training.trainer import Trainer
from rlalign.utils.run_lock import LOCK_FILE, RunLock, RunLockedError

HOLD = ("import sys; from rlalign.utils.run_lock import RunLock; lock = RunLock(sys.argv[1]); "
        "print('held', flush=True); sys.stdin.read()")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"))


def test_a_second_writer_is_refused_naming_the_holder_then_runs_once_it_is_gone(tmp_path, tiny_checkpoint):
    cfg = tiny_config(tmp_path, tiny_checkpoint, steps=1)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, cfg.output_dir], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the other process holds the lock now
        with pytest.raises(RunLockedError, match=rf"another rlalign run \(pid {holder.pid} on .*\).*nothing was written"):
            Trainer(cfg)
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    finally:
        holder.stdin.close()  # the holder exits; the OS drops its lock
        holder.wait(timeout=60)
    Trainer(cfg).run()  # now it is free
    assert (tmp_path / "run" / LOCK_FILE).read_text() == ""  # a clean end empties the lock file


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_warning(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()  # no clean end: the lock file still names it
    holder.wait(timeout=60)
    with pytest.warns(RuntimeWarning, match=rf"pid {holder.pid} .*ended without releasing its lock"):
        lock = RunLock(tmp_path)
    lock.release()


def test_the_cli_says_which_run_holds_the_directory(tmp_path, tiny_checkpoint, capsys):
    import yaml

    from rlalign.cli import main
    from rlalign.config import to_dict

    cfg = tiny_config(tmp_path, tiny_checkpoint, steps=1)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(to_dict(cfg)))
    lock = RunLock(cfg.output_dir)  # this process holds it, as a run in progress would
    try:
        with pytest.raises(RunLockedError):
            RunLock(cfg.output_dir)  # a second open file of the same process conflicts too
        assert main(["train", str(config)]) == 2
        assert "is being written by another rlalign run" in capsys.readouterr().err
    finally:
        lock.release()
