"""The run folder end to end on the tiny model: stage artifacts, determinism, the resume rule, CLI errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from vidtune import config as C
from vidtune import pipeline
from vidtune.cli import main
from vidtune.video import list_image_files, video_info
from walking import BODY25_STANDING

N = 6


def write_openpose_folder(folder: Path, n: int = N) -> Path:
    """A small BODY_25 OpenPose JSON sequence: one walking person plus, in frame 2, nobody."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        people = []
        if i != 2:
            kps = np.concatenate([BODY25_STANDING + [4 * i, 0], np.full((25, 1), 0.9)], axis=1)
            people.append({"person_id": [-1], "pose_keypoints_2d": kps.flatten().tolist()})
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def tiny_config(model: Path, poses: Path, **sections) -> C.RunConfig:
    overrides = [
        f"model.path={model}",
        "model.adapter=",
        f"inputs.poses={poses}",
        "inputs.prompt=a person dancing",
        "inputs.height=32",
        "inputs.width=32",
        "sampling.steps=4",
        "sampling.guidance=3.0",
        "codenoise.clip_length=4",
        "codenoise.stride=2",
        "tuning.steps=4",
        "tuning.checkpoint_every=2",
    ]
    overrides += [f"{k}={v}" for k, v in sections.items()]
    return C.apply_overrides(C.RunConfig(), overrides)


@pytest.fixture(scope="module")
def poses_dir(tmp_path_factory) -> Path:
    return write_openpose_folder(tmp_path_factory.mktemp("poses") / "json")


@pytest.mark.slow
def test_stage1_writes_frames_masks_latents_and_is_deterministic(tiny_model_dir, tiny_components, poses_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, poses_dir)
    runs = []
    for name in ("a", "b"):
        summary = pipeline.run(
            cfg, tmp_path / name, stages=[1], progress=False, components=tiny_components, log=lambda s: None
        )
        assert summary.stages[1][0] == "ran"
        runs.append(tmp_path / name / "stage1")
    s1 = runs[0]
    assert len(list_image_files(s1 / "frames")) == N and len(list_image_files(s1 / "masks")) == N
    assert video_info(s1 / "stage1.mp4").num_frames == N
    t = load_file(str(s1 / "latents.safetensors"))
    assert t["z_t"].shape == (N, 4, 8, 8) and t["x0"].shape == (N, 4, 8, 8) and t["fg"].shape == (N, 1, 8, 8)
    assert int(t["t_index"]) == 2  # fusion_step 0.5 of 4 steps
    done = json.loads((s1 / "done.json").read_text())
    assert done["config_hash"] == C.stage_hash(cfg, 1) and done["segmenter"] in ("sam", "grabcut")
    other = load_file(str(runs[1] / "latents.safetensors"))
    for key in ("z_t", "x0", "fg"):
        assert torch.equal(t[key], other[key]), key
    different = pipeline.run(
        C.apply_overrides(cfg, ["separate.seed=5"]),
        tmp_path / "c",
        stages=[1],
        progress=False,
        components=tiny_components,
        log=lambda s: None,
    )
    assert different.stages[1][0] == "ran"
    assert not torch.equal(load_file(str(tmp_path / "c/stage1/latents.safetensors"))["x0"], t["x0"])
    assert (tmp_path / "a" / "config.toml").is_file() and C.load(tmp_path / "a" / "config.toml") == cfg


def _stage1_rows(cfg: C.RunConfig, folder: Path, components, stages=(1,)) -> int:
    """UNet rows (frames x CFG branches) evaluated by a run of `stages`."""
    rows: list[int] = []
    hook = components.unet.register_forward_pre_hook(lambda mod, args: rows.append(args[0].shape[0]))
    try:
        pipeline.run(cfg, folder, stages=list(stages), progress=False, components=components, log=lambda s: None)
    finally:
        hook.remove()
    return sum(rows)


@pytest.mark.slow
def test_stage1_can_stop_at_the_fusion_step_and_segment_the_prediction_there(
    tiny_model_dir, tiny_components, poses_dir, tmp_path, monkeypatch
):
    """separate.stop = fusion: the same z_t as a full stage 1, the UNet rows `vidtune plan` counts (fewer),
    x0 is the clean latent DDIM predicts at t, and stage 2 goes on from it as from a full stage 1."""
    from diffusers import DDIMScheduler

    from vidtune import plan

    cfg = tiny_config(tiny_model_dir, poses_dir, **{"separate.segmenter": "grabcut", "sampling.steps": 6})
    predicted: list[torch.Tensor] = []  # DDIM's pred_original_sample at every step of the full run
    step = DDIMScheduler.step

    def recording_step(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        predicted.append(out[1].cpu())
        return out

    rows = {}
    for stop in ("end", "fusion"):
        monkeypatch.setattr(DDIMScheduler, "step", recording_step if stop == "end" else step)
        c = C.apply_overrides(cfg, [f"separate.stop={stop}"])
        rows[stop] = _stage1_rows(c, tmp_path / stop, tiny_components)
        assert rows[stop] == plan.unet_evaluations(c, N)["stage1"] * N, stop
    assert rows["fusion"] == (3 + 1) * 2 * N < rows["end"] == 6 * 2 * N  # t_index 3 of 6 steps, CFG
    full, early = (load_file(str(tmp_path / k / "stage1/latents.safetensors")) for k in ("end", "fusion"))
    assert torch.equal(full["z_t"], early["z_t"]) and int(full["t_index"]) == int(early["t_index"]) == 3
    assert len(list_image_files(tmp_path / "fusion/stage1/masks")) == N
    assert not torch.equal(early["x0"], full["x0"]) and not torch.equal(early["x0"], early["z_t"])
    assert torch.allclose(early["x0"], predicted[3], atol=1e-5)  # diffusers' DDIM's own x0-hat at step 3
    # Stage 2 takes the eps at t back from stage 1's x0 instead of evaluating it again: the eps the UNet gives
    # there, and no UNet row for it (the steps from t on only).
    check = _record_stage2_eps(monkeypatch)
    stage2 = _stage1_rows(
        C.apply_overrides(cfg, ["separate.stop=fusion"]), tmp_path / "fusion", tiny_components, (1, 2)
    )
    assert stage2 == plan.unet_evaluations(C.apply_overrides(cfg, ["separate.stop=fusion"]), N)["stage2"] * N
    assert stage2 == (6 - 3) * 2 * N
    check(step=3, atol=1e-5)


def _record_stage2_eps(monkeypatch):
    """Record what stage 2 recovers at t (`vp_eps`) and its eps function; returns a check that the recovered
    eps is the one the UNet gives at t, on the input stage 2's scheduler scales then (Euler: by its sigma)."""
    from vidtune.stages import fusion as fusion_stage

    made, recovered = [], []
    split, vp_eps = fusion_stage.split_eps_fn, fusion_stage.vp_eps
    monkeypatch.setattr(fusion_stage, "split_eps_fn", lambda *a, **k: made.append(split(*a, **k)) or made[-1])
    monkeypatch.setattr(
        fusion_stage,
        "vp_eps",
        lambda sch, t, z, x0: (
            recovered.append((sch.scale_model_input(z, t), t, vp_eps(sch, t, z, x0))) or recovered[-1][2]
        ),
    )

    def check(step: int, atol: float) -> None:
        assert len(recovered) == 1 and len(made) == 1
        model_input, t, eps = recovered[0]
        with torch.no_grad():
            evaluated = made[0](model_input, t, step)
        assert torch.allclose(eps, evaluated.float(), atol=atol) and eps.abs().mean() > 0.1

    return check


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["euler", "dpmpp", "ddpm"])
def test_stage2_takes_the_eps_at_t_back_from_stage1_with_every_sampler(
    sampler, tiny_model_dir, tiny_components, poses_dir, tmp_path, monkeypatch
):
    """Whatever the sampler's scaling (Euler's sigma-scaled latents, DPM-Solver's multistep state), the eps
    stage 2 recovers from stage 1's x0 at t is the UNet's there, and stage 2 evaluates its steps from t only."""
    from vidtune import plan

    cfg = tiny_config(
        tiny_model_dir,
        poses_dir,
        **{"separate.segmenter": "grabcut", "sampling.steps": 6, "sampling.scheduler": sampler},
    )
    check = _record_stage2_eps(monkeypatch)
    _stage1_rows(cfg, tmp_path / "run", tiny_components)
    rows = _stage1_rows(cfg, tmp_path / "run", tiny_components, (1, 2))
    assert rows == plan.unet_evaluations(cfg, N)["stage2"] * N == (6 - 3) * 2 * N
    check(step=3, atol=1e-4)


@pytest.mark.slow
def test_resume_rule_reruns_only_changed_stage_and_later(tiny_model_dir, poses_dir, tmp_path):
    from vidtune.models import load_components

    comps = load_components(tiny_model_dir)  # stage 3 tunes the UNet in place: use a private copy
    cfg = tiny_config(tiny_model_dir, poses_dir, **{"separate.segmenter": "grabcut"})
    first = pipeline.run(cfg, tmp_path / "r", stages=[1, 2, 3], progress=False, components=comps, log=lambda s: None)
    assert [first.stages[k][0] for k in (1, 2, 3)] == ["ran"] * 3
    again = pipeline.run(cfg, tmp_path / "r", stages=[1, 2, 3], progress=False, components=comps, log=lambda s: None)
    assert [again.stages[k][0] for k in (1, 2, 3)] == ["skipped (done)"] * 3
    stage1_mtime = (tmp_path / "r/stage1/done.json").stat().st_mtime_ns
    changed = C.apply_overrides(cfg, ["tuning.lr=1e-4"])
    third = pipeline.run(
        changed, tmp_path / "r", stages=[1, 2, 3], progress=False, components=comps, log=lambda s: None
    )
    assert [third.stages[k][0] for k in (1, 2, 3)] == ["skipped (done)", "skipped (done)", "ran"]
    assert (tmp_path / "r/stage1/done.json").stat().st_mtime_ns == stage1_mtime
    fusion = C.apply_overrides(changed, ["fusion.w_b=0.5"])
    fourth = pipeline.run(
        fusion, tmp_path / "r", stages=[1, 2, 3], progress=False, components=comps, log=lambda s: None
    )
    assert [fourth.stages[k][0] for k in (1, 2, 3)] == ["skipped (done)", "ran", "ran"]


def test_stage_without_its_prerequisite_is_a_clear_error(tiny_model_dir, poses_dir, tmp_path, capsys):
    code = main(
        [
            "run",
            "--model",
            str(tiny_model_dir),
            "--poses",
            str(poses_dir),
            "--prompt",
            "a person",
            "--height",
            "32",
            "--width",
            "32",
            "--steps",
            "2",
            "--stages",
            "3",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "stage 3 needs stage 2" in err and "Traceback" not in err


def _cli_error(args, capsys) -> str:
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_bad_inputs_give_one_line_errors(tiny_model_dir, poses_dir, tmp_path, capsys):
    base = [
        "run",
        "--model",
        str(tiny_model_dir),
        "--prompt",
        "a person",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "2",
        "--stages",
        "1",
        "--quiet",
    ]
    bad_json = tmp_path / "bad"
    bad_json.mkdir()
    (bad_json / "x_000000000000_keypoints.json").write_text("{not json")
    assert "x_000000000000_keypoints.json" in _cli_error(
        base + ["--poses", str(bad_json), "--out", str(tmp_path / "o1")], capsys
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty" in _cli_error(base + ["--poses", str(empty), "--out", str(tmp_path / "o2")], capsys)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "is a file" in _cli_error(base + ["--poses", str(poses_dir), "--out", str(a_file)], capsys)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sampling]\nstepz = 3\n")
    assert "sampling.stepz" in _cli_error(["run", str(cfg), "--out", str(tmp_path / "o3")], capsys)
    cfg.write_text("[sampling]\nsteps = 'x'\n")
    assert "sampling.steps must be int" in _cli_error(["run", str(cfg), "--out", str(tmp_path / "o4")], capsys)
    msg = _cli_error(
        base + ["--poses", str(poses_dir), "--set", 'inputs.prompts={"2"="late start"}', "--out", str(tmp_path / "o5")],
        capsys,
    )
    assert "prompt" in msg and "0" in msg
    broken = tmp_path / "broken_model"
    broken.mkdir()
    (broken / "model_index.json").write_text((Path(tiny_model_dir) / "model_index.json").read_text())
    assert "unet" in _cli_error(
        [
            "run",
            "--model",
            str(broken),
            "--poses",
            str(poses_dir),
            "--prompt",
            "a",
            "--stages",
            "1",
            "--out",
            str(tmp_path / "o6"),
        ],
        capsys,
    )
    assert not (tmp_path / "o6" / "stage1" / "done.json").exists()


def test_pose_frame_size_mismatch_is_named(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (64, 64)).save(folder / "p_000.png")
    Image.new("RGB", (32, 64)).save(folder / "p_001.png")
    msg = _cli_error(["poses", "render", str(folder), str(tmp_path / "out")], capsys)
    assert "p_001.png" in msg


def test_sdxl_folder_is_refused_as_such(tiny_model_dir, poses_dir, tmp_path, capsys):
    import shutil

    sdxl = tmp_path / "sdxl"
    shutil.copytree(tiny_model_dir, sdxl)
    index = json.loads((sdxl / "model_index.json").read_text())
    index["_class_name"] = "StableDiffusionXLPipeline"
    (sdxl / "model_index.json").write_text(json.dumps(index))
    msg = _cli_error(
        [
            "run",
            "--model",
            str(sdxl),
            "--poses",
            str(poses_dir),
            "--prompt",
            "a",
            "--stages",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert "SDXL" in msg or "XL" in msg


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["full", "lora"])
def test_a_tuned_unet_is_never_used_as_the_base_model(kind, tiny_model_dir, poses_dir, tmp_path):
    """The tuned weights live only inside stage 3's and stage 4's scopes: after a run that tuned the UNet
    (every weight, or a LoRA) it is the base model bit for bit, so a rerun gives the first run's stage 1."""
    from vidtune.models import load_components
    from vidtune.results import SeparateResult

    cfg = tiny_config(tiny_model_dir, poses_dir, **{"separate.segmenter": "grabcut", "tuning.trainable": kind})
    comps = load_components(tiny_model_dir)
    base = {k: v.clone() for k, v in comps.unet.state_dict().items()}
    summary = pipeline.run(
        cfg, tmp_path / "a", stages=[1, 2, 3, 4], progress=False, components=comps, log=lambda s: None
    )
    assert summary.stages[4][0] == "ran"
    now = {k.replace(".base_layer", ""): v for k, v in comps.unet.state_dict().items()}  # peft's wrapper names
    assert now.keys() == base.keys()  # no adapter weights left behind
    assert all(torch.equal(v, now[k]) for k, v in base.items())
    pipeline.run(cfg, tmp_path / "b", stages=[1], progress=False, components=comps, log=lambda s: None)
    a, b = SeparateResult.load(tmp_path / "a" / "stage1"), SeparateResult.load(tmp_path / "b" / "stage1")
    assert torch.equal(a.x0, b.x0)


@pytest.mark.slow
def test_stage_2_decodes_then_applies_the_background_plate_and_keeps_its_latents(
    tiny_model_dir, tiny_components, poses_dir, tmp_path
):
    from vidtune.method.plate import PlateConfig, composite
    from vidtune.results import FusionResult
    from vidtune.stages.common import decode_frames

    runs = {}
    for plate in (False, True):
        cfg = tiny_config(tiny_model_dir, poses_dir, **{"fusion.plate": str(plate).lower()})
        pipeline.run(
            cfg, tmp_path / str(plate), stages=[1, 2], progress=False, components=tiny_components, log=lambda s: None
        )
        runs[plate] = FusionResult.load(tmp_path / str(plate) / "stage2")
    off, on = runs[False], runs[True]
    assert torch.equal(off.x0, on.x0) and on.fg_pixel is not None and on.fg_pixel.shape == (N, 32, 32)
    assert np.array_equal(off.frames, decode_frames(tiny_components.vae, off.x0, batch=8, progress=False))
    # stage 2 = the plain decode of its latents, then the plate of those frames with stage 1's pixel masks
    assert np.array_equal(on.frames, composite(off.frames, on.fg_pixel.numpy(), PlateConfig()))


@pytest.mark.slow
def test_a_rerun_with_another_output_reencodes_the_videos_and_reruns_no_stage(
    tiny_model_dir, tiny_components, poses_dir, tmp_path
):
    cfg = tiny_config(tiny_model_dir, poses_dir, **{"separate.segmenter": "grabcut"})
    logs: list[str] = []
    first = pipeline.run(cfg, tmp_path / "r", stages=[1], progress=False, components=tiny_components, log=logs.append)
    video = tmp_path / "r" / "stage1" / "stage1.mp4"
    assert first.stages[1][0] == "ran" and video_info(video).width == 32 * 8  # 32 px frames: auto factor 8
    lossless = C.apply_overrides(cfg, ["output.lossless=true", "output.upscale=1"])
    again = pipeline.run(
        lossless, tmp_path / "r", stages=[1], progress=False, components=tiny_components, log=logs.append
    )
    assert again.stages[1][0] == "skipped (done)"
    assert video_info(video).width == 32 and (tmp_path / "r" / "stage1" / "stage1.mkv").is_file()
    assert json.loads((tmp_path / "r" / "stage1" / "stage1.video.json").read_text())["upscale"] == 1
    assert any("re-encoded" in line for line in logs)


def test_recompute_drops_the_stage_and_every_later_one_then_keeps_the_new_result_timed(monkeypatch):
    """The one execution path of the run folder and the API: results after a rerun stage are stale."""
    import dataclasses
    import time

    @dataclasses.dataclass(frozen=True)
    class Done:
        stage: int
        seconds: float = 0.0

    def compute(k, cache, *args):
        time.sleep(0.01)
        return Done(k)

    cache = pipeline.StageCache(None, C.RunConfig(), components=None, inputs=None)
    cache.results = {k: Done(k) for k in (1, 2, 3, 4)}
    monkeypatch.setattr(pipeline, "compute_stage", compute)
    out = cache.recompute(2, False, None, print)
    assert set(cache.results) == {1, 2} and cache.results[2] is out and out.stage == 2 and out.seconds >= 0.01
