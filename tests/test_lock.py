"""One run per folder: the lock names the other process, a dead one's lock is taken over."""

import json
import os
import subprocess
import sys
import time

import pytest

from run_helpers import copy_run, one_line_error, run_args, write_poses
from vidtune.cli import main
from vidtune.errors import VidtuneError
from vidtune.lock import LOCK_NAME, RunLock

# --- 2. one run per folder -----------------------------------------------------------------------


def test_second_run_on_a_folder_in_use_exits_2_naming_the_other_process(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vidtune.lock import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
            str(run),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        # the holder keeps the lock for 60 s: a run that waited for it would get it and raise nothing
        line = one_line_error(run_args(model, pose_dir, run, "--set", "codenoise.weighting=triangular"), capsys)
        assert str(run) in line and f"process {holder.pid}" in line
    finally:
        holder.kill()
        holder.wait()
    assert json.loads((run / "stage4" / "done.json").read_text()) == json.loads(
        (src / "stage4" / "done.json").read_text()
    )


def test_stale_lock_of_a_dead_process_is_taken_over(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (run / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": "here"}))
    assert main(run_args(model, pose_dir, run)) == 0
    out = capsys.readouterr().out
    assert f"took over the lock of process {dead.pid}" in out
    assert not (run / LOCK_NAME).exists()


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path) as first:
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
        with pytest.raises(VidtuneError, match=f"in use by vidtune process {os.getpid()}"):
            RunLock(tmp_path).acquire()
        assert first.fd is not None
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()


@pytest.mark.slow
def test_two_runs_on_one_folder_one_exits_2(tiny_model_dir, tmp_path):
    """Two `vidtune run` processes, the second started while the first holds the folder."""
    pose_dir = write_poses(tmp_path / "poses")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "vidtune.cli", *run_args(tiny_model_dir, pose_dir, run, "--stages", "1,2")]
    # The first run samples 500 steps: it holds the folder however slow the second is to start up,
    # and is stopped once the second has given up.
    first = subprocess.Popen(
        cmd + ["--steps", "500"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 120
        while not (run / LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, first.communicate()[1]
        second = subprocess.run(
            cmd[:-2] + ["--set", "separate.seed=3", "--stages", "1,2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert first.poll() is None, first.communicate()[1][-1200:]  # still running: the second met a held lock
    finally:
        first.kill()
        first.communicate(timeout=60)
    assert second.returncode == 2 and "in use by vidtune process" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
