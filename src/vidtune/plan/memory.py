"""Each stage's estimated peak memory (the model of docs/internals.md, section `vidtune.plan`): pure
arithmetic over `vidtune.plan.sizes`' parameter counts."""

from __future__ import annotations

from dataclasses import dataclass

from vidtune.config import RunConfig
from vidtune.plan.sizes import ModelSizes, trainable_parameters

LATENT_COPIES = 8
ACT_PER_CHANNEL = 0.8  # C1
ACT_PER_PIXEL = 1000.0  # C0
DECODE_BATCH = 4  # stages.common.decode_frames's default chunk
DECODE_PER_CHANNEL = 10.5  # D1

_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}

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
    trained = trainable_parameters(sizes.configs["unet"], t.trainable, t.lora_rank, t.lora_targets)
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
