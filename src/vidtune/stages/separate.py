"""Stage 1 — separate tuning: every frame generated on its own from its pose and prompt.

Keeps z_t at the fusion step (what stage 2 fuses) and the final x0 latents, decodes the frames
and splits each into foreground/background masks (SAM prompted by the pose keypoints, or the
weight-free GrabCut fallback). Design §3, stage 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune import atomic
from vidtune.config import RunConfig
from vidtune.inputs import VideoInputs
from vidtune.sampling import denoise, frame_eps_fn, fusion_index, initial_noise, prepare_scheduler
from vidtune.stages.common import build_scheduler, conditioning, decode_to_disk

LATENTS_FILE = "latents.safetensors"


def generate(cfg: RunConfig, components, inputs: VideoInputs, progress: bool = True) -> dict[str, torch.Tensor]:
    """Per-frame sampling; returns z_t at the fusion step, its timestep index and the final latents."""
    s = cfg.sampling
    cond = conditioning(components, inputs.pose_images, inputs.prompts, cfg.inputs.negative_prompt, s.adapter_scale)
    f = components.vae_scale_factor
    shape = (components.latent_channels, cfg.inputs.height // f, cfg.inputs.width // f)
    scheduler = build_scheduler(components.scheduler, s)
    timesteps = prepare_scheduler(scheduler, s.steps, components.device)
    z = initial_noise(inputs.num_frames, shape, cfg.separate.seed, shared=cfg.separate.noise_mode == "shared",
                      device=components.device,
                      dtype=components.unet.dtype) * scheduler.init_noise_sigma
    t_index = fusion_index(s.steps, cfg.separate.fusion_step)
    kept: dict[str, torch.Tensor] = {}

    def keep_z_t(step: int, t: torch.Tensor, latents: torch.Tensor) -> None:
        if step == t_index:
            kept["z_t"] = latents.clone()
            kept["timestep"] = torch.as_tensor(t).reshape(1).cpu()

    eps_fn = frame_eps_fn(components.unet, cond.prompts, cond.features, s.guidance, cfg.separate.batch_frames)
    generator = torch.Generator("cpu").manual_seed(cfg.separate.seed)
    x0 = denoise(z, scheduler, timesteps, eps_fn, hook=keep_z_t, eta=s.eta, generator=generator,
                 progress=progress, desc="stage 1: per-frame sampling")
    return {"z_t": kept["z_t"], "timestep": kept["timestep"], "t_index": torch.tensor([t_index]), "x0": x0}


def segment_frames(segmenter, frames_dir: Path, inputs: VideoInputs, progress: bool = True) -> np.ndarray:
    """Foreground masks (N, H, W) float in [0, 1] of the decoded frames."""
    from vidtune.video import read_frames

    masks = []
    frames = read_frames(frames_dir)
    for i, frame in enumerate(tqdm(frames, total=inputs.num_frames, desc="stage 1: masks", disable=not progress,
                                   leave=False, unit="frame")):
        kps = None if inputs.keypoints is None else inputs.keypoints[i]
        masks.append(segmenter.segment(frame, kps, pose_image=inputs.pose_images[i]))
    return np.stack(masks).astype(np.float32)


def run(cfg: RunConfig, components, inputs: VideoInputs, rd, progress: bool = True) -> dict:
    """Stage 1: generate -> decode -> segment -> save. Returns info for done.json."""
    stage_dir = rd.stage(1)
    from vidtune.segment import latent_masks, make_segmenter
    from vidtune.video import write_frames_png

    out = generate(cfg, components, inputs, progress)
    decode_to_disk(components.vae, out["x0"], stage_dir / "frames", stage_dir / "stage1.mp4", inputs.fps,
                   progress=progress, desc="stage 1: decoding")
    segmenter = make_segmenter(cfg.separate.segmenter, components)
    masks = segment_frames(segmenter, stage_dir / "frames", inputs, progress)
    with atomic.atomic_dir(stage_dir / "masks") as tmp:
        write_frames_png(np.repeat((masks[..., None] * 255).round().astype(np.uint8), 3, axis=-1), tmp)
    fg_latent = latent_masks(torch.from_numpy(masks), components.vae_scale_factor)
    atomic.write_safetensors(stage_dir / LATENTS_FILE, {**out, "fg": fg_latent, "fg_pixel": torch.from_numpy(masks)})
    return {"frames": inputs.num_frames, "segmenter": segmenter.name, "fusion_step_index": int(out["t_index"]),
            "fusion_timestep": int(out["timestep"])}


def load(stage_dir: Path) -> dict[str, torch.Tensor]:
    """Stage 1's tensors: z_t, timestep, t_index, x0 (N, C, h, w), fg (N, 1, h, w), fg_pixel (N, H, W)."""
    from safetensors.torch import load_file

    return load_file(str(stage_dir / LATENTS_FILE))
