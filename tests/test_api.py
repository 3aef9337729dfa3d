"""The Python API (`vidtune.VidtunePipeline`) on the embedded demo model: the issue's example, the
callback, stage by stage, a run folder that resumes; all bit-identical to `vidtune demo`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from golden_data import GOLDEN_TOLERANCE, relative_error
from vidtune import config as C
from vidtune.demo.command import DEFAULT_PROMPT, write_source
from vidtune.results import CodenoiseResult, FusionResult, SeparateResult, TuningResult

pytestmark = pytest.mark.slow
STEPS = ["sampling.steps=6", *C.FRAME_BY_FRAME]  # as `vidtune demo --steps 6`: stage 1 to the end


@pytest.fixture(scope="module")
def poses(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    write_source(root, "walk", 8, DEFAULT_PROMPT, 0)  # what `vidtune demo --frames 8` renders
    return root / "source" / "poses"


@pytest.fixture(scope="module")
def pipe():
    from vidtune import VidtunePipeline

    return VidtunePipeline.from_pretrained("demo")


@pytest.fixture(scope="module")
def golden():
    from pathlib import Path

    from safetensors.torch import load_file

    return load_file(str(Path(__file__).parent / "data" / "golden_demo_f8_s6.safetensors"))


@pytest.fixture(scope="module")
def out(pipe, poses):
    calls = []
    result = pipe(
        poses=poses,
        prompt=DEFAULT_PROMPT,
        overrides=STEPS,
        progress=False,
        callback=lambda stage, step, t, z: calls.append((stage, step, t, tuple(z.shape))),
    )
    return result, calls


@pytest.mark.slow
def test_the_example_runs_and_equals_vidtune_demo(out, golden):
    result, _ = out
    assert result.frames.dtype == np.uint8 and result.frames.shape == (8, 64, 64, 3)
    assert [type(result.stages[k]) for k in (1, 2, 3, 4)] == [
        SeparateResult,
        FusionResult,
        TuningResult,
        CodenoiseResult,
    ]
    assert result.config.inputs.height == 64 and result.config.tuning.trainable == "lora"  # the model's presets
    for key in ("stage1.x0", "stage1.fg", "stage2.x0", "stage4.x0"):  # the recorded CLI run (tests/test_golden.py)
        stage, name = key.split(".")
        got = getattr(result.stages[int(stage[-1])], name).cpu()
        assert relative_error(got, golden[key]) <= GOLDEN_TOLERANCE, key
    assert np.array_equal(result.frames, result.stages[4].frames)


def test_the_callback_sees_every_step_of_every_stage(out):
    result, calls = out
    per_stage = {k: [c for c in calls if c[0] == k] for k in (1, 2, 3, 4)}
    assert [c[1] for c in per_stage[1]] == list(range(6))  # every DDIM step of stage 1
    assert [c[1] for c in per_stage[2]] == list(range(result.stages[1].t_index, 6))  # from the fusion step on
    steps = result.config.tuning.steps  # the demo presets' count
    assert [c[1] for c in per_stage[3]] == list(range(1, steps + 1))  # every optimizer step, with the loss
    assert all(c[3] == () for c in per_stage[3])
    assert len(per_stage[4]) >= 1 and per_stage[4][-1][1] == 5
    assert all(c[3] == (8, 4, 16, 16) for k in (1, 2, 4) for c in per_stage[k])
    timesteps = [c[2] for c in per_stage[1]]
    assert timesteps == sorted(timesteps, reverse=True)


@pytest.mark.slow
def test_a_callback_may_replace_the_latents(pipe, poses, out):
    def zero_at_the_end(stage, step, t, z):
        return torch.zeros_like(z) if stage == 4 and step == 5 else None

    result = pipe(
        poses=poses, prompt=DEFAULT_PROMPT, overrides=STEPS, progress=False, callback=zero_at_the_end, stages=(1, 2, 4)
    )
    assert torch.count_nonzero(result.stages[4].x0) == 0
    assert torch.equal(result.stages[2].x0, out[0].stages[2].x0)  # stages 1-2 on the base UNet again


@pytest.mark.slow
def test_stage_by_stage_equals_the_whole_call(pipe, poses, out):
    inputs = pipe.prepare_inputs(poses, prompt=DEFAULT_PROMPT, overrides=STEPS)
    s1 = pipe.separate(inputs, progress=False)
    s2 = pipe.fuse(s1, progress=False)
    tuned = pipe.tune(s2, progress=False)
    final = pipe.codenoise(s2, tuned, progress=False)
    assert torch.equal(final.x0, out[0].stages[4].x0)
    assert final.info["unet"] == "tuned"


@pytest.mark.slow
def test_a_run_folder_caches_and_resumes(pipe, poses, out, tmp_path):
    first = pipe(poses=poses, prompt=DEFAULT_PROMPT, overrides=STEPS, progress=False, run_dir=tmp_path / "run")
    assert torch.equal(first.stages[4].x0.cpu(), out[0].stages[4].x0)
    assert (tmp_path / "run" / "final.mp4").is_file()
    again = pipe(poses=poses, prompt=DEFAULT_PROMPT, overrides=STEPS, progress=False, run_dir=tmp_path / "run")
    assert all(status.startswith("skipped") for status, _ in again.summary.stages.values())
    assert torch.equal(again.stages[4].x0, out[0].stages[4].x0)
    assert np.array_equal(again.frames, out[0].frames)  # read back from the folder's PNG frames
    assert again.stages[3].kind == "lora" and len(again.stages[3].losses) == first.config.tuning.steps


def test_a_prompt_schedule_reaches_the_frames(pipe, poses):
    inputs = pipe.prepare_inputs(
        poses, prompts={0: DEFAULT_PROMPT, 4: "a red figure walking on a beach at sunset"}, overrides=STEPS
    )
    assert (
        inputs.prompts[:4] == [DEFAULT_PROMPT] * 4 and inputs.prompts[4] == "a red figure walking on a beach at sunset"
    )


@pytest.mark.slow
def test_from_pretrained_on_a_diffusers_folder_with_real_model_options(tiny_model_dir, tmp_path):
    """A local folder in the exact diffusers layout, the dtype / device options, `.to`, a full tuning whose
    base weights come back for the next call (the pipeline's UNet is never run tuned as the base model)."""
    from test_pipeline import write_openpose_folder
    from vidtune import VidtunePipeline

    poses = write_openpose_folder(tmp_path / "json")
    pipe = VidtunePipeline.from_pretrained(
        tiny_model_dir, adapter="", torch_dtype=torch.float32, device="cpu", overrides=["tuning.trainable=full"]
    )
    assert pipe.to("cpu", torch.float32) is pipe and pipe.components.device.type == "cpu"
    assert pipe.config.model.path == str(tiny_model_dir) and pipe.components.adapter is not None  # the folder's own
    sets = [
        "inputs.height=32",
        "inputs.width=32",
        "sampling.steps=3",
        "tuning.steps=2",
        "codenoise.clip_length=4",
        "codenoise.stride=2",
        "separate.segmenter=grabcut",
    ]
    base = {k: v.clone() for k, v in pipe.components.unet.state_dict().items()}
    first = pipe(poses=poses, prompt="a person dancing", overrides=sets, progress=False)
    assert first.stages[4].info["unet"] == "tuned"
    assert all(torch.equal(v, pipe.components.unet.state_dict()[k]) for k, v in base.items())  # base again
    again = pipe(poses=poses, prompt="a person dancing", overrides=sets, progress=False, stages=(1,))
    assert torch.equal(again.stages[1].x0, first.stages[1].x0)  # stage 1 ran the base UNet again
    assert all(torch.equal(v, pipe.components.unet.state_dict()[k]) for k, v in base.items())
