"""The run folder through the `vidtune` command: a failed run leaves a finished folder as it was, stale
results rerun, a killed run resumes, temporaries are removed, outputs respect the umask."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from run_helpers import copy_run, one_line_error, run_args, snapshot, statuses, write_poses
from vidtune.cli import main
from vidtune.lock import LOCK_NAME

# --- 1. a failed run must not touch a finished folder -----------------------------------------


@pytest.mark.slow
def test_failed_run_leaves_a_finished_folder_byte_identical(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    before = snapshot(run)
    other = write_poses(tmp_path / "other", n=8, shift=60)
    line = one_line_error(run_args(tmp_path / "typo_model", other, run), capsys)
    assert "typo_model" in line
    assert snapshot(run) == before and not (run / LOCK_NAME).exists()
    # The original command with a later-stage change: stage 4 reruns on the original poses.
    assert main(run_args(model, pose_dir, run, "--set", "codenoise.weighting=triangular")) == 0
    assert statuses(capsys.readouterr().out) == {
        1: "skipped (done)",
        2: "skipped (done)",
        3: "skipped (done)",
        4: "ran",
    }
    assert (run / "inputs" / "keypoints.npz").read_bytes() == (src / "inputs" / "keypoints.npz").read_bytes()


# --- 3. stale results -------------------------------------------------------------------------


@pytest.mark.slow
def test_deleted_stage_reruns_every_later_stage(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    shutil.rmtree(run / "stage1")
    final_before = (run / "final.mp4").stat().st_mtime_ns
    assert main(run_args(model, pose_dir, run)) == 0
    assert statuses(capsys.readouterr().out) == {k: "ran" for k in (1, 2, 3, 4)}
    assert (run / "final.mp4").stat().st_mtime_ns != final_before


@pytest.mark.slow
def test_poses_changed_in_place_rerun_stage_1(tiny_model_dir, tmp_path, capsys):
    pose_dir = write_poses(tmp_path / "poses")
    run = tmp_path / "run"
    args = run_args(tiny_model_dir, pose_dir, run, "--stages", "1,2")
    assert main(args) == 0 and main(args) == 0
    assert statuses(capsys.readouterr().out) == {1: "skipped (done)", 2: "skipped (done)"}
    f = sorted(pose_dir.glob("*.json"))[2]
    data = json.loads(f.read_text())
    data["people"][0]["pose_keypoints_2d"][0] += 30.0  # the nose moves; same path, same config
    f.write_text(json.dumps(data))
    assert main(run_args(tiny_model_dir, pose_dir, run, "--stages", "1")) == 0
    assert statuses(capsys.readouterr().out) == {1: "ran"}
    assert not (run / "stage2" / "done.json").exists()


# --- 9. disk reclaimed ----------------------------------------------------------------------


def test_temporaries_of_killed_runs_are_removed_and_checkpoints_dropped(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    assert not (src / "stage3" / "checkpoints").exists()  # dropped when stage 3 finished
    run = copy_run(src, tmp_path / "run")
    (run / "stage3" / ".unet.abcd1234.tmp").mkdir()
    (run / "stage3" / ".unet.abcd1234.tmp" / "diffusion_pytorch_model.safetensors").write_bytes(b"0" * 4096)
    (run / ".final.mp4.x1y2z3w4.tmp.mp4").write_bytes(b"0" * 100)
    (run / "stage1" / ".frames.q9w8e7r6.tmp").mkdir()
    os.replace(run / "stage2" / "frames", run / "stage2" / ".frames.old")  # a swap cut between its renames
    assert main(run_args(model, pose_dir, run)) == 0
    out = capsys.readouterr().out
    assert "removed 3 temporaries of an interrupted run" in out and "restored stage2/frames" in out
    assert not [p for p in run.rglob(".*") if p.name != LOCK_NAME]
    assert sorted(os.listdir(run / "stage2" / "frames")) == sorted(os.listdir(src / "stage2" / "frames"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(finished, tmp_path, capsys):
    """SIGKILL once stage 3 has written its first loss row, then rerun: stage 4 equals the uninterrupted run's."""
    model, pose_dir, src = finished
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidtune.cli", *run_args(model, pose_dir, run)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not (run / "stage3" / "loss.csv").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert main(run_args(model, pose_dir, run)) == 0
    a = load_file(str(src / "stage4" / "latents.safetensors"))["x0"]
    b = load_file(str(run / "stage4" / "latents.safetensors"))["x0"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not [p for p in run.rglob(".*") if p.name != LOCK_NAME]


# --- 10. minor -------------------------------------------------------------------------------


def test_outputs_respect_the_umask(finished):
    _, _, run = finished
    assert (run / "config.toml").stat().st_mode & 0o777 == 0o644
    assert (run / "stage1" / "done.json").stat().st_mode & 0o777 == 0o644
    assert (run / "inputs" / "keypoints.npz").stat().st_mode & 0o777 == 0o644
    assert (run / "stage1" / "frames").stat().st_mode & 0o777 == 0o755


@pytest.mark.slow
def test_stages_1_after_a_change_does_not_point_at_the_old_video(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    assert main(run_args(model, pose_dir, run, "--set", "separate.seed=7", "--stages", "1")) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(f"-> {run / 'stage1' / 'stage1.mp4'}")
    assert not (run / "final.mp4").exists()
