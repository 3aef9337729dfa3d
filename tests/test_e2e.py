"""End to end through the `vidtune` command, as a user runs it (subprocesses, tiny model)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vidtune.video import list_image_files, video_info

RAGA = "data/openpose/DurhamARC__raga-pose-estimation/example_1person"  # 125 frames, BODY_25


def vidtune(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vidtune.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=900
    )


@pytest.fixture(scope="module")
def long_run(tmp_path_factory, shared_dir):
    """make-tiny, then all four stages on a real 125-frame OpenPose sequence."""
    root = tmp_path_factory.mktemp("e2e")
    made = vidtune("models", "make-tiny", str(root / "tiny"))
    assert made.returncode == 0, made.stderr
    config = root / "run.toml"
    config.write_text(f"""
[model]
path = "{root / "tiny"}"
adapter = ""

[inputs]
poses = "{shared_dir / RAGA}"
prompt = "a person singing on a stage"
height = 32
width = 32

[sampling]
steps = 3
guidance = 3.0

[separate]
segmenter = "grabcut"
batch_frames = 32

[tuning]
trainable = "lora"
steps = 4
checkpoint_every = 2

[codenoise]
clip_length = 16
stride = 8
max_batch_frames = 64
""")
    result = vidtune("run", str(config), "--out", str(root / "run"), "--quiet")
    return root, config, result


@pytest.mark.slow
def test_all_four_stages_on_a_real_sequence_of_125_frames(long_run):
    root, _, result = long_run
    assert result.returncode == 0, result.stderr[-3000:]
    run = root / "run"
    assert video_info(run / "final.mp4").num_frames == 125
    assert len(list_image_files(run / "stage4" / "frames")) == 125
    for k in (1, 2, 3, 4):
        assert json.loads((run / f"stage{k}" / "done.json").read_text())["stage"] == k
    assert json.loads((run / "stage4" / "done.json").read_text())["unet"] == "tuned"
    assert (run / "stage3" / "loss.csv").is_file() and (run / "stage3" / "unet_lora.safetensors").is_file()
    assert "final.mp4" in result.stdout  # the summary line says where the output is


@pytest.mark.slow
def test_rerun_skips_and_stage4_alone_reloads_the_tuned_unet(long_run):
    root, config, first = long_run
    assert first.returncode == 0
    again = vidtune("run", str(config), "--out", str(root / "run"), "--quiet")
    assert again.returncode == 0 and again.stdout.count("skipped (done)") == 4, again.stdout
    alone = vidtune(
        "run",
        str(config),
        "--out",
        str(root / "run"),
        "--stages",
        "4",
        "--quiet",
        "--set",
        "codenoise.stride=16",
        "--set",
        "codenoise.mode=overlap",
    )
    assert alone.returncode == 0, alone.stderr[-2000:]
    info = json.loads((root / "run" / "stage4" / "done.json").read_text())
    assert info["unet"] == "tuned" and info["clips"] == 8  # 125 frames, M = S = 16: 7 clips + the tail clip
    assert video_info(root / "run" / "final.mp4").num_frames == 125


@pytest.mark.slow
def test_plan_prints_the_clips_without_loading_a_model(long_run):
    root, config, _ = long_run
    result = vidtune("plan", str(config), "--set", "codenoise.mode=overlap")
    assert result.returncode == 0, result.stderr
    assert "[109, 125)" in result.stdout or "109" in result.stdout  # the tail clip that covers the last frames


def test_help_lists_the_commands():
    result = vidtune("--help")
    assert result.returncode == 0
    for command in ("run", "plan", "demo", "evaluate", "ablate", "poses", "models", "train-demo"):
        assert command in result.stdout
