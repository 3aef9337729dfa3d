"""Stage 1 — separate tuning: every frame generated on its own from its pose and prompt.

Keeps z_t at the fusion step (what stage 2 fuses) and the final x0 latents (or, with
``separate.stop = "fusion"``, the x0 predicted at that step), decodes the frames and splits each into
foreground/background masks (SAM prompted by the pose keypoints, or the weight-free GrabCut fallback).
docs/method.md, stage 1.

Under torchrun (`vidtune.distributed`) each rank computes the eps of its contiguous range of frames
and the ranges are gathered every step, so every rank steps the whole video as one process does
(each frame keeps its own seed: `initial_noise`); decoding and SAM's masks are split the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune import artifacts as A
from vidtune import distributed as D
from vidtune.config import SeparateStageConfig
from vidtune.inputs import VideoInputs
from vidtune.models import Components
from vidtune.results import SeparateResult
from vidtune.sampling import denoise, fusion_index, initial_noise, prepare_scheduler
from vidtune.stages.common import (
    Conditioning,
    Stage,
    StageCallback,
    StageContext,
    build_scheduler,
    split_decode,
    split_eps_fn,
    step_callback,
    vp_x0,
)

if TYPE_CHECKING:
    from vidtune.segment import Segmenter


def generate(
    cfg: SeparateStageConfig,
    components: Components,
    cond: Conditioning,
    num_frames: int,
    callback: StageCallback | None = None,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Per-frame sampling; returns z_t at the fusion step, its timestep index and x0: the final latents, or
    with ``separate.stop = "fusion"`` the clean latents predicted at the fusion step (no later step runs)."""
    s = cfg.sampling
    f = components.vae_scale_factor
    shape = (components.latent_channels, cfg.inputs.height // f, cfg.inputs.width // f)
    scheduler = build_scheduler(components.scheduler, s)
    timesteps = prepare_scheduler(scheduler, s.steps, components.device)
    z = (
        initial_noise(
            num_frames,
            shape,
            cfg.separate.seed,
            shared=cfg.separate.noise_mode == "shared",
            device=components.device,
            dtype=components.unet.dtype,
        )
        * scheduler.init_noise_sigma
    )
    t_index = fusion_index(s.steps, cfg.separate.fusion_step)
    kept: dict[str, torch.Tensor] = {}

    def keep_z_t(step: int, t: torch.Tensor, latents: torch.Tensor) -> None:
        if step == t_index:
            kept["z_t"] = latents.clone()
            kept["timestep"] = torch.as_tensor(t).reshape(1).cpu()

    eps_fn = split_eps_fn(components.unet, cond, s.guidance, cfg.separate.batch_frames, num_frames)
    generator = torch.Generator("cpu").manual_seed(cfg.separate.seed)
    stop = cfg.separate.stop == "fusion"
    x0 = denoise(
        z,
        scheduler,
        timesteps[:t_index] if stop else timesteps,
        eps_fn,
        hook=keep_z_t,
        eta=s.eta,
        generator=generator,
        progress=progress,
        desc="stage 1: per-frame sampling",
        callback=step_callback(callback, 1),
    )
    if stop:  # x0 is z_t: the latents before step t_index
        t = timesteps[t_index]
        keep_z_t(t_index, t, x0)
        x0 = predicted_x0(scheduler, eps_fn, x0, t, t_index)
    return {"z_t": kept["z_t"], "timestep": kept["timestep"], "t_index": torch.tensor([t_index]), "x0": x0}


def predicted_x0(scheduler, eps_fn, z_t: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
    """DDIM's clean-latent prediction x0-hat(z_t) with the guided eps at t (`vp_x0`), in z_t's dtype."""
    with torch.no_grad():
        eps = eps_fn(scheduler.scale_model_input(z_t, t), t, step)
    return vp_x0(scheduler, t, z_t, eps)[0].to(z_t.dtype)


# Segmenters whose mask of a frame depends on that frame alone, so that ranks may split the frames.
# GrabCut draws from OpenCV's process-wide RNG, seeded once per segmenter: a frame's mask depends on the
# frames segmented before it, so under torchrun every rank segments every frame (it is cheap).
SPLIT_SEGMENTERS = frozenset({"sam"})


def segment_frames(
    segmenter: Segmenter, frames: np.ndarray, inputs: VideoInputs, progress: bool = True, first: int = 0
) -> np.ndarray:
    """Foreground masks (len(frames), H, W) float in [0, 1] of the decoded frames `first`, `first` + 1, ..."""
    masks = []
    for j, frame in enumerate(
        tqdm(frames, total=len(frames), desc="stage 1: masks", disable=not progress, leave=False, unit="frame")
    ):
        i = first + j
        kps = None if inputs.keypoints is None else inputs.keypoints[i]
        masks.append(segmenter.segment(frame, kps, pose_image=inputs.pose_images[i]))
    return np.stack(masks).astype(np.float32)


def run(
    cfg: SeparateStageConfig,
    components: Components,
    inputs: VideoInputs,
    cond: Conditioning,
    callback: StageCallback | None = None,
    progress: bool = True,
) -> SeparateResult:
    """Stage 1: generate -> decode -> segment (frames split over the ranks under torchrun)."""
    from vidtune.segment import latent_masks, make_segmenter

    out = generate(cfg, components, cond, inputs.num_frames, callback, progress)
    frames = split_decode(components.vae, out["x0"], cfg.separate.batch_frames, progress, "stage 1: decoding")
    segmenter = make_segmenter(cfg.separate.segmenter, components)
    rows = D.part(inputs.num_frames) if segmenter.name in SPLIT_SEGMENTERS else range(inputs.num_frames)
    masks = segment_frames(segmenter, frames[rows.start : rows.stop], inputs, progress, first=rows.start)
    if len(rows) < inputs.num_frames:
        masks = D.gather_array(masks, inputs.num_frames)
    fg_pixel = torch.from_numpy(masks)
    return SeparateResult(
        z_t=out["z_t"],
        timestep=int(out["timestep"]),
        t_index=int(out["t_index"]),
        x0=out["x0"],
        fg=latent_masks(fg_pixel, components.vae_scale_factor),
        fg_pixel=fg_pixel,
        frames=frames,
        segmenter=segmenter.name,
    )


class SeparateStage(Stage):
    """Stage 1 in the registry (`vidtune.stages.registry`): every frame on its own, on the base UNet."""

    number, name, title, method = 1, "separate", "separate generation", "separate"
    view = SeparateStageConfig  # the config it reads (`config.stage_view`): its resume hash
    result = SeparateResult
    video: str | None = f"{A.stage_dir(1)}/stage1.mp4"  # under the run folder
    uses: tuple[int, ...] = ()

    def requires(self, cfg: SeparateStageConfig) -> tuple[int, ...]:
        return ()

    def run(self, ctx: StageContext, previous: Mapping[int, Any]) -> SeparateResult:
        return run(ctx.cfg, ctx.components, ctx.inputs, ctx.conditioning(), ctx.callback, ctx.progress)
