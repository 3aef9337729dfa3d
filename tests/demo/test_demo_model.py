"""The embedded demo model loads with the plain diffusers / transformers calls and generates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidtune.demo.command import DEMO_MODEL as DEMO

pytestmark = pytest.mark.skipif(
    not (DEMO / "model_index.json").exists(),
    reason="the embedded demo model (src/vidtune/demo/model) is not in this checkout",
)


def test_layout_and_size() -> None:
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "adapter"):
        assert (DEMO / sub).is_dir(), sub
    assert not list(DEMO.rglob("*.bin")) and not list(DEMO.rglob("*.ckpt"))  # safetensors only
    size = sum(f.stat().st_size for f in DEMO.rglob("*") if f.is_file())
    assert size <= 25 * 2**20, f"{size / 2**20:.1f} MB"
    index = json.loads((DEMO / "model_index.json").read_text())
    assert index["adapter"] == ["diffusers", "T2IAdapter"]
    from vidtune.models import model_index

    # the shipped index is what the demo export writes today (one writer: models.model_index)
    fresh = model_index(adapter=True)
    assert {k: v for k, v in index.items() if k != "_diffusers_version"} == {
        k: v for k, v in fresh.items() if k != "_diffusers_version"
    }


def test_components_load_with_from_pretrained_as_fp32() -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    unet = UNet2DConditionModel.from_pretrained(DEMO, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(DEMO, subfolder="vae")
    adapter = T2IAdapter.from_pretrained(DEMO, subfolder="adapter")
    text_encoder = CLIPTextModel.from_pretrained(DEMO, subfolder="text_encoder")
    tokenizer = CLIPTokenizer.from_pretrained(DEMO, subfolder="tokenizer")
    scheduler = DDIMScheduler.from_pretrained(DEMO, subfolder="scheduler")
    for m in (unet, vae, adapter, text_encoder):
        assert next(m.parameters()).dtype == torch.float32
    assert unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1) == 64
    assert unet.config.cross_attention_dim == text_encoder.config.hidden_size
    assert tokenizer.model_max_length == 77
    c = scheduler.config
    assert (c.beta_start, c.beta_end, c.beta_schedule, c.num_train_timesteps) == (0.00085, 0.012, "scaled_linear", 1000)
    assert (c.set_alpha_to_one, c.steps_offset, c.prediction_type) == (False, 1, "epsilon")
    # Every word of the grammar is one token; the identity details' words too, or the demo refuses a
    # prompt that names them (a model trained before them) instead of drawing what it never learned.
    from vidtune.demo.command import check_model_knows
    from vidtune.demo.synthetic.grammar import DETAIL_TEXTS, VOCABULARY_TEXTS
    from vidtune.errors import VidtuneError

    for text in VOCABULARY_TEXTS:
        if len(tokenizer(text).input_ids) == len(text.split()) + 2:
            continue
        assert text in DETAIL_TEXTS, text
        detail = text.replace("with a hat", "with a blue hat")
        with pytest.raises(VidtuneError, match="trained without the words"):
            check_model_knows(f"a red figure {detail} on a beach at sunset", DEMO)


@pytest.mark.slow
def test_generates_a_frame() -> None:
    from vidtune.demo.synthetic import make_sequence
    from vidtune.demo.train import load_demo_components, sample_frames

    torch.manual_seed(0)
    comps = load_demo_components(DEMO)
    seq = make_sequence("walk", 1, "a red figure walking on a beach during the day", seed=1)
    out = sample_frames(comps, [seq.prompt], seq.pose_images, steps=3, guidance=5.0, seed=0)
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8
    again = sample_frames(comps, [seq.prompt], seq.pose_images, steps=3, guidance=5.0, seed=0)
    np.testing.assert_array_equal(out, again)


@pytest.mark.slow
def test_loads_as_a_stable_diffusion_adapter_pipeline() -> None:
    from diffusers import StableDiffusionAdapterPipeline
    from PIL import Image

    from vidtune.demo.synthetic import make_sequence

    pipe = StableDiffusionAdapterPipeline.from_pretrained(DEMO)
    pipe.set_progress_bar_config(disable=True)
    seq = make_sequence("wave", 1, "a blue figure waving on a snowy field at night", seed=2)
    image = pipe(
        seq.prompt,
        image=Image.fromarray(seq.pose_images[0]),
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert image.shape == (1, 64, 64, 3)


@pytest.mark.slow
def test_adheres_to_pose_and_prompt() -> None:
    """12 unseen frames, 10 DDIM steps, guidance 5 (~5 s), the outfit named or left open as the prompts
    draw it. The shipped weights score pose IoU 0.39, colour 1.00, scene 0.92 and time 0.92 here (100
    samples, 20 steps: 0.38 / 0.97 / 0.84 / 0.96; model README)."""
    from vidtune.demo.train import evaluate_demo

    torch.manual_seed(0)
    r = evaluate_demo(DEMO, samples=12, steps=10, guidance=5.0, flicker_frames=4)
    # Pose IoU keys the prompt's hue against the truth's clothes: a figure in the right pose whose open
    # outfit differs from the truth's (khaki trousers for dark ones, stripes) loses those pixels, so the
    # model scores ~0.4 where the truth scores ~0.95; a right-coloured figure in another pose scores ~0.13.
    assert r["pose_iou"] >= 0.25
    assert r["colour_accuracy"] >= 0.9  # chance 1/6; at most one frame of 12 wrong
    assert r["scene_accuracy"] >= 0.75  # chance 1/5; the model recognisably draws 84% of scenes (v1: 100%)
    assert r["time_accuracy"] >= 0.8  # chance 1/3
    assert r["flicker_generated"] > 2 * r["flicker_ground_truth"]  # frame-by-frame generation flickers
