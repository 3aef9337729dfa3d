"""Hardening: every bad input and interrupted run, through the `vidtune` command on the tiny model.

One finished run folder (all four stages, 6 frames of 32x32, 2 steps) is made once per module;
each test works on a copy of it (copies keep the files' modification times).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidtune import fingerprint, poses
from vidtune.cli import build_config, main, make_parser
from vidtune.errors import VidtuneError
from vidtune.lock import LOCK_NAME, RunLock
from walking import BODY25_STANDING

N = 6


def write_poses(folder: Path, n: int = N, shift: float = 0.0, frame_fn=None) -> Path:
    """A BODY_25 OpenPose JSON sequence of one walking person; `frame_fn(i, kps)` may alter frame i's (25, 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kps = np.concatenate([BODY25_STANDING + [4 * i + shift, 0], np.full((25, 1), 0.9)], axis=1)
        if frame_fn is not None:
            kps = frame_fn(i, kps)
        people = [{"person_id": [-1], "pose_keypoints_2d": kps.flatten().tolist()}]
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def run_args(model: Path, pose_dir: Path, out: Path, *extra: str) -> list[str]:
    """`vidtune run` on the tiny model, small enough for the CPU tests."""
    sets = [
        "sampling.guidance=3.0",
        "codenoise.clip_length=4",
        "codenoise.stride=2",
        "tuning.steps=2",
        "tuning.checkpoint_every=1",
        "separate.segmenter=grabcut",
    ]
    args = [
        "run",
        "--model",
        str(model),
        "--poses",
        str(pose_dir),
        "--prompt",
        "a person dancing",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def one_line_error(args: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr and no traceback. Returns the line."""
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    # (progress bars of a loading library are not messages)
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vidtune: error: ")
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root: content, mode and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def statuses(stdout: str) -> dict[int, str]:
    """Stage -> 'ran' / 'skipped (done)' from the summary line."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("vidtune: stage ")][-1]
    out = {}
    for part in line.split(" -> ")[0].removeprefix("vidtune: ").split("; "):
        words = part.split()
        out[int(words[1])] = " ".join(words[2:-1])
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir):
    """(model, poses, run folder) of a finished four-stage run made under umask 022."""
    root = tmp_path_factory.mktemp("hardening")
    pose_dir = write_poses(root / "poses")
    run = root / "run"
    old = os.umask(0o022)
    try:
        assert main(run_args(tiny_model_dir, pose_dir, run)) == 0
    finally:
        os.umask(old)
    return tiny_model_dir, pose_dir, run


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


def test_model_identity_follows_the_weight_files(tmp_path):
    from vidtune.config import ModelConfig

    (tmp_path / "m" / "unet").mkdir(parents=True)
    (tmp_path / "m" / "model_index.json").write_text("{}")
    weights = tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"a" * 10)
    cfg = ModelConfig(path=str(tmp_path / "m"), adapter="")
    first = fingerprint.model_identity(cfg)
    assert fingerprint.model_identity(cfg) == first
    weights.write_bytes(b"b" * 11)  # new weights saved at the same path
    assert fingerprint.model_identity(cfg) != first


# --- 4. NaN ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sets, key",
    [
        (["sampling.beta_start=0.5", "sampling.beta_end=0.1"], "sampling.beta_end"),
        (["sampling.beta_start=0.1", "sampling.beta_end=0.5"], "sampling.beta_start"),
        (["sampling.eta=nan"], "sampling.eta"),
        (["tuning.lr=inf"], "tuning.lr"),
    ],
)
def test_invalid_schedules_are_config_errors(sets, key, tiny_model_dir, tmp_path, capsys):
    pose_dir = write_poses(tmp_path / "poses")
    extra = [x for s in sets for x in ("--set", s)]
    assert key in one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run", *extra), capsys)
    assert not (tmp_path / "run").exists()


def test_nan_latents_stop_the_stage_unmarked(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from vidtune import sampling

    pose_dir = write_poses(tmp_path / "poses")
    real = sampling.guided_eps
    monkeypatch.setattr(sampling, "guided_eps", lambda *a, **k: real(*a, **k) * float("nan"))
    line = one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run", "--stages", "1"), capsys)
    assert "stage 1" in line and "NaN" in line and "step 1 of 2" in line
    assert not (tmp_path / "run" / "stage1" / "done.json").exists()


def test_nan_loss_stops_stage_3_unmarked(finished, tmp_path, capsys, monkeypatch):
    from vidtune.stages import tuning

    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    monkeypatch.setattr(tuning.TrainLoop, "forward_backward", lambda self, batch: float("nan"))
    line = one_line_error(run_args(model, pose_dir, run, "--set", "tuning.lr=1e-4"), capsys)
    assert "stage 3: the loss is nan at step 1" in line
    assert not (run / "stage3" / "done.json").exists() and (run / "stage2" / "done.json").exists()


# --- 5. degenerate poses ----------------------------------------------------------------------


def test_one_absurd_frame_is_dropped_and_counted(tmp_path):
    clean = poses.load_poses(write_poses(tmp_path / "clean"))
    for name, fn in [
        ("huge", lambda i, k: k * [1e30, 1e30, 1] if i == 3 else k),
        ("negated", lambda i, k: k * [-1, -1, 1] if i == 3 else k),
    ]:
        seq = poses.load_poses(write_poses(tmp_path / name, frame_fn=fn))
        assert (seq.width, seq.height) == (clean.width, clean.height), name
        assert seq.dropped_joints == 18 and "WARNING: 18 implausible keypoints dropped" in seq.summary()
        assert poses.person_box(seq.keypoints) == pytest.approx(poses.person_box(clean.keypoints), abs=8)
        images = poses.render_sequence(seq, 64, 64, framing="person")
        assert all(img.any() for img in images)


@pytest.mark.parametrize("kind", ["zero", "nan", "negative"])
def test_sequences_without_a_usable_pose_are_refused(kind, tiny_model_dir, tmp_path, capsys):
    fn = {"zero": lambda i, k: k * 0, "nan": lambda i, k: k * np.nan, "negative": lambda i, k: -k}[kind]
    pose_dir = write_poses(tmp_path / "poses", frame_fn=fn)
    line = one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run"), capsys)
    assert "no usable pose" in line and str(pose_dir) in line
    assert not (tmp_path / "run").exists()


# --- 6, 7. bad values found before stage 1, one line each ----------------------------------


@pytest.mark.parametrize(
    "extra, key",
    [
        (["--set", "codenoise.stride=8"], "codenoise.stride"),
        (["--set", "codenoise.clip_length=0"], "codenoise.clip_length"),
        (["--set", "codenoise.clip_length=10"], "codenoise.clip_length"),  # 6 frames
        (["--set", "tuning.lr=0"], "tuning.lr"),
        (["--set", "tuning.lr=-1e-5"], "tuning.lr"),
        (["--steps", "0"], "sampling.steps"),
        (["--steps", "-1"], "sampling.steps"),
        (["--steps", "1000"], "sampling.steps"),  # DDIM with SD's steps_offset would index timestep 1000
        (["--set", "separate.fusion_step=1.5"], "separate.fusion_step"),
        (["--set", "separate.batch_frames=0"], "separate.batch_frames"),
        (["--set", "sampling.num_train_timesteps=0"], "sampling.num_train_timesteps"),
        (["--set", "sampling.guidance=-1"], "sampling.guidance"),
        (["--set", "codenoise.strength=2.0"], "codenoise.strength"),
    ],
)
def test_bad_values_exit_2_before_anything_is_written(extra, key, tiny_model_dir, tmp_path, capsys):
    pose_dir = write_poses(tmp_path / "poses")
    assert key in one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run", *extra), capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_guidance_up_to_1_means_no_cfg_and_is_accepted(tiny_model_dir, tmp_path, capsys):
    pose_dir = write_poses(tmp_path / "poses")
    assert (
        main(run_args(tiny_model_dir, pose_dir, tmp_path / "run", "--set", "sampling.guidance=0.5", "--stages", "1"))
        == 0
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["--frames", "6"], "codenoise.clip_length = 8"),
        (["--steps", "0"], "--steps 0"),
    ],
)
def test_demo_bad_arguments_exit_2_before_stage_1(args, words, tmp_path, capsys):
    line = one_line_error(["demo", "--out", str(tmp_path / "demo"), "--quiet", *args], capsys)
    assert words in line
    assert not (tmp_path / "demo" / "stage1").exists()


def test_unwritable_outputs_are_one_line_errors(finished, tmp_path, capsys):
    model, pose_dir, _ = finished
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert str(a_file) in one_line_error(run_args(model, pose_dir, a_file / "run"), capsys)
    assert "/proc/vidtune_x" in one_line_error(run_args(model, pose_dir, Path("/proc/vidtune_x")), capsys)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        (frames / f"f_{i}.png").write_bytes(_png())
    line = one_line_error(["evaluate", str(frames), "--json", "/proc/vidtune_x.json"], capsys)
    assert "/proc/vidtune_x.json" in line
    assert capsys.readouterr().out == ""


def _png() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.full((16, 16, 3), 128, np.uint8))
    return buf.tobytes()


def _probe_tmpfs() -> str:
    """Why a tmpfs cannot be mounted here ('' when it can): decided once, at collection."""
    import tempfile

    with tempfile.TemporaryDirectory() as where:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where], capture_output=True, text=True
        )
        if result.returncode != 0:
            return f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}): needs root"
        subprocess.run(["umount", where], check=False)
    return ""


_NO_TMPFS = _probe_tmpfs()


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(bool(_NO_TMPFS), reason=_NO_TMPFS or "tmpfs available")
def test_read_only_and_full_disks_are_one_line_errors(finished, tmp_path, capsys):
    model, pose_dir, _ = finished
    ro, full = tmp_path / "ro", tmp_path / "full"
    _mount_tmpfs(ro, "size=1m,ro")
    try:
        assert "read-only" in one_line_error(run_args(model, pose_dir, ro / "run"), capsys).lower()
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    _mount_tmpfs(full, "size=48k")
    try:
        code = main(run_args(model, pose_dir, full / "run"))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        ours = [line for line in err.splitlines() if line.startswith("vidtune: error: ")]
        assert len(ours) == 1 and "No space left on device" in ours[0] and str(full / "run") in ours[0], err
    finally:
        subprocess.run(["umount", str(full)], check=False)


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


def test_model_path_in_a_toml_picks_up_its_adapter_folder(tiny_model_dir, tmp_path):
    assert (Path(tiny_model_dir) / "adapter").is_dir()
    toml = tmp_path / "run.toml"
    toml.write_text(f'[model]\npath = "{tiny_model_dir}"\n')
    cfg = build_config(make_parser().parse_args(["run", str(toml)]))
    assert cfg.model.adapter == ""
    toml.write_text(f'[model]\npath = "{tiny_model_dir}"\nadapter = "some/adapter"\n')
    assert build_config(make_parser().parse_args(["run", str(toml)])).model.adapter == "some/adapter"


@pytest.mark.slow
def test_stages_1_after_a_change_does_not_point_at_the_old_video(finished, tmp_path, capsys):
    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    assert main(run_args(model, pose_dir, run, "--set", "separate.seed=7", "--stages", "1")) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith(f"-> {run / 'stage1' / 'stage1.mp4'}")
    assert not (run / "final.mp4").exists()


def test_evaluate_one_frame_explains_the_dashes(tmp_path, capsys):
    frames = tmp_path / "one"
    frames.mkdir()
    (frames / "f_0.png").write_bytes(_png())
    assert main(["evaluate", str(frames)]) == 0
    assert "one frame: every metric compares consecutive frames" in capsys.readouterr().out


# --- 8. merge weights: memory linear in the frame count ------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "triangular", "gaussian"])
def test_per_clip_merge_weights_equal_the_dense_ones(kind):
    from vidtune.method.windows import clip_merge_weights, clip_windows, frame_merge_weights
    from vidtune.plan import plan_text

    n = 37
    windows = clip_windows(n, 16, 6)
    dense = frame_merge_weights(n, windows, kind)
    per_clip = clip_merge_weights(n, windows, kind)
    for k, (s, e) in enumerate(windows):
        assert torch.equal(per_clip[k], dense[k, s:e])
    prompts = ["a"] * len(windows)
    assert plan_text(n, windows, per_clip, prompts, num_steps=5, width=10) == plan_text(
        n, windows, dense, prompts, num_steps=5, width=10
    )


@pytest.mark.slow
def test_plan_of_a_million_frames_stays_under_1_gb(tmp_path):
    pose_dir = write_poses(tmp_path / "poses")
    code = (
        "import resource, sys; from vidtune.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "plan",
            "--poses",
            str(pose_dir),
            "--prompt",
            "a person",
            "--frames",
            "1000000",
            "--model",
            str(tmp_path / "no_model"),
            "--set",
            "codenoise.mode=overlap",  # the larger plan: 124999 overlapping clips (shifted: 62500)
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "1000000 frames, 124999 clips of 16 frames" in result.stdout
    assert "clips not listed" in result.stdout and "not plotted" in result.stdout
    assert "MiB of merge weights" in result.stdout
    maxrss = int(result.stdout.split("maxrss_kib")[-1].split()[0]) * 1024
    assert maxrss < 2**30, f"{maxrss / 2**20:.0f} MiB"
