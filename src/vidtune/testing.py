"""Tiny random components in the exact diffusers layout, for tests and `vidtune models make-tiny`.

SD v1-4's architecture with only the size fields shrunk, random weights, deterministic for a seed:
the real loading code (`vidtune.models.load_components`) reads the folder back like any model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from vidtune.atomic import atomic_dir, write_json
from vidtune.models import model_index, sd_schedule_config
from vidtune.tokenizer import write_clip_tokenizer

# Tiny-model words: enough for the synthetic world's prompts and the tests.
DEFAULT_VOCAB_TEXTS = (
    "a an the person figure man woman child dancer dancing walking running jumping waving squatting",
    "standing on in at of with and beach street park field forest city desert snow stage room",
    "night day sunset sunrise morning evening sky ground hills trees tree house houses sun moon",
    "red blue green yellow black white orange purple pink brown gray grey gold silver",
    "photo painting full body high quality detailed",
)


TINY_BLOCK_OUT_CHANNELS = (32, 64)
TINY_VAE_CHANNELS = (32, 64, 64)  # three levels: latent factor 4 (SD: four levels, factor 8)


def tiny_configs(sample_size: int = 32, vocab_size: int = 1000) -> dict[str, dict[str, Any]]:
    """Configs of the tiny model: SD v1-4's architecture with only the size fields shrunk.

    ``sample_size`` is the image side in pixels; the latent side is sample_size / 4. The T2I-Adapter
    unshuffles by the VAE factor (as SD's does by 8), so its two stages land on the UNet's two
    down blocks (latent side and half of it).
    """
    factor = 2 ** (len(TINY_VAE_CHANNELS) - 1)
    step = factor * 2 ** (len(TINY_BLOCK_OUT_CHANNELS) - 1)
    if sample_size <= 0 or sample_size % step:
        raise ValueError(
            f"sample_size must be a positive multiple of {step} (VAE x{factor}, UNet halves once), got {sample_size}"
        )
    n_levels = len(TINY_BLOCK_OUT_CHANNELS)
    unet = dict(
        sample_size=sample_size // factor,
        in_channels=4,
        out_channels=4,
        center_input_sample=False,
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=["CrossAttnDownBlock2D"] * (n_levels - 1) + ["DownBlock2D"],
        up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (n_levels - 1),
        block_out_channels=list(TINY_BLOCK_OUT_CHANNELS),
        layers_per_block=1,
        downsample_padding=1,
        mid_block_scale_factor=1,
        act_fn="silu",
        norm_num_groups=32,
        norm_eps=1e-5,
        cross_attention_dim=32,
        attention_head_dim=2,
    )
    vae = dict(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(TINY_VAE_CHANNELS),
        up_block_types=["UpDecoderBlock2D"] * len(TINY_VAE_CHANNELS),
        block_out_channels=list(TINY_VAE_CHANNELS),
        layers_per_block=1,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=sample_size,
        scaling_factor=0.18215,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=32,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=1,
    )  # SD's (legacy) ids: pooling takes argmax = EOS
    adapter = dict(
        in_channels=3,
        channels=list(TINY_BLOCK_OUT_CHANNELS),
        num_res_blocks=1,
        downscale_factor=factor,
        adapter_type="full_adapter",
    )
    patch = 8
    sam = dict(
        vision_config=dict(
            hidden_size=32,
            output_channels=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=patch,
            window_size=4,
            global_attn_indexes=[1],
            num_pos_feats=16,
            mlp_dim=64,
        ),
        prompt_encoder_config=dict(hidden_size=32, image_size=64, patch_size=patch, mask_input_channels=4),
        mask_decoder_config=dict(
            hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2, iou_head_hidden_dim=32
        ),
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text,
        "adapter": adapter,
        "scheduler": sd_schedule_config(),
        "sam": sam,
    }


def make_tiny(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    sample_size: int = 32,
    with_sam: bool = True,
    vocab_texts: Iterable[str] | None = None,
) -> Path:
    """Write tiny RANDOM components (SD v1-4 architecture, shrunk) in vidtune's folder layout.

    Images are ``sample_size`` px (default 32), latents sample_size/4 (8) with 4 channels.
    Deterministic for a seed. Returns the folder; `load_components(out_dir)` reads it back.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    target = Path(out_dir)
    with atomic_dir(target) as tmp:
        vocab = write_clip_tokenizer(tmp / "tokenizer", vocab_texts if vocab_texts is not None else DEFAULT_VOCAB_TEXTS)
        cfg = tiny_configs(sample_size, vocab)
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(seed)
            models = {
                "unet": UNet2DConditionModel(**cfg["unet"]),
                "vae": AutoencoderKL(**cfg["vae"]),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"])),
                "adapter": T2IAdapter(**cfg["adapter"]),
            }
        for name, module in models.items():
            module.save_pretrained(tmp / name, safe_serialization=True)
        DDIMScheduler(**cfg["scheduler"]).save_pretrained(tmp / "scheduler")
        if with_sam:
            sam_model, sam_processor = tiny_sam(seed + 1, sample_size)
            sam_model.save_pretrained(tmp / "sam", safe_serialization=True)
            sam_processor.save_pretrained(tmp / "sam")
        write_json(tmp / "model_index.json", model_index())
    return target


def tiny_sam(seed: int = 0, sample_size: int = 32) -> tuple[Any, Any]:
    """A tiny random transformers SamModel (64 px input, 8 px patches) and its SamProcessor."""
    from transformers import SamConfig, SamModel, SamProcessor

    try:  # transformers 5: the PIL backend needs no torchvision
        from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4
        from transformers import SamImageProcessor as ImageProcessor

    cfg = tiny_configs(sample_size)["sam"]
    size = cfg["vision_config"]["image_size"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamModel(SamConfig(**cfg)).eval()
    processor = SamProcessor(
        image_processor=ImageProcessor(size={"longest_edge": size}, pad_size={"height": size, "width": size})
    )
    return model, processor
