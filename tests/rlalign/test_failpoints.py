"""rlalign.utils.failpoints: SIGKILL at a named point, on the N-th pass, once per marker file."""

import os
import signal
import subprocess
import sys
import time

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


def test_a_holdpoint_waits_until_its_file_is_removed(tmp_path):
    held = tmp_path / "held"
    code = "from rlalign.utils.failpoints import holdpoint\nholdpoint('stop:save')\nprint('passed', flush=True)\n"
    env = {**os.environ, "RLALIGN_HOLDPOINT": "stop:save", "RLALIGN_HOLDPOINT_FILE": str(held)}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    while not held.exists():
        assert process.poll() is None, "the process ended without reaching the hold point"
        time.sleep(0.01)  # polling for the file: an event, whatever the machine's speed
    assert process.poll() is None  # held: it cannot pass while the file exists
    held.unlink()
    assert process.communicate(timeout=60)[0] == "passed\n" and process.returncode == 0
    unset = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RLALIGN_HOLDPOINT": ""},
                           capture_output=True, text=True, check=False)
    assert unset.stdout == "passed\n"  # unset: no file, no wait
