"""Stage 2 — average fusion: at the fusion step t, every frame's background becomes a weighted
average of the backgrounds of sampled frames (foreground kept), then denoising continues to x0.

docs/method.md, stage 2 (the paper's eq. 10-11). The math is in `vidtune.method.fusion`; this module takes
stage 1's z_t and masks and works in the variance-preserving parametrisation
z = sqrt(abar) x0 + sqrt(1 - abar) eps whatever the sampler's own scaling (Euler's sigmas).

Under torchrun every rank holds the whole video: each evaluates the UNet on its own frames (stage 1's
`split_eps_fn`, gathered every step), and the fusion, which averages across frames and draws its frame
samples from one generator, runs on the whole video on every rank, exactly as in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from vidtune import artifacts as A
from vidtune.config import FusionConfig, FusionStageConfig
from vidtune.errors import VidtuneError
from vidtune.inputs import VideoInputs
from vidtune.method import fusion as F
from vidtune.method.segments import prompt_segments
from vidtune.models import Components
from vidtune.results import FusionResult, SeparateResult
from vidtune.sampling import denoise, prepare_scheduler
from vidtune.stages.common import (
    Conditioning,
    Stage,
    StageCallback,
    StageContext,
    background_plate,
    build_scheduler,
    split_decode,
    split_eps_fn,
    step_callback,
    vp_eps,
    vp_factor,
    x0_guide,
)

if TYPE_CHECKING:
    from diffusers import SchedulerMixin


def fuse(
    cfg: FusionConfig,
    z_vp: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: torch.Tensor,
    fg: torch.Tensor,
    log=print,
    segments: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, dict]:
    """Fuse VP latents z_t (N, C, h, w) given the guided eps at t and foreground masks (N, 1, h, w).

    Each prompt segment (`segments`, default: the whole video) averages its own frames only."""
    generator = torch.Generator("cpu").manual_seed(cfg.seed)
    segments = segments or [(0, z_vp.shape[0])]
    fg = F.dilate(fg, cfg.dilate)  # the figure's edges are kept, never averaged (see `refuse_guide`)
    bg = avg_bg = 1.0 - fg
    w_f: float | torch.Tensor = cfg.w_f
    w_b: float | torch.Tensor = cfg.w_b
    idx = [F.sample_frames(e - s, cfg.num_samples, generator) for s, e in segments]
    info: dict = {"space": cfg.space, "num_samples": int(idx[0].shape[1]), "segments": [list(x) for x in segments]}
    if cfg.learn:
        x0 = F.x0_from_eps(z_vp, eps, alpha_bar)
        w_f, w_b, history = F.learn_fusion_weights(
            x0,
            fg,
            bg,
            F.sample_frames(z_vp.shape[0], cfg.num_samples, generator),
            per_channel=cfg.learn_per_channel,
            steps=cfg.learn_steps,
            lr=cfg.learn_lr,
            fidelity=cfg.fidelity,
        )
        info["learn_history"] = [float(h) for h in history]
        log(f"vidtune: learned fusion weights w_f={_plain(w_f)} w_b={_plain(w_b)}")
    parts = []
    for (s, e), sample_idx in zip(segments, idx):
        if cfg.space == "x0":
            x0 = F.x0_from_eps(z_vp[s:e], eps[s:e], alpha_bar)
            fused = F.renoise(
                F.fuse(x0, fg[s:e], bg[s:e], sample_idx, w_f, w_b, average_bg=avg_bg[s:e]), eps[s:e], alpha_bar
            )
        else:
            fused = F.fuse_latent_space(z_vp[s:e], alpha_bar, fg[s:e], avg_bg[s:e], sample_idx, w_f, w_b, generator)
        parts.append(fused)
    info.update(w_f=_plain(w_f), w_b=_plain(w_b))
    return torch.cat(parts), info


def refuse_guide(
    scheduler: SchedulerMixin,
    cfg: FusionConfig,
    fg: torch.Tensor,
    segments: list[tuple[int, int]],
    w_f: float | torch.Tensor,
    w_b: float | torch.Tensor,
    first_step: int,
):
    """A `StepGuide` that fuses the predicted x0 again at every step after `first_step` (x0 space,
    each frame re-noised with its own eps), so that the backgrounds stay averaged down to t = 0.
    These later fusions average every frame of the segment (K = all, whatever fusion.num_samples).

    Only the background outside the dilated foreground is replaced: applied at every step, a soft
    mask edge (a thin limb is one or two latent pixels wide) would be blended away step by step."""
    fg_wide = F.dilate(fg, cfg.dilate)
    bg = avg_bg = 1.0 - fg_wide
    idx = [F.sample_frames(e - s, 0, None) for s, e in segments]

    def transform(x0: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                F.fuse(x0[s:e], fg_wide[s:e], bg[s:e], i, w_f, w_b, average_bg=avg_bg[s:e])
                for (s, e), i in zip(segments, idx)
            ]
        )

    return x0_guide(scheduler, transform, first_step=first_step + 1)


def _plain(w: float | torch.Tensor) -> float | list[float]:
    if isinstance(w, torch.Tensor):
        return [float(v) for v in w.flatten()] if w.numel() > 1 else float(w)
    return float(w)


def run(
    cfg: FusionStageConfig,
    components: Components,
    inputs: VideoInputs,
    cond: Conditioning,
    s1: SeparateResult,
    callback: StageCallback | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FusionResult:
    """Stage 2: stage 1's z_t -> eps at t (recovered from stage 1's x0 when it stopped at t) -> fuse -> denoise
    t..0 -> decode."""
    if s1.z_t.shape[0] != inputs.num_frames or s1.fg.shape[0] != inputs.num_frames:
        raise VidtuneError(
            f"stage 1 has {s1.z_t.shape[0]} frames and {s1.fg.shape[0]} masks but the inputs have "
            f"{inputs.num_frames}; rerun with --stages 1,2"
        )
    s = cfg.sampling
    device, dtype = components.device, components.unet.dtype
    t_index = s1.t_index
    scheduler = build_scheduler(components.scheduler, s)
    timesteps = prepare_scheduler(scheduler, s.steps, device, start=t_index)
    t = timesteps[0]
    eps_fn = split_eps_fn(components.unet, cond, s.guidance, cfg.separate.batch_frames, inputs.num_frames)
    z_t = s1.z_t.to(device=device, dtype=dtype)
    c = vp_factor(scheduler, t, z_t)
    if cfg.separate.stop == "fusion":
        # Stage 1 stopped here and predicted its x0 from the guided eps at t (`separate.predicted_x0`), which
        # is what fusion needs: recovered from (z_t, x0), not evaluated again (one UNet pass of every frame).
        eps = vp_eps(scheduler, t, z_t, s1.x0)
    else:
        with torch.no_grad():
            eps = eps_fn(scheduler.scale_model_input(z_t, t), t, t_index)
    alpha_bar = scheduler.alphas_cumprod[int(t)].to(device=device, dtype=torch.float32)
    fg = s1.fg.to(device).float()
    segments = prompt_segments(inputs.prompts)
    fused_vp, info = fuse(cfg.fusion, (c * z_t).float(), eps.float(), alpha_bar, fg, segments=segments, log=log)
    z_fused = (fused_vp / c).to(dtype)
    generator = torch.Generator("cpu").manual_seed(cfg.separate.seed)
    guide = None
    if cfg.fusion.repeat:
        w_f, w_b = (torch.tensor(info[k]) if isinstance(info[k], list) else info[k] for k in ("w_f", "w_b"))
        guide = refuse_guide(scheduler, cfg.fusion, fg, segments, w_f, w_b, first_step=t_index)
    # The latents entering each step from t on (stage 4's `init = "trajectory"`), kept in host memory
    # (SD, 256 frames, 25 steps: 210 MB in fp16).
    trajectory = [z_fused.detach().to("cpu", copy=True)]
    user = step_callback(callback, 2)

    def record(step: int, t_: torch.Tensor, latents: torch.Tensor) -> torch.Tensor | None:
        replaced = user(step, t_, latents) if user is not None else None
        if step + 1 < s.steps:
            trajectory.append((latents if replaced is None else replaced).detach().to("cpu", copy=True))
        return replaced

    with torch.no_grad():
        x0 = denoise(
            z_fused,
            scheduler,
            timesteps,
            eps_fn,
            start_index=t_index,
            guide=guide,
            eta=s.eta,
            generator=generator,
            progress=progress,
            desc="stage 2: denoising fused frames",
            callback=record,
        )
    frames = split_decode(components.vae, x0, cfg.separate.batch_frames, progress, "stage 2: decoding")
    frames = background_plate(frames, s1.fg_pixel, s1.fg, cfg.fusion, segments)
    return FusionResult(
        x0=x0,
        z_fused=z_fused,
        fg=s1.fg,
        weights=info,
        frames=frames,
        fg_pixel=s1.fg_pixel,
        trajectory=torch.stack(trajectory),
    )


class FusionStage(Stage):
    """Stage 2 in the registry (`vidtune.stages.registry`): stage 1's frames fused, on the base UNet."""

    number, name, title, method = 2, "fusion", "average fusion", "fuse"
    view = FusionStageConfig  # the config it reads (`config.stage_view`): its resume hash
    result = FusionResult
    video: str | None = f"{A.stage_dir(2)}/stage2.mp4"  # under the run folder
    uses: tuple[int, ...] = ()

    def requires(self, cfg: FusionStageConfig) -> tuple[int, ...]:
        return (1,)

    def run(self, ctx: StageContext, previous: Mapping[int, Any]) -> FusionResult:
        return run(
            ctx.cfg,
            ctx.components,
            ctx.inputs,
            ctx.conditioning(),
            previous[1],
            callback=ctx.callback,
            progress=ctx.progress,
            log=ctx.log,
        )
