"""`vidtune train-demo`: the loss weighting, and a seconds-long training run that exports, loads and resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidtune.demo import train as demo_train


def test_min_snr_weight_against_the_schedule() -> None:
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    t = torch.arange(0, 1000, 37)
    # Independent computation: SD's scaled-linear betas -> alpha_bar -> SNR = abar / (1 - abar).
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)[t.numpy()]
    snr = abar / (1 - abar)
    expected = np.minimum(snr, 5.0) / snr
    got = demo_train._min_snr_weight(sched, t, 5.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4)
    assert got[0] < 0.01 and got[-1] == 1.0  # nearly clean steps count little; noisy steps fully
    assert torch.equal(demo_train._min_snr_weight(sched, t, 0.0), torch.ones(len(t)))


@pytest.mark.slow
def test_training_exports_a_loadable_model_and_resumes(tmp_path) -> None:
    out = tmp_path / "train"
    small = dict(num_frames=24, scenes_per_kind=2, vae_batch=4, unet_batch=4, workers=1, threads=1, warmup_steps=2)
    model = demo_train.train_demo(out, vae_minutes=0.02, unet_minutes=0.03, **small)
    info = json.loads((model / "training_info.json").read_text())
    assert info["final"] and info["unet_steps"] >= 1 and info["config"]["snr_gamma"] == 5.0
    comps = demo_train.load_demo_components(model)
    frame = demo_train.sample_frames(
        comps, ["a red figure on a beach during the day"], np.zeros((1, 64, 64, 3), np.uint8), steps=2, guidance=2.0
    )
    assert frame.shape == (1, 64, 64, 3)
    # The budgets are spent: a rerun resumes from the checkpoints and trains no further step.
    log = (out / "loss_log.csv").read_text()
    again = demo_train.train_demo(out, vae_minutes=0.02, unet_minutes=0.03, **small)
    info_again = json.loads((again / "training_info.json").read_text())
    assert info_again["unet_steps"] == info["unet_steps"]
    assert info_again["wall_minutes"] > info["wall_minutes"]  # the wall time of both processes
    assert (out / "loss_log.csv").read_text() == log


def test_cli_train_demo_shares_the_module_options() -> None:
    from vidtune.cli import make_parser

    args = make_parser().parse_args(["train-demo", "--out", "x", "--num-frames", "100", "--install", "--fresh"])
    assert (args.num_frames, args.install, args.fresh) == (100, True, True)
    assert args.unet_minutes == demo_train.DemoTrainConfig.unet_minutes


def test_building_the_cli_parser_does_not_import_torch() -> None:
    """Every `vidtune` command builds the whole parser first; torch costs ~1 s to import."""
    import subprocess
    import sys

    code = "import sys, vidtune.cli as c; c.make_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
