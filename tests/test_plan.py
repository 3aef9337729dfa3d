"""`vidtune plan`: stage 4's clips, prompts, evaluations and memory estimate, without building a model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from run_helpers import write_poses
from vidtune import config as C
from vidtune import plan
from vidtune.cli import main
from vidtune.errors import VidtuneError
from vidtune.method.windows import clip_windows
from vidtune.testing import tiny_configs

POSES = "data/openpose/DurhamARC__raga-pose-estimation/example_1person"  # 125 frames of OpenPose JSON


def tiny_cfg(model: Path, poses: Path, *overrides: str) -> C.RunConfig:
    return C.apply_overrides(
        C.RunConfig(),
        [
            f"model.path={model}",
            "model.adapter=",
            f"inputs.poses={poses}",
            "inputs.prompt=a person dancing",
            "inputs.height=32",
            "inputs.width=32",
            "sampling.steps=6",
            "sampling.guidance=3.0",
            "codenoise.init=noise",  # every step (the default starts from stage 2's frames at strength 0.4)
            *overrides,
        ],
    )


@pytest.fixture
def no_modules_built(monkeypatch):
    """Counts torch modules constructed while the test runs."""
    built: list[str] = []
    init = torch.nn.Module.__init__

    def counting_init(self, *args, **kwargs):
        built.append(type(self).__name__)
        init(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__init__", counting_init)
    return built


def test_plan_lists_every_clip_and_the_evaluation_count(tiny_model_dir, shared_dir, no_modules_built):
    n, m, s, steps = 40, 8, 3, 6
    cfg = tiny_cfg(
        tiny_model_dir,
        shared_dir / POSES,
        f"inputs.frames={n}",
        "codenoise.mode=overlap",
        f"codenoise.clip_length={m}",
        f"codenoise.stride={s}",
    )
    report = plan.plan_report(cfg)
    assert no_modules_built == []  # no model was built (how long the plan takes is bench's business)

    windows = clip_windows(n, m, s)
    assert windows[-1] == (32, 40) and 32 % s != 0  # a tail clip off the stride grid
    assert f"{n} frames" in report and "(resampled from 125)" in report
    for k, (a, b) in enumerate(windows):
        assert re.search(rf"^\s+{k}\s+{a}-{b - 1}\s+'a person dancing'$", report, re.M), k
        assert re.search(rf"^clip {k}\s", report, re.M)  # a row of the weight plot
    per_step = len(windows) * m * 2  # CFG doubles the UNet batch
    assert f"= {per_step} ({per_step / n:.2f} per video frame)" in report
    assert f"Over {steps} steps: {per_step * steps} frame evaluations" in report
    assert "unet 793.0K (weights)" in report  # from the safetensors header
    assert "Estimated peak memory of stage 4" in report


def test_plan_counts_prompt_ranges_fused_init_and_the_global_anchor(tiny_model_dir, shared_dir):
    cfg = tiny_cfg(
        tiny_model_dir,
        shared_dir / POSES,
        "inputs.frames=30",
        "codenoise.mode=overlap",
        "codenoise.clip_length=10",
        "codenoise.stride=10",
        "codenoise.init=fused",
        "codenoise.strength=0.5",
        "codenoise.attention=global",
    )
    cfg = C.apply_overrides(cfg, ['inputs.prompts={ "0" = "a person dancing", "15" = "a person waving" }'])
    report = plan.plan_report(cfg)
    # strength 0.5 of 6 steps: stage 4 starts at step 3 (stages.codenoise.initial_latents)
    assert "3 of 6 ddim steps" in report and "Over 3 steps: 180 frame evaluations" in report
    assert re.search(r"^\s+1\s+10-19\s+'a person dancing'$", report, re.M)  # 5 frames each: the earlier wins
    assert re.search(r"^\s+2\s+20-29\s+'a person waving'$", report, re.M)
    assert "+ 2 anchor frame evaluation(s) per step (frame 15), 6 in all" in report


def test_plan_through_the_cli(tiny_model_dir, shared_dir, capsys):
    assert (
        main(
            [
                "plan",
                "--model",
                str(tiny_model_dir),
                "--poses",
                str(shared_dir / POSES),
                "--prompt",
                "a person dancing",
                "--frames",
                "20",
                "--height",
                "32",
                "--width",
                "32",
                "--set",
                "codenoise.mode=overlap",
                "--set",
                "codenoise.clip_length=8",
                "--set",
                "codenoise.stride=4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Temporal co-denoising plan: 20 frames, 4 clips of 8 frames" in out
    assert "Estimated peak memory of each stage on cpu" in out and "  3 tune " in out and "run's peak is stage" in out
    assert (
        main(
            [
                "plan",
                "--model",
                str(tiny_model_dir),
                "--poses",
                str(shared_dir / POSES),
                "--prompt",
                "x",
                "--frames",
                "5",
                "--height",
                "32",
                "--width",
                "32",
            ]
        )
        == 2
    )  # 5 frames < clip_length 16
    assert "codenoise.shrink_clip" in capsys.readouterr().err


def test_plan_needs_poses(tiny_model_dir):
    with pytest.raises(VidtuneError, match="inputs.poses is empty"):
        plan.plan_report(C.apply_overrides(C.RunConfig(), [f"model.path={tiny_model_dir}", "inputs.prompt=x"]))


def _meta_parameters(configs: dict) -> dict[str, int]:
    from diffusers import AutoencoderKL, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel.from_config(configs["unet"]),
            "vae": AutoencoderKL.from_config(configs["vae"]),
            "adapter": T2IAdapter.from_config(configs["adapter"]),
            "text_encoder": CLIPTextModel(
                CLIPTextConfig(**{k: v for k, v in configs["text_encoder"].items() if not k.startswith("_")})
            ),
        }
    return {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}


def test_parameter_counts_from_configs_are_exact(models_dir):
    sd = models_dir / "sd-v1-4"
    configs = {name: json.loads((sd / name / "config.json").read_text()) for name in ("unet", "vae", "text_encoder")}
    configs["adapter"] = json.loads((models_dir / "t2iadapter-openpose-sd14v1/config.json").read_text())
    tiny = tiny_configs()
    for cfgs in (configs, tiny):
        counted = {name: plan._COUNTERS[name](cfgs[name]) for name in ("unet", "vae", "text_encoder", "adapter")}
        assert counted == _meta_parameters(cfgs)
    assert plan.unet_parameters(configs["unet"]) == 859_520_964  # SD v1-4's 859.5M


def test_model_sizes_read_weights_headers_configs_or_assume_sd14(tiny_model_dir, models_dir):
    sizes = plan.model_sizes(C.ModelConfig(path=str(tiny_model_dir), adapter=""))
    assert set(sizes.counted.values()) == {"weights"}
    assert {"unet", "vae", "text_encoder", "adapter"} <= set(sizes.parameters)
    assert sizes.parameters["unet"] == plan.unet_parameters(tiny_configs()["unet"])
    assert sizes.vae_factor == 4 and sizes.latent_channels == 4 and sizes.block_out_channels == [32, 64]

    sd = plan.model_sizes(
        C.ModelConfig(path=str(models_dir / "sd-v1-4"), adapter=str(models_dir / "t2iadapter-openpose-sd14v1"))
    )
    assert sd.counted == dict.fromkeys(("unet", "vae", "text_encoder", "adapter"), "config")
    assert sd.vae_factor == 8 and sd.parameters["adapter"] == 77_369_280

    assumed = plan.model_sizes(C.ModelConfig(path="nobody/no-such-model-xyz", adapter="nobody/no-such-adapter-xyz"))
    assert set(assumed.counted.values()) == {"assumed"} and assumed.parameters == sd.parameters


def test_memory_estimate_grows_with_frames_only_through_per_frame_tensors(models_dir):
    sizes = plan.model_sizes(
        C.ModelConfig(path=str(models_dir / "sd-v1-4"), adapter=str(models_dir / "t2iadapter-openpose-sd14v1"))
    )
    small, large = (
        plan.memory_estimate(sizes, n, 512, 512, batch_frames=16, guidance=True, element_bytes=2) for n in (64, 1024)
    )
    assert small.weights == large.weights and small.activations == large.activations
    assert small.decoding == large.decoding
    assert large.latents == 16 * small.latents and large.features == 16 * small.features
    # SD's adapter residuals are 320x64x64 + 640x32x32 + 1280x16x16 + 1280x8x8 values per frame
    assert small.features == 64 * 2_375_680 * 2
    assert large.latents == plan.LATENT_COPIES * 1024 * 4 * 64 * 64 * 2
    assert large.peak == large.weights + large.latents + large.features + max(large.activations, large.decoding)
    no_cfg = plan.memory_estimate(sizes, 64, 512, 512, batch_frames=16, guidance=False, element_bytes=2)
    assert no_cfg.activations * 2 == pytest.approx(small.activations, rel=1e-6)


def test_plan_counts_the_unet_evaluations_of_every_stage_against_frame_by_frame(tiny_model_dir, shared_dir):
    """At the SD defaults (50 steps, CFG, fusion at 0.5 where stage 1 stops, 300 tuning samples, stage 4
    shifted from stage 2's frames at strength 0.4) the whole method costs at most 2.0x frame-by-frame
    generation at 24 frames and 1.5x at 256; stage 1 run to the end, at most 2.5x from 16 frames on."""
    cfg = C.apply_overrides(C.RunConfig(), ["inputs.prompt=a person dancing"])
    for n, bound in ((24, 2.0), (256, 1.5)):
        ev = plan.unet_evaluations(cfg, n)
        assert ev["stage1"] == (25 + 1) * 2 and ev["total"] <= bound * ev["frame_by_frame"]
        assert ev["stage2"] == 25 * 2  # the eps at t comes back from stage 1's x0 prediction
    to_the_end = C.apply_overrides(cfg, ["separate.stop=end"])
    for n in (16, 24, 64, 256):
        ev = plan.unet_evaluations(to_the_end, n)
        assert ev["frame_by_frame"] == ev["stage1"] == 100  # 50 steps x 2 (CFG)
        # stage 2 evaluates the eps at t itself; stage 4: 20 of 50 steps (t = 381, 361, ..., 1), each frame
        # once; guided at t >= 200 only
        assert ev["stage2"] == (1 + 25) * 2 and ev["stage4"] == 10 * 2 + 10 * 1
        assert ev["stage3"] == pytest.approx(3 * 300 / n)
        assert ev["total"] == pytest.approx(sum(ev[f"stage{k}"] for k in (1, 2, 3, 4)))
        assert ev["total"] <= 2.5 * ev["frame_by_frame"]
    overlap = plan.unet_evaluations(C.apply_overrides(cfg, ["codenoise.mode=overlap"]), 64)
    assert overlap["stage4"] == pytest.approx(30 * (7 * 16) / 64)  # 7 clips of 16 frames cover 64 frames
    guided = plan.unet_evaluations(C.apply_overrides(cfg, ["codenoise.unguided_below=0"]), 64)
    assert guided["stage4"] == 20 * 2
    # stage 4 redrawing from noise on a schedule of its own: 20 steps (t = 951, 901, ..., 1), 16 of them guided
    own = C.apply_overrides(cfg, ["codenoise.init=fused", "codenoise.strength=1.0", "codenoise.steps=20"])
    for n, bound in ((24, 2.0), (256, 1.5)):
        ev = plan.unet_evaluations(own, n)
        assert ev["stage4"] == 16 * 2 + 4 and ev["total"] <= bound * ev["frame_by_frame"]
    report = plan.plan_report(tiny_cfg(tiny_model_dir, shared_dir / POSES, "inputs.frames=40"))
    assert "all four stages" in report and "x frame-by-frame generation" in report


def test_plan_shows_the_prompt_schedule_its_transitions_and_counts_in_words(tiny_model_dir, shared_dir):
    schedule = '{ "0" = "a person dancing", "20" = "a person jumping" }'
    cfg = tiny_cfg(
        tiny_model_dir,
        shared_dir / POSES,
        "inputs.frames=40",
        f"inputs.prompts={schedule}",
        "codenoise.transition=8",
    )
    report = plan.plan_report(cfg)
    assert "Prompt schedule: 2 segments" in report
    assert re.search(r"frames\s+0-19\s+'a person dancing'", report)
    assert re.search(r"frames\s+20-39\s+'a person jumping'", report)
    transitions = re.search(r"transitions \(codenoise.transition = 8\): frames (\d+)-(\d+)", report)
    assert transitions and int(transitions[1]) < 20 <= int(transitions[2])  # around the boundary
    single = plan.plan_report(
        tiny_cfg(tiny_model_dir, shared_dir / POSES, "inputs.frames=8", "codenoise.clip_length=8")
    )
    assert "Prompt schedule" not in single and "1 clip of 8 frames" in single and "1 clips" not in single
    assert re.search(r"the largest UNet batch: 8 clip frames x 2 \(CFG\) = 16 rows \(1 batch of clips", single)


@pytest.mark.parametrize(
    "trainable,targets",
    [("full", "attention"), ("lora", "attention"), ("lora", "cross_kv"), ("attention", "attention")],
)
def test_the_trained_parameter_count_is_what_stage_3_trains(trainable, targets):
    from diffusers import UNet2DConditionModel

    from vidtune.stages.tuning import select_trainable

    config = tiny_configs()["unet"]
    unet = UNet2DConditionModel(**config)
    cfg = C.TuningConfig(trainable=trainable, lora_rank=4, lora_targets=targets)
    trained = sum(p.numel() for p in select_trainable(unet, cfg).values())
    assert plan.trainable_parameters(config, trainable, 4, targets) == trained


def test_each_stage_has_a_peak_and_full_tuning_costs_more_than_lora(models_dir):
    sizes = plan.model_sizes(
        C.ModelConfig(path=str(models_dir / "sd-v1-4"), adapter=str(models_dir / "t2iadapter-openpose-sd14v1"))
    )
    cfg = C.apply_overrides(C.RunConfig(), ["inputs.prompt=a person dancing"])
    full = plan.stage_peaks(sizes, cfg, 24, 16, "cuda", 2)
    lora = plan.stage_peaks(sizes, C.apply_overrides(cfg, ["tuning.trainable=lora"]), 24, 16, "cuda", 2)
    assert set(full) == {1, 2, 3, 4} and full[1] == lora[1] and full[4] == lora[4]
    # full tuning: SD's 860M UNet parameters each hold a gradient and two AdamW moments (12 bytes)
    assert full[3] - lora[3] == pytest.approx(
        12 * (859_520_964 - plan.trainable_parameters(sizes.configs["unet"], "lora", 4))
    )
    assert full[3] > max(full[1], full[4])  # SD's default (full tuning) peaks in stage 3
    cpu = plan.stage_peaks(sizes, cfg, 24, 16, "cpu", 2)
    assert cpu[3] > full[3]  # no gradient checkpointing off CUDA: more activations kept


def test_plan_measure_times_one_unet_evaluation_and_estimates_each_stage(tiny_model_dir, shared_dir, capsys):
    args = ["plan", "--model", str(tiny_model_dir), "--poses", str(shared_dir / POSES), "--prompt", "a person"]
    args += ["--frames", "16", "--height", "32", "--width", "32", "--steps", "4"]
    assert main(args) == 0
    assert "Estimated time" not in capsys.readouterr().out  # no model loaded without --measure
    assert main([*args, "--measure"]) == 0
    out = capsys.readouterr().out
    ms = float(re.search(r"one measured UNet frame evaluation \(([\d.]+) ms", out).group(1))
    stages = [float(re.search(rf"  stage {k}\s+([\d.]+) s", out).group(1)) for k in (1, 2, 3, 4)]
    total = float(re.search(r"  total\s+([\d.]+) s", out).group(1))
    assert ms > 0 and total == pytest.approx(sum(stages), abs=0.3)
    # stage 1 stops at the fusion step: 2 of the 4 steps and the eps at t, x CFG x 16 frames
    assert stages[0] == pytest.approx(3 * 2 * 16 * ms / 1000, rel=0.05, abs=0.1)


def _plan_peak_mib(pose_dir, frames: int, model_dir) -> tuple[int, str]:
    """Peak resident memory (MiB) of `vidtune plan` for `frames` overlapping-clip frames, and its output."""
    code = (
        "import resource, sys; from vidtune.cli import main; rc = main(sys.argv[1:]); "
        "print('maxrss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    args = ["plan", "--poses", str(pose_dir), "--prompt", "a person", "--frames", str(frames)]
    args += ["--model", str(model_dir), "--set", "codenoise.mode=overlap"]  # the larger plan (shifted: half the clips)
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split("maxrss_kib")[-1].split()[0]) // 1024, result.stdout


@pytest.mark.slow
def test_a_million_frame_plan_costs_little_more_memory_than_a_short_one(tmp_path):
    """The plan's own data is O(K M + N): a million frames (124,999 clips) adds tens of MiB to what the
    imported libraries take (a dense clips x frames matrix would take 466 GiB). Compared with a 1,000-frame
    plan in the same environment, because the absolute peak differs between machines for the same code
    (510 MiB on the 2-core EPYC, 1,041 MiB in CI)."""
    pose_dir = write_poses(tmp_path / "poses")
    short, _ = _plan_peak_mib(pose_dir, 1000, tmp_path / "no_model")
    long, out = _plan_peak_mib(pose_dir, 1_000_000, tmp_path / "no_model")
    assert "1000000 frames, 124999 clips of 16 frames" in out
    assert "clips not listed" in out and "not plotted" in out
    assert "MiB of merge weights" in out
    assert long - short < 300, f"1,000 frames: {short} MiB, 1,000,000 frames: {long} MiB"
