"""A NaN in a stage's latents or loss stops it without marking it done."""

from run_helpers import copy_run, one_line_error, run_args, write_poses


def test_nan_latents_stop_the_stage_unmarked(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from vidtune import sampling

    pose_dir = write_poses(tmp_path / "poses")
    real = sampling.guided_eps
    monkeypatch.setattr(sampling, "guided_eps", lambda *a, **k: real(*a, **k) * float("nan"))
    line = one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run", "--stages", "1"), capsys)
    assert "stage 1" in line and "NaN" in line and "step 1 of 1" in line  # 2 steps; stage 1 stops at t after one
    assert not (tmp_path / "run" / "stage1" / "done.json").exists()


def test_nan_loss_stops_stage_3_unmarked(finished, tmp_path, capsys, monkeypatch):
    from vidtune.stages import tuning

    model, pose_dir, src = finished
    run = copy_run(src, tmp_path / "run")
    monkeypatch.setattr(tuning.TrainLoop, "forward_backward", lambda self, batch: float("nan"))
    line = one_line_error(run_args(model, pose_dir, run, "--set", "tuning.lr=1e-4"), capsys)
    assert "stage 3: the loss is nan at step 1" in line
    assert not (run / "stage3" / "done.json").exists() and (run / "stage2" / "done.json").exists()
