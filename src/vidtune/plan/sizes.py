"""Parameter counts of SD 1.x-style models from their config files and safetensors headers: no torch
module is built and no weights are read (`vidtune plan`'s sizes; SD v1-4's assumed when nothing is local).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidtune.config import ModelConfig

_SAFETENSORS_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}

# Stable Diffusion v1-4 and TencentARC/t2iadapter_openpose_sd14v1, as their config files say
# (assumed when the configured model is neither a local folder nor in the Hugging Face cache).
SD14_CONFIGS: dict[str, dict[str, Any]] = {
    "unet": {
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": [320, 640, 1280, 1280],
        "layers_per_block": 2,
        "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    },
    "vae": {
        "in_channels": 3,
        "out_channels": 3,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
    },
    "text_encoder": {
        "vocab_size": 49408,
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "max_position_embeddings": 77,
    },
    "adapter": {
        "in_channels": 3,
        "channels": [320, 640, 1280, 1280],
        "num_res_blocks": 2,
        "downscale_factor": 8,
        "adapter_type": "full_adapter",
    },
}


# ---------------------------------------------------------------------------------------------
# Parameter counts from configs (pure): SD 1.x-style diffusers / transformers architectures


def _conv(cin: int, cout: int, k: int = 3) -> int:
    return cin * cout * k * k + cout


def _linear(cin: int, cout: int, bias: bool = True) -> int:
    return cin * cout + (cout if bias else 0)


def _resnet(cin: int, cout: int, temb: int | None) -> int:
    """diffusers ResnetBlock2D: two GroupNorms, two 3x3 convs, time projection, 1x1 shortcut."""
    n = 2 * cin + _conv(cin, cout) + 2 * cout + _conv(cout, cout)
    n += _linear(temb, cout) if temb else 0
    return n + (_conv(cin, cout, 1) if cin != cout else 0)


def _transformer(c: int, cross: int, layers: int = 1) -> int:
    """diffusers Transformer2DModel (SD 1.x: GroupNorm, 1x1 conv projections) of BasicTransformerBlocks."""
    block = (
        2 * c
        + 3 * c * c
        + _linear(c, c)  # norm1, attn1 (q, k, v without bias, out)
        + 2 * c
        + c * c
        + 2 * cross * c
        + _linear(c, c)  # norm2, attn2
        + 2 * c
        + _linear(c, 8 * c)
        + _linear(4 * c, c)
    )  # norm3, GEGLU feed-forward (inner 4c)
    return 2 * c + _conv(c, c, 1) + layers * block + _conv(c, c, 1)


def unet_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of a diffusers UNet2DConditionModel with SD 1.x's options (no class/addition embeddings)."""
    boc = list(config["block_out_channels"])
    layers = int(config.get("layers_per_block", 2))
    cross = int(config.get("cross_attention_dim", 768))
    depth = config.get("transformer_layers_per_block", 1)
    depth = list(depth) if isinstance(depth, Sequence) else [int(depth)] * len(boc)
    down = config.get("down_block_types", ["CrossAttnDownBlock2D"] * (len(boc) - 1) + ["DownBlock2D"])
    up = config.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(boc) - 1))
    temb = 4 * boc[0]
    n = _conv(int(config.get("in_channels", 4)), boc[0]) + _linear(boc[0], temb) + _linear(temb, temb)
    cin = boc[0]
    for i, kind in enumerate(down):
        cout = boc[i]
        for j in range(layers):
            n += _resnet(cin if j == 0 else cout, cout, temb)
            n += _transformer(cout, cross, depth[i]) if "CrossAttn" in kind else 0
        n += _conv(cout, cout) if i < len(boc) - 1 else 0
        cin = cout
    n += 2 * _resnet(boc[-1], boc[-1], temb) + _transformer(boc[-1], cross, depth[-1])  # mid block
    rev, rdepth = boc[::-1], depth[::-1]
    prev = rev[0]
    for i, kind in enumerate(up):
        cout, skip_in = rev[i], rev[min(i + 1, len(boc) - 1)]
        for j in range(layers + 1):
            skip = skip_in if j == layers else cout
            n += _resnet((prev if j == 0 else cout) + skip, cout, temb)
            n += _transformer(cout, cross, rdepth[i]) if "CrossAttn" in kind else 0
        n += _conv(cout, cout) if i < len(boc) - 1 else 0
        prev = cout
    return n + 2 * boc[0] + _conv(boc[0], int(config.get("out_channels", 4)))


def vae_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of a diffusers AutoencoderKL (SD's: GroupNorm resnets, one mid-block attention)."""
    boc = list(config["block_out_channels"])
    layers = int(config.get("layers_per_block", 1))
    latent = int(config.get("latent_channels", 4))
    top = boc[-1]
    mid = 2 * _resnet(top, top, None) + 2 * top + 4 * _linear(top, top)  # resnets, attention (norm, q, k, v, out)
    enc = _conv(int(config.get("in_channels", 3)), boc[0])
    cin = boc[0]
    for i, cout in enumerate(boc):
        enc += sum(_resnet(cin if j == 0 else cout, cout, None) for j in range(layers))
        enc += _conv(cout, cout) if i < len(boc) - 1 else 0
        cin = cout
    enc += mid + 2 * top + _conv(top, 2 * latent)
    dec = _conv(latent, top) + mid
    prev = top
    for i, cout in enumerate(boc[::-1]):
        dec += sum(_resnet(prev if j == 0 else cout, cout, None) for j in range(layers + 1))
        dec += _conv(cout, cout) if i < len(boc) - 1 else 0
        prev = cout
    dec += 2 * boc[0] + _conv(boc[0], int(config.get("out_channels", 3)))
    return enc + dec + _conv(2 * latent, 2 * latent, 1) + _conv(latent, latent, 1)


def text_encoder_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of a transformers CLIPTextModel."""
    d, ff = int(config["hidden_size"]), int(config["intermediate_size"])
    layer = 4 * _linear(d, d) + _linear(d, ff) + _linear(ff, d) + 4 * d
    return (
        (int(config["vocab_size"]) + int(config.get("max_position_embeddings", 77))) * d
        + int(config["num_hidden_layers"]) * layer
        + 2 * d
    )


def adapter_parameters(config: Mapping[str, Any]) -> int:
    """Parameters of a diffusers T2IAdapter of type ``full_adapter`` (SD 1.x's)."""
    ch = list(config.get("channels", [320, 640, 1280, 1280]))
    res = int(config.get("num_res_blocks", 2))
    df = int(config.get("downscale_factor", 8))
    n = _conv(int(config.get("in_channels", 3)) * df * df, ch[0])
    cin = ch[0]
    for cout in ch:
        n += (_conv(cin, cout, 1) if cin != cout else 0) + res * (_conv(cout, cout) + _conv(cout, cout, 1))
        cin = cout
    return n


_COUNTERS = {
    "unet": unet_parameters,
    "vae": vae_parameters,
    "text_encoder": text_encoder_parameters,
    "adapter": adapter_parameters,
}


# ---------------------------------------------------------------------------------------------
# Reading a model folder (small files only)


def safetensors_parameters(path: Path) -> tuple[int, int] | None:
    """(elements, bytes) of the tensors of one .safetensors file or a sharded ``*.index.json``, from
    the JSON headers only; None when there is no such file."""
    if path.name.endswith(".index.json"):
        if not path.is_file():
            return None
        shards = sorted(set(json.loads(path.read_text())["weight_map"].values()))
        parts = [safetensors_parameters(path.parent / s) for s in shards]
        if any(p is None for p in parts):
            return None
        return sum(p[0] for p in parts), sum(p[1] for p in parts)
    if not path.is_file():
        return None
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    elements = nbytes = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        count = math.prod(info["shape"])
        elements += count
        nbytes += count * _SAFETENSORS_BYTES.get(info["dtype"], 4)
    return elements, nbytes


_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.safetensors.index.json",
    "model.safetensors",
    "model.safetensors.index.json",
)


@dataclass(frozen=True)
class ModelSizes:
    """What the plan needs to know about the model: configs per part and parameter counts.

    ``counted[name]`` says where a count comes from: ``"weights"`` (safetensors headers),
    ``"config"`` (computed from config.json), ``"assumed"`` (SD v1-4's numbers).
    """

    configs: dict[str, dict[str, Any]]
    parameters: dict[str, int]
    counted: dict[str, str]
    source: str

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.configs["vae"]["block_out_channels"]) - 1)

    @property
    def latent_channels(self) -> int:
        return int(self.configs["vae"].get("latent_channels", 4))

    @property
    def block_out_channels(self) -> list[int]:
        return list(self.configs["unet"]["block_out_channels"])


def _part(folder: Path | None, config_name: str, name: str) -> tuple[dict[str, Any], int, str] | None:
    if folder is None or not (folder / config_name).is_file():
        return None
    config = json.loads((folder / config_name).read_text())
    for weights in _WEIGHT_FILES:
        found = safetensors_parameters(folder / weights)
        if found is not None:
            return config, found[0], "weights"
    return config, _COUNTERS[name](config), "config"


def model_sizes(cfg: ModelConfig) -> ModelSizes:
    """Configs and parameter counts of the configured model, from small files only (see the module doc)."""
    from vidtune.models import local_folder

    root = local_folder(cfg.path, "model_index.json")
    configs: dict[str, dict[str, Any]] = {}
    parameters: dict[str, int] = {}
    counted: dict[str, str] = {}
    adapter_source = cfg.adapter or (str(root / "adapter") if root is not None else "")
    parts = {
        "unet": (root / "unet" if root else None, "config.json"),
        "vae": (root / "vae" if root else None, "config.json"),
        "text_encoder": (root / "text_encoder" if root else None, "config.json"),
        "adapter": (local_folder(adapter_source, "config.json") if adapter_source else None, "config.json"),
    }
    for name, (folder, config_name) in parts.items():
        found = _part(folder, config_name, name)
        if found is None:
            if name == "adapter" and not cfg.adapter and root is not None:
                continue  # a local model folder without adapter/: no adapter
            found = SD14_CONFIGS[name], _COUNTERS[name](SD14_CONFIGS[name]), "assumed"
        configs[name], parameters[name], counted[name] = found
    sam_source = cfg.sam or (str(root / "sam") if root is not None and (root / "sam").is_dir() else "")
    sam_folder = local_folder(sam_source, "config.json") if sam_source else None
    if sam_folder is not None:
        found = safetensors_parameters(sam_folder / "model.safetensors")
        if found is not None:
            parameters["sam"], counted["sam"] = found[0], "weights"
    source = str(root) if root is not None else f"{cfg.path} (not found locally: SD v1-4 sizes assumed)"
    return ModelSizes(configs=configs, parameters=parameters, counted=counted, source=source)


def unet_attention_widths(config: Mapping[str, Any]) -> list[int]:
    """The channel width of every BasicTransformerBlock of a SD 1.x UNet, in the walk `unet_parameters`
    makes (down blocks, mid block, up blocks): where LoRA's adapters sit."""
    boc = list(config["block_out_channels"])
    layers = int(config.get("layers_per_block", 2))
    depth = config.get("transformer_layers_per_block", 1)
    depth = list(depth) if isinstance(depth, Sequence) else [int(depth)] * len(boc)
    down = config.get("down_block_types", ["CrossAttnDownBlock2D"] * (len(boc) - 1) + ["DownBlock2D"])
    up = config.get("up_block_types", ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * (len(boc) - 1))
    widths = [boc[i] for i, kind in enumerate(down) if "CrossAttn" in kind for _ in range(layers * depth[i])]
    widths += [boc[-1]] * depth[-1]
    rev, rdepth = boc[::-1], depth[::-1]
    widths += [rev[i] for i, kind in enumerate(up) if "CrossAttn" in kind for _ in range((layers + 1) * rdepth[i])]
    return widths


def trainable_parameters(
    config: Mapping[str, Any], trainable: str, lora_rank: int, lora_targets: str = "attention"
) -> int:
    """Parameters stage 3 trains: the whole UNet (``full``), the query projections of self- and
    cross-attention (``attention``: attn1/attn2 to_q, c x c each, no bias, as Tune-A-Video), or rank-r
    LoRA factors (``lora``: r x (in + out) per projection) on q, k, v and out of both attentions
    (`lora_targets` "attention") or on cross-attention's k and v alone ("cross_kv")."""
    if trainable == "full":
        return unet_parameters(config)
    cross = int(config.get("cross_attention_dim", 768))
    widths = unet_attention_widths(config)
    if trainable == "lora" and lora_targets == "cross_kv":
        return sum(lora_rank * 2 * (cross + c) for c in widths)
    if trainable == "lora":
        return sum(lora_rank * (4 * 2 * c + 2 * c + 2 * (cross + c) + 2 * c) for c in widths)
    return sum(2 * c * c for c in widths)
