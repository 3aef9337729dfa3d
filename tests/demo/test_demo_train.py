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


def test_extending_the_text_encoder_keeps_every_known_token_row() -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    old_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "red</w>": 2, "figure</w>": 3}
    new_vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "hat</w>": 2, "red</w>": 3, "figure</w>": 4, "khaki</w>": 5}
    cfg = CLIPTextConfig(
        vocab_size=4,
        hidden_size=8,
        intermediate_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=8,
        bos_token_id=0,
        eos_token_id=1,
    )
    te = CLIPTextModel(cfg)
    before = te.get_input_embeddings().weight.detach().clone()
    assert demo_train.extend_text_encoder(te, old_vocab, new_vocab) == 2
    after = te.get_input_embeddings().weight.detach()
    assert after.shape == (6, 8) and te.config.vocab_size == 6
    for token, i in old_vocab.items():  # a known word keeps its trained row under its new id
        assert torch.equal(after[new_vocab[token]], before[i])
    for i in (2, 5):  # a new word starts near the mean word, not far from every trained row
        assert (after[i] - before.mean(0)).norm() < (before - before.mean(0)).norm(dim=1).max()
    assert te(torch.tensor([[0, 2, 5, 1]]))[0].shape == (1, 4, 8)  # the new ids run


def test_a_batch_puts_each_pair_side_by_side_with_one_timestep_and_one_dropout() -> None:
    gen = torch.Generator().manual_seed(0)
    idx, t, drop = demo_train._batch_layout(4, 6, 100, 1000, 0.5, gen)
    assert len(idx) == len(t) == len(drop) == 16
    pairs = idx[4:].view(-1, 2)
    assert (pairs[:, 0] % 2 == 0).all() and (pairs[:, 1] == pairs[:, 0] + 1).all()  # frames 2p, 2p + 1
    assert (t[4:].view(-1, 2)[:, 0] == t[4:].view(-1, 2)[:, 1]).all()
    assert (drop[4:].view(-1, 2)[:, 0] == drop[4:].view(-1, 2)[:, 1]).all()
    assert len(set(t[4:].view(-1, 2)[:, 0].tolist())) > 1  # pairs are not all at one step


def test_figure_weighted_loss_counts_the_figure_more_and_keeps_the_scale():
    from vidtune.demo.train import figure_shares, weighted_eps_loss

    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True  # one latent pixel (factor 4) fully figure
    masks[1, :2, :4] = True  # half of one latent pixel
    share = figure_shares(masks, 4)
    assert share.shape == (2, 2, 2) and share[0, 0, 0] == 1.0 and share[1, 0, 0] == 0.5 and share[0, 1, 1] == 0
    pred, noise = torch.zeros(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    pred[:, :, 0, 0] = 1.0  # all the error on the figure's pixel
    plain, weighted = weighted_eps_loss(pred, noise, torch.from_numpy(share).float(), 4.0)
    assert torch.allclose(plain, torch.tensor([0.25, 0.25]))
    assert torch.allclose(weighted, torch.tensor([4 / 7, 2.5 / 5.5]))  # (w_f * 1) / sum of weights
    same, also = weighted_eps_loss(torch.ones(2, 4, 2, 2), noise, torch.from_numpy(share).float(), 4.0)
    assert torch.allclose(same, also)  # a uniform error keeps its value: the weights are normalised


def test_install_replaces_the_weights_and_keeps_readme_and_presets(tmp_path):
    dest, model = tmp_path / "model", tmp_path / "trained"
    (dest / "unet").mkdir(parents=True)
    (dest / "unet" / "old.safetensors").write_text("old")
    (dest / "README.md").write_text("how it was made")
    (dest / "vidtune.toml").write_text("[inputs]\nheight = 64\n")
    (model / "unet").mkdir(parents=True)
    (model / "unet" / "new.safetensors").write_text("new")
    (model / "unet" / "config.json").write_text('{"_name_or_path": "/home/me/train/model", "layers": 2}')
    demo_train.install_model(model, dest)
    assert sorted(p.name for p in (dest / "unet").iterdir()) == ["config.json", "new.safetensors"]
    assert json.loads((dest / "unet" / "config.json").read_text()) == {"layers": 2}  # no path of this machine
    assert (dest / "README.md").read_text() == "how it was made"
    assert (dest / "vidtune.toml").read_text() == "[inputs]\nheight = 64\n"
