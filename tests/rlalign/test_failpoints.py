"""rlalign.utils.failpoints: SIGKILL at a named point, on the N-th pass, once per marker file."""

import os
import signal
import subprocess
import sys

CODE = "from rlalign.utils.failpoints import failpoint\nfor i in range(3):\n    failpoint('save:state')\n    print(i, flush=True)\n"


def run(env):
    return subprocess.run([sys.executable, "-c", CODE], env={**os.environ, **env}, capture_output=True, text=True,
                          check=False)


def test_unset_it_does_nothing():
    result = run({"RLALIGN_FAILPOINT": ""})
    assert result.returncode == 0 and result.stdout.split() == ["0", "1", "2"]


def test_the_nth_pass_kills_the_process_with_sigkill():
    result = run({"RLALIGN_FAILPOINT": "save:state@2"})
    assert result.returncode == -signal.SIGKILL and result.stdout.split() == ["0"]  # died on the 2nd pass
    assert run({"RLALIGN_FAILPOINT": "save:adapter"}).returncode == 0  # another point: untouched


def test_a_marker_makes_it_fire_once(tmp_path):
    env = {"RLALIGN_FAILPOINT": "save:state", "RLALIGN_FAILPOINT_MARKER": str(tmp_path / "fired")}
    assert run(env).returncode == -signal.SIGKILL and (tmp_path / "fired").exists()
    assert run(env).returncode == 0  # the restarted process passes
