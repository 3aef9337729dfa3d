"""`vidtune plan CONFIG.toml`: what stage 4 will do and what it will cost, before any model is loaded.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.plan`.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidtune.config import STAGE_NUMBERS, ModelConfig, RunConfig

LATENT_COPIES = 8
ACT_PER_CHANNEL = 0.8  # C1
ACT_PER_PIXEL = 1000.0  # C0
DECODE_BATCH = 4  # stages.common.decode_frames's default chunk
DECODE_PER_CHANNEL = 10.5  # D1

_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
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


# ---------------------------------------------------------------------------------------------
# The estimate (pure)


@dataclass(frozen=True)
class MemoryEstimate:
    """Stage 4's peak memory by part, in bytes (see the module docstring for each formula)."""

    weights: int
    latents: int
    features: int
    activations: int
    decoding: int
    pose_images: int  # host memory (numpy), on every device

    @property
    def peak(self) -> int:
        """weights + latents + features + max(activations, decoding)."""
        return self.weights + self.latents + self.features + max(self.activations, self.decoding)


def memory_estimate(
    sizes: ModelSizes, num_frames: int, height: int, width: int, batch_frames: int, guidance: bool, element_bytes: int
) -> MemoryEstimate:
    """The memory model of the module docstring for N = `num_frames` frames of `height` x `width`
    pixels and UNet batches of `batch_frames` frames (before CFG doubles them)."""
    f = sizes.vae_factor
    h, w = height // f, width // f
    weights = sum(n * (4 if name == "vae" else element_bytes) for name, n in sizes.parameters.items())
    latents = LATENT_COPIES * num_frames * sizes.latent_channels * h * w * element_bytes
    features = 0
    if "adapter" in sizes.configs:
        channels = sizes.configs["adapter"].get("channels", sizes.block_out_channels)
        features = num_frames * sum(c * (h >> i) * (w >> i) for i, c in enumerate(channels)) * element_bytes
    rows = batch_frames * (2 if guidance else 1)
    activations = int(rows * h * w * (ACT_PER_CHANNEL * sum(sizes.block_out_channels) + ACT_PER_PIXEL) * element_bytes)
    vae_c0 = sizes.configs["vae"]["block_out_channels"][0]
    decoding = int(min(DECODE_BATCH, num_frames) * height * width * DECODE_PER_CHANNEL * vae_c0 * 4)
    return MemoryEstimate(
        weights=weights,
        latents=latents,
        features=features,
        activations=activations,
        decoding=decoding,
        pose_images=num_frames * height * width * 3,
    )


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


def trainable_parameters(config: Mapping[str, Any], trainable: str, lora_rank: int) -> int:
    """Parameters stage 3 trains: the whole UNet (``full``), its attention projections (``attention``:
    q, k, v, out of self- and cross-attention), or rank-r LoRA factors on them (``lora``: r x (in + out)
    per projection)."""
    if trainable == "full":
        return unet_parameters(config)
    cross = int(config.get("cross_attention_dim", 768))
    widths = unet_attention_widths(config)
    if trainable == "lora":
        return sum(lora_rank * (4 * 2 * c + 2 * c + 2 * (cross + c) + 2 * c) for c in widths)
    return sum(4 * c * c + c + 2 * c * c + 2 * cross * c + c for c in widths)


OPTIMIZER_BYTES = 12  # per trained parameter: its fp32 gradient and AdamW's two fp32 moments
BACKWARD_ACTIVATIONS = 3.0  # activations kept for the backward pass, in forward-peaks (1 with checkpointing)


def stage_peaks(
    sizes: ModelSizes, cfg: RunConfig, num_frames: int, stage4_batch: int, device: str, element_bytes: int
) -> dict[int, int]:
    """Each stage's estimated peak memory in bytes (the module docstring's model, applied per stage).

    Stages 1 and 2 denoise ``separate.batch_frames`` frames at a time over the whole video's latents;
    stage 3 holds the UNet in fp32 (as `vidtune.stages.tuning` trains it), the trained parameters'
    gradients and AdamW moments, and one training batch's activations kept for the backward pass
    (`BACKWARD_ACTIVATIONS` forward peaks, 1 with gradient checkpointing, which runs on CUDA only);
    stage 4 is `memory_estimate` at its largest clip batch."""
    h, w = cfg.inputs.height, cfg.inputs.width
    guidance = cfg.sampling.guidance > 1.0

    def at(batch: int, cfg_rows: bool) -> int:
        return memory_estimate(sizes, num_frames, h, w, batch, cfg_rows, element_bytes).peak

    sep = at(cfg.separate.batch_frames, guidance)
    t = cfg.tuning
    one = memory_estimate(sizes, num_frames, h, w, t.batch_size, False, 4)
    kept = 1.0 if (t.gradient_checkpointing and device.startswith("cuda")) else BACKWARD_ACTIVATIONS
    trained = trainable_parameters(sizes.configs["unet"], t.trainable, t.lora_rank)
    tune = (
        one.weights  # fp32: the UNet trains in fp32 (the other models' share is small)
        + OPTIMIZER_BYTES * trained
        + one.latents
        + one.features
        + int(kept * one.activations)
    )
    return {1: sep, 2: sep, 3: int(tune), 4: at(stage4_batch, guidance)}


def _gib(n: float) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GiB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**10:.1f} KiB"


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


# ---------------------------------------------------------------------------------------------
# The report


def _device_dtype(cfg: ModelConfig) -> tuple[str, str]:
    """The device and UNet dtype the run will use (`vidtune.device`'s rule; a plan may be made off the GPU)."""
    from vidtune.device import DTYPE_NAMES, resolve_device, resolve_dtype

    device = resolve_device(cfg.device, strict=False)
    return str(device), DTYPE_NAMES[resolve_dtype(cfg.dtype, device)]


TRAIN_STEP_EVALS = 3  # a training sample of stage 3: forward + backward ~ 3 forward evaluations


def unet_evaluations(cfg: RunConfig, num_frames: int) -> dict[str, float]:
    """UNet frame evaluations per video frame of each stage and in all, and of frame-by-frame generation
    (`sampling.steps` steps of one frame; classifier-free guidance counts twice). Pure: no model.

    stage 1: every step; stage 2: the eps at the fusion step t, then the steps from t on; stage 3: its
    training samples x `TRAIN_STEP_EVALS`, spread over the frames; stage 4: its steps (from the SDEdit
    start with ``init = "fused"``) x the clips' frames per video frame (1 in ``shifted`` mode, about M / S in
    ``overlap`` mode) + the global anchor, its steps below ``codenoise.unguided_below`` without guidance."""
    from vidtune.sampling import fusion_index, sdedit_start

    s, c, t = cfg.sampling, cfg.codenoise, cfg.tuning
    cfg_rows = 2 if s.guidance > 1.0 else 1
    start4 = sdedit_start(s.steps, c.strength) if c.init == "fused" else 0
    rows4 = sum(
        cfg_rows if float(ts) >= c.unguided_below * s.num_train_timesteps else 1 for ts in _timesteps(s)[start4:]
    )
    per_step = float(num_frames) if c.mode == "shifted" else float(_overlap_frames(c, num_frames))
    per_step += 1 if c.attention == "global" else 0
    out = {
        "frame_by_frame": float(s.steps * cfg_rows),
        "stage1": float(s.steps * cfg_rows),
        "stage2": float((1 + s.steps - fusion_index(s.steps, cfg.separate.fusion_step)) * cfg_rows),
        "stage3": TRAIN_STEP_EVALS * t.steps * t.batch_size * t.grad_accum / num_frames,
        "stage4": rows4 * per_step / num_frames,
    }
    out["total"] = out["stage1"] + out["stage2"] + out["stage3"] + out["stage4"]
    return out


def _timesteps(s) -> list[int]:
    """The sampler's timesteps at `sampling.steps` on SD's schedule (what a run's scheduler gives)."""
    from vidtune.models import make_scheduler, sd_schedule_config

    scheduler = make_scheduler(
        s.scheduler, sd_schedule_config(s.beta_start, s.beta_end, s.beta_schedule, s.num_train_timesteps)
    )
    scheduler.set_timesteps(s.steps)
    order = getattr(scheduler, "order", 1)
    return [int(ts) for ts in scheduler.timesteps[::order]]


def _overlap_frames(c, num_frames: int) -> int:
    """Frames in Gen-L-Video's overlapping clips (each counted once per clip holding it)."""
    from vidtune.method.windows import clip_windows

    return sum(e - b for b, e in clip_windows(num_frames, c.clip_length, c.stride, shrink_clip=c.shrink_clip))


def evaluations_text(cfg: RunConfig, num_frames: int) -> list[str]:
    """The lines of `vidtune plan` that compare the whole method's cost with frame-by-frame generation."""
    ev = unet_evaluations(cfg, num_frames)
    base = ev["frame_by_frame"]
    names = {
        "stage1": "stage 1 (separate)",
        "stage2": "stage 2 (fusion)",
        "stage3": f"stage 3 (tuning; a sample = {TRAIN_STEP_EVALS})",
        "stage4": f"stage 4 ({cfg.codenoise.mode})",
    }
    lines = ["UNet frame evaluations per video frame (CFG counts twice):"]
    lines += [f"  {names[k]:<36} {ev[k]:8.1f}  ({ev[k] / base:.2f}x)" for k in names]
    lines.append(
        f"  {'all four stages':<36} {ev['total']:8.1f}  = {ev['total'] / base:.2f}x frame-by-frame generation "
        f"({base:.0f}: {cfg.sampling.steps} steps of each frame)"
    )
    return lines


def measure_unet_seconds(cfg: RunConfig, repeats: int = 3) -> float:
    """Seconds of one UNet frame evaluation on the run's device and dtype: the best of ``repeats`` timed
    forwards of a ``separate.batch_frames``-frame batch (after one warm-up), divided by the batch. Loads
    the model (`vidtune plan --measure`); every other part of the plan reads config files only."""
    import time

    import torch

    from vidtune.device import resolve_device, resolve_dtype
    from vidtune.models import load_components

    m = cfg.model
    device = resolve_device(m.device)
    comps = load_components(
        m.path,
        m.adapter or None,
        None,
        device=device,
        dtype=resolve_dtype(m.dtype, device),
        allow_pickle=m.allow_pickle,
    )
    unet = comps.unet
    f = comps.vae_scale_factor
    batch = max(1, cfg.separate.batch_frames)
    gen = torch.Generator("cpu").manual_seed(0)
    z = torch.randn(batch, comps.latent_channels, cfg.inputs.height // f, cfg.inputs.width // f, generator=gen)
    text = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=gen)
    z, text = z.to(device, unet.dtype), text.to(device, unet.dtype)
    t = torch.full((batch,), 500, device=device)
    best = float("inf")
    with torch.no_grad():
        for i in range(repeats + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            unet(z, t, encoder_hidden_states=text)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:  # the first forward warms up (allocations, kernel selection)
                best = min(best, time.perf_counter() - start)
    return best / batch


def time_lines(cfg: RunConfig, num_frames: int, seconds_per_eval: float) -> list[str]:
    """`vidtune plan --measure`'s estimate: each stage's UNet frame evaluations x the measured seconds of one
    (the VAE, the segmenter and the adapter come on top)."""
    ev = unet_evaluations(cfg, num_frames)
    secs = {k: ev[f"stage{k}"] * num_frames * seconds_per_eval for k in STAGE_NUMBERS}
    return [
        f"Estimated time from one measured UNet frame evaluation ({seconds_per_eval * 1000:.1f} ms; UNet only):",
        *(f"  stage {k}  {secs[k]:9.1f} s" for k in secs),
        f"  total    {sum(secs.values()):9.1f} s  (frame-by-frame generation: "
        f"{ev['frame_by_frame'] * num_frames * seconds_per_eval:.1f} s)",
    ]


def schedule_lines(cfg: RunConfig, num_frames: int) -> list[str]:
    """A prompt schedule's segments and the frames of each transition between them ([] for one prompt)."""
    from vidtune.inputs import per_frame_prompts, prompt_schedule
    from vidtune.method.segments import prompt_segments, transition_frames
    from vidtune.method.windows import plural

    schedule = prompt_schedule(cfg.inputs)
    if not isinstance(schedule, dict) or len(schedule) < 2:
        return []
    frames = per_frame_prompts(num_frames, schedule)
    segments = prompt_segments(frames)
    width = cfg.codenoise.transition
    between = transition_frames(num_frames, segments, width).nonzero().flatten().tolist()
    lines = ["", f"Prompt schedule: {plural(len(segments), 'segment')}"]
    lines += [f"  frames {s:>4}-{e - 1:<4} {frames[s]!r}" for s, e in segments]
    if width and between:
        runs = _runs(between)
        lines.append(
            f"  transitions (codenoise.transition = {width}): frames "
            + ", ".join(f"{a}-{b}" for a, b in runs)
            + ", where neighbouring segments' prompts mix"
        )
    else:
        lines.append("  transitions: none (codenoise.transition = 0: a cut at each segment's first frame)")
    return lines


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive integers as (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def plan_report(cfg: RunConfig, seconds_per_eval: float | None = None) -> str:
    """The text `vidtune plan` prints: frames, clips, prompts, merge weights, UNet evaluations, memory,
    and with ``seconds_per_eval`` (`measure_unet_seconds`) a time estimate per stage."""
    from vidtune.inputs import count as count_inputs
    from vidtune.inputs import prompt_schedule
    from vidtune.method.clips import clip_batches, plan_clips
    from vidtune.method.windows import plan_text, plural
    from vidtune.sampling import sdedit_start
    from vidtune.validate import check_run

    c, s = cfg.codenoise, cfg.sampling
    num_frames, fps, summary = count_inputs(cfg.inputs)
    check_run(cfg, num_frames)
    guidance = s.guidance > 1.0
    steps = s.steps
    if c.init == "fused":
        steps -= sdedit_start(s.steps, c.strength)
    plan = plan_clips(c, num_frames, prompt_schedule(cfg.inputs), step=s.steps - steps)
    lines = [
        f"Pose source: {summary}",
        f"Video: {num_frames} frames at {fps:g} fps, {cfg.inputs.width}x{cfg.inputs.height} px; "
        f"{steps} of {s.steps} {s.scheduler} steps in stage 4 (init {c.init!r}), attention {c.attention!r}, "
        f"weighting {c.weighting!r}",
    ]
    if num_frames < c.clip_length:
        lines.append(
            f"Note: {num_frames} frames < codenoise.clip_length = {c.clip_length}: one clip of "
            f"{num_frames} frames (codenoise.shrink_clip = true)"
        )
    if c.fg_gain > 0:
        lines.append(
            f"Note: codenoise.fg_gain = {c.fg_gain:g}: the weights below are also multiplied per pixel by "
            "stage 1's foreground masks (not known before stage 1 runs)"
        )
    lines += schedule_lines(cfg, num_frames)
    lines.append("")
    lines.append(
        plan_text(num_frames, plan.windows, plan.weights, plan.prompts, guidance=guidance, num_steps=steps).rstrip("\n")
    )
    if c.attention == "global":
        anchor = 2 if guidance else 1
        lines.append(
            f"Attention 'global': + {anchor} anchor frame evaluation(s) per step (frame {plan.anchor}), "
            f"{anchor * steps} in all"
        )

    if c.mode == "shifted":
        lines.append(
            f"Mode 'shifted': the clips above are those of the first step; their boundaries move every step "
            f"(each frame evaluated once per step; 'overlap' would evaluate it "
            f"{_overlap_frames(c, num_frames) / num_frames:.2f}"
            " times)"
        )
    lines += ["", *evaluations_text(cfg, num_frames)]

    batches = clip_batches(plan.windows, c.max_batch_frames)
    largest = max(sum(plan.windows[k][1] - plan.windows[k][0] for k in b) for b in batches)
    sizes = model_sizes(cfg.model)
    device, dtype = _device_dtype(cfg.model)
    est = memory_estimate(
        sizes, num_frames, cfg.inputs.height, cfg.inputs.width, largest, guidance, _DTYPE_BYTES[dtype]
    )
    f = sizes.vae_factor
    h, w = cfg.inputs.height // f, cfg.inputs.width // f
    params = ", ".join(f"{name} {_count(n)} ({sizes.counted[name]})" for name, n in sizes.parameters.items())
    rows = largest * (2 if guidance else 1)
    lines += [
        "",
        f"Estimated peak memory of stage 4 on {device} ({dtype}; model {sizes.source}):",
        f"  weights        {_gib(est.weights):>11}  {params}",
        f"  latents        {_gib(est.latents):>11}  {LATENT_COPIES} video-sized tensors x {num_frames} x "
        f"{sizes.latent_channels}x{h}x{w}",
        f"  adapter feats  {_gib(est.features):>11}  every frame's T2I-Adapter residuals"
        + (f" ({_gib(est.features / num_frames)} per frame)" if est.features else " (no adapter)"),
        f"  activations    {_gib(est.activations):>11}  the largest UNet batch: {plural(largest, 'clip frame')}"
        + (f" x 2 (CFG) = {rows} rows" if guidance else "")
        + f" ({plural(len(batches), 'batch', 'batches')} of clips per step, at most codenoise.max_batch_frames = "
        f"{c.max_batch_frames} clip frames each)",
        f"  decoding       {_gib(est.decoding):>11}  VAE, {DECODE_BATCH} frames at a time, after the loop",
        f"  peak           {_gib(est.peak):>11}  (+ {_gib(est.pose_images)} of pose images and "
        f"{_gib(plan.weight_bytes)} of merge weights in host memory)",
        "  (rough: see vidtune.plan's docstring for the formulas and how they were calibrated)",
    ]
    peaks = stage_peaks(sizes, cfg, num_frames, largest, device, _DTYPE_BYTES[dtype])
    top = max(peaks, key=peaks.get)
    trained = trainable_parameters(sizes.configs["unet"], cfg.tuning.trainable, cfg.tuning.lora_rank)
    lines += [
        "",
        f"Estimated peak memory of each stage on {device}; the run's peak is stage {top}'s:",
        f"  1 separate     {_gib(peaks[1]):>11}  batches of separate.batch_frames = {cfg.separate.batch_frames}",
        f"  2 fuse         {_gib(peaks[2]):>11}  denoises on from the fusion step, the same batches",
        f"  3 tune         {_gib(peaks[3]):>11}  tuning.trainable = {cfg.tuning.trainable!r}: {_count(trained)} "
        f"parameters trained in fp32 with AdamW, batch {cfg.tuning.batch_size}",
        f"  4 co-denoise   {_gib(peaks[4]):>11}  as above",
    ]
    if seconds_per_eval is not None:
        lines += ["", *time_lines(cfg, num_frames, seconds_per_eval)]
    return "\n".join(lines) + "\n"
