"""Stage 1 — separate tuning: every frame generated on its own from its pose and prompt.

Keeps z_t at the fusion step (what stage 2 fuses) and the final x0 latents, decodes the frames
and splits each into foreground/background masks (SAM prompted by the pose keypoints, or the
weight-free GrabCut fallback). Design §3, stage 1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune.config import SeparateStageConfig
from vidtune.inputs import VideoInputs
from vidtune.models import Components
from vidtune.results import SeparateResult
from vidtune.sampling import denoise, frame_eps_fn, fusion_index, initial_noise, prepare_scheduler
from vidtune.stages.common import Conditioning, StageCallback, build_scheduler, decode_frames, step_callback

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
    """Per-frame sampling; returns z_t at the fusion step, its timestep index and the final latents."""
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

    eps_fn = frame_eps_fn(components.unet, cond.prompts, cond.features, s.guidance, cfg.separate.batch_frames)
    generator = torch.Generator("cpu").manual_seed(cfg.separate.seed)
    x0 = denoise(
        z,
        scheduler,
        timesteps,
        eps_fn,
        hook=keep_z_t,
        eta=s.eta,
        generator=generator,
        progress=progress,
        desc="stage 1: per-frame sampling",
        callback=step_callback(callback, 1),
    )
    return {"z_t": kept["z_t"], "timestep": kept["timestep"], "t_index": torch.tensor([t_index]), "x0": x0}


def segment_frames(segmenter: Segmenter, frames: np.ndarray, inputs: VideoInputs, progress: bool = True) -> np.ndarray:
    """Foreground masks (N, H, W) float in [0, 1] of the decoded frames."""
    masks = []
    for i, frame in enumerate(
        tqdm(frames, total=inputs.num_frames, desc="stage 1: masks", disable=not progress, leave=False, unit="frame")
    ):
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
    """Stage 1: generate -> decode -> segment."""
    from vidtune.segment import latent_masks, make_segmenter

    out = generate(cfg, components, cond, inputs.num_frames, callback, progress)
    frames = decode_frames(components.vae, out["x0"], progress=progress, desc="stage 1: decoding")
    segmenter = make_segmenter(cfg.separate.segmenter, components)
    masks = segment_frames(segmenter, frames, inputs, progress)
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
