"""The reference models' hub ids and the weight file names vidtune looks for."""

from __future__ import annotations

import re

SD_REPO = "CompVis/stable-diffusion-v1-4"
ADAPTER_REPO = "TencentARC/t2iadapter_openpose_sd14v1"
SAM_REPO = "facebook/sam-vit-base"

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

# Weight file names: (safetensors names, pickle names), single file first, then a sharded index.
_DIFFUSERS_WEIGHTS = (
    ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors.index.json"),
    ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.bin.index.json"),
)
_TRANSFORMERS_WEIGHTS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
_WEIGHTS = {
    "unet": _DIFFUSERS_WEIGHTS,
    "vae": _DIFFUSERS_WEIGHTS,
    "adapter": _DIFFUSERS_WEIGHTS,
    "text_encoder": _TRANSFORMERS_WEIGHTS,
    "sam": _TRANSFORMERS_WEIGHTS,
}
_SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)?$")
