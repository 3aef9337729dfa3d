"""Bad values are found before stage 1, one line each, and nothing is written."""

import pytest

from run_helpers import one_line_error, run_args, write_poses
from vidtune.cli import main

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


# --- 6, 7. bad values found before stage 1, one line each ----------------------------------


@pytest.mark.parametrize(
    "extra, key",
    [
        (["--set", "codenoise.stride=8"], "codenoise.stride"),
        (["--set", "codenoise.clip_length=0"], "codenoise.clip_length"),
        (["--set", "codenoise.clip_length=10"], "codenoise.clip_length"),  # 6 frames
        (["--set", "tuning.lr=0"], "tuning.lr"),
        (["--set", "tuning.lr=-1e-5"], "tuning.lr"),
        (["--set", "tuning.typical_fraction=0"], "tuning.typical_fraction"),
        (["--set", "tuning.lora_targets=unet"], "tuning.lora_targets"),
        (["--frames", "-3"], "inputs.frames"),  # names the setting, not the pose folder
        (["--steps", "0"], "sampling.steps"),
        (["--steps", "-1"], "sampling.steps"),
        (["--steps", "1000"], "sampling.steps"),  # DDIM with SD's steps_offset would index timestep 1000
        (["--set", "separate.fusion_step=1.5"], "separate.fusion_step"),
        (["--set", "separate.batch_frames=0"], "separate.batch_frames"),
        (["--set", "sampling.num_train_timesteps=0"], "sampling.num_train_timesteps"),
        (["--set", "sampling.guidance=-1"], "sampling.guidance"),
        (["--set", "codenoise.strength=2.0"], "codenoise.strength"),
        (["--set", "codenoise.tuned_scale=-0.5"], "codenoise.tuned_scale"),
        (["--set", "codenoise.figure_pull_below=0"], "codenoise.figure_pull_below"),
        (["--set", "codenoise.steps=-1"], "codenoise.steps"),
        (["--set", "codenoise.background_margin=-1"], "codenoise.background_margin"),
        (["--set", "codenoise.init=trajectory", "--set", "codenoise.steps=3"], "codenoise.steps"),
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


@pytest.mark.parametrize("fraction", ["0.05", "0.95"])
def test_a_fusion_step_outside_stage_1s_early_stop_names_both_keys(fraction, tiny_model_dir, tmp_path, capsys):
    pose_dir = write_poses(tmp_path / "poses")
    args = run_args(
        tiny_model_dir, pose_dir, tmp_path / "run", "--steps", "4", "--set", f"separate.fusion_step={fraction}"
    )
    line = one_line_error(args, capsys)
    assert "separate.fusion_step" in line and "sampling.steps" in line
    assert not (tmp_path / "run").exists()


def test_a_fusion_step_at_the_end_is_fine_when_stage_1_runs_to_the_end():
    from vidtune import config as C
    from vidtune import validate

    sets = ["sampling.steps=4", "separate.fusion_step=0.95"]
    validate.check_config(C.apply_overrides(C.RunConfig(), [*sets, "separate.stop=end"]))


def test_a_trajectory_start_before_stage_2s_first_step_names_both_keys(tiny_model_dir, tmp_path, capsys):
    """Stage 4 cannot start from stage 2's own latent at a step stage 2 never ran (before the fusion step)."""
    pose_dir = write_poses(tmp_path / "poses")
    sets = ["codenoise.init=trajectory", "codenoise.strength=0.8", "separate.fusion_step=0.5"]
    args = run_args(
        tiny_model_dir, pose_dir, tmp_path / "run", "--steps", "10", *[a for s in sets for a in ("--set", s)]
    )
    line = one_line_error(args, capsys)
    assert "codenoise.strength" in line and "separate.fusion_step" in line
    assert not (tmp_path / "run").exists()
    from vidtune import config as C
    from vidtune import validate

    validate.check_config(C.apply_overrides(C.RunConfig(), [*sets[:2], "codenoise.strength=0.5"]))  # at the fusion step
