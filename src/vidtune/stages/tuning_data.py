"""Stage 3's data (the fused latents, prompts, adapter features and masks) and its trainable parameter
sets (full, LoRA, attention)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vidtune.config import TuningConfig
from vidtune.errors import VidtuneError
from vidtune.results import FusionResult
from vidtune.sampling import FeatureBank, PromptBank
from vidtune.stages.common import Conditioning
from vidtune.tuned_weights import ATTENTION_Q, LORA_ADAPTER, LORA_TARGET_SETS, lora_config

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

    from vidtune.inputs import VideoInputs

# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningData:
    """What stage 3 trains on, all frames on the training device.

    x0: (N, C, h, w) fused clean latents x^_0 (scaled by the VAE factor); fg: (N, 1, h, w) M_f in
    [0, 1]; prompts: e_i per frame; features: F(c_i) per frame (empty without an adapter).
    """

    x0: torch.Tensor
    fg: torch.Tensor
    prompts: PromptBank
    features: FeatureBank
    train_frames: torch.Tensor | None = None  # (K,) the frame indices a batch draws from; None: every frame

    @property
    def num_frames(self) -> int:
        return int(self.x0.shape[0])

    def pool(self) -> torch.Tensor:
        """The frame indices a batch draws from (`train_frames`, or every frame)."""
        return torch.arange(self.num_frames) if self.train_frames is None else self.train_frames.cpu()

    def fingerprint(self) -> str:
        """A hash of the latents, masks and trained frames (a checkpoint only resumes on the same data)."""
        h = hashlib.sha256()
        for t in (self.x0, self.fg) if self.train_frames is None else (self.x0, self.fg, self.train_frames):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Batch:
    """One micro-batch: frame indices (B,), timesteps t (B,) in [0, T) and the noise eps (B, C, h, w)."""

    frames: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    uncond: torch.Tensor | None = None  # (B,) bool: train on the negative prompt's embedding instead

    def rows(self, rows: range) -> Batch:
        """The samples `rows` of this batch (a rank's share of it)."""
        sl = slice(rows.start, rows.stop)
        return Batch(self.frames[sl], self.t[sl], self.eps[sl], None if self.uncond is None else self.uncond[sl])


def check_config(cfg: TuningConfig) -> None:
    """Raise a one-line VidtuneError for a tuning config that cannot train."""
    if cfg.steps < 1:
        raise VidtuneError(f"tuning.steps must be >= 1, got {cfg.steps}; set e.g. tuning.steps = 300")
    if not cfg.lr > 0:
        raise VidtuneError(f"tuning.lr must be > 0, got {cfg.lr}; SD's default is tuning.lr = 5e-6")
    if not 0 < cfg.typical_fraction <= 1:
        raise VidtuneError(
            f"tuning.typical_fraction must be in (0, 1], got {cfg.typical_fraction}; 1 trains on every frame"
        )
    if cfg.trainable == "lora" and cfg.lora_rank < 1:
        raise VidtuneError(f"tuning.lora_rank must be >= 1 for trainable = 'lora', got {cfg.lora_rank}; try 4")
    for name in ("batch_size", "grad_accum"):
        if getattr(cfg, name) < 1:
            raise VidtuneError(f"tuning.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.warmup_steps < 0 or cfg.checkpoint_every < 0:
        raise VidtuneError(
            f"tuning.warmup_steps and tuning.checkpoint_every must be >= 0, "
            f"got {cfg.warmup_steps} and {cfg.checkpoint_every}"
        )


def typical_selection(
    s2: FusionResult, inputs: VideoInputs, image_size: tuple[int, int], fraction: float
) -> torch.Tensor | None:
    """The frames stage 3 trains on at `tuning.typical_fraction` (None at 1.0: every frame): per prompt
    segment, the most typical figures by the part-wise statistics of stage 2's fused latents
    (`anchor.typical_frames`; the whole figure as one part without keypoints)."""
    if fraction >= 1:
        return None
    from vidtune.method.anchor import typical_frames
    from vidtune.method.appearance import figure_parts, part_descriptors
    from vidtune.method.segments import prompt_segments

    x0, fg = s2.x0.float().cpu(), s2.fg.float().cpu()
    parts = figure_parts(fg, inputs.keypoints, image_size)
    return typical_frames(part_descriptors(x0, parts), prompt_segments(inputs.prompts), fraction)


def load_data(s2: FusionResult, cond: Conditioning, num_frames: int, device: torch.device) -> TuningData:
    """Stage 2's fused latents and masks with the frames' conditioning, checked against each other."""
    x0, fg = s2.x0, s2.fg
    n = x0.shape[0]
    if fg.shape[0] != n:
        raise VidtuneError(f"stage 2: {fg.shape[0]} masks but {n} fused frames; rerun with --stages 1,2,3")
    if num_frames != n:
        raise VidtuneError(
            f"stage 2 has {n} fused frames but the inputs have {num_frames} frames; rerun with --stages 1,2,3"
        )
    if x0.ndim != 4 or fg.ndim != 4 or fg.shape[1] != 1 or fg.shape[2:] != x0.shape[2:]:
        raise VidtuneError(
            f"stage 2: masks {tuple(fg.shape)} do not match the fused latents {tuple(x0.shape)} "
            f"(want (N, 1, h, w)); rerun with --stages 1,2,3"
        )
    return TuningData(
        x0=x0.to(device, torch.float32),
        fg=fg.to(device, torch.float32).clamp(0, 1),
        prompts=cond.prompts,
        features=cond.features,
    )


# --------------------------------------------------------------------------------------------
# Trainable parameter sets
# --------------------------------------------------------------------------------------------


def _full(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """Every UNet parameter (the paper's choice)."""
    return dict(unet.named_parameters())


def _attention(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """The query projections of self- and cross-attention, attn1/attn2 to_q (Tune-A-Video)."""
    params = {n: p for n, p in unet.named_parameters() if ATTENTION_Q.search(n)}
    if not params:
        raise VidtuneError(
            "tuning.trainable = 'attention': this UNet has no attn1/attn2 to_q weights; use 'full' or 'lora'"
        )
    return params


def _lora(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """A fresh LoRA adapter "vidtune" (B = 0, so the UNet starts unchanged; A seeded by tuning.seed)."""
    if LORA_ADAPTER in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(LORA_ADAPTER)
    targets = LORA_TARGET_SETS[cfg.lora_targets]
    unet.add_adapter(lora_config(cfg.lora_rank, targets), adapter_name=LORA_ADAPTER)  # also makes it the active one
    params = {n: p for n, p in unet.named_parameters() if f".{LORA_ADAPTER}." in n and "lora_" in n}
    # peft draws A from the global RNG; redraw it from our own generator (same kaiming-uniform bound).
    gen = torch.Generator("cpu").manual_seed(cfg.seed)
    with torch.no_grad():
        for name, p in params.items():
            if "lora_A" in name:
                bound = 1.0 / p.shape[1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
    return params


TRAINABLE: dict[str, Callable[[Any, TuningConfig], dict[str, torch.nn.Parameter]]] = {
    "full": _full,
    "lora": _lora,
    "attention": _attention,
}
"""Trainable sets by `tuning.trainable`: each prepares the UNet and returns its parameters by name."""


def select_trainable(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """Freeze the UNet, then unfreeze (and for LoRA create) the configured set; returns it by name."""
    if cfg.trainable not in TRAINABLE:
        raise VidtuneError(f"tuning.trainable = {cfg.trainable!r}: choose one of {', '.join(TRAINABLE)}")
    unet.requires_grad_(False)
    params = TRAINABLE[cfg.trainable](unet, cfg)
    for p in params.values():
        p.requires_grad_(True)
    return params
