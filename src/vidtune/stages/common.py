"""Helpers shared by the stages: scheduler from the config, conditioning, the video's eps and decoding
split over torchrun ranks, step callbacks, and what a stage runs with (`StageContext`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune import distributed as D
from vidtune.config import FusionConfig, SamplingConfig
from vidtune.sampling import EpsFn, FeatureBank, PromptBank, adapter_features, decode, frame_eps_fn, make_prompt_bank

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin, UNet2DConditionModel

    from vidtune.inputs import VideoInputs
    from vidtune.models import Components
    from vidtune.results import Result


def build_scheduler(base_scheduler: SchedulerMixin, cfg: SamplingConfig):
    """The configured sampler on the configured training schedule (SD v1-4's by default)."""
    from vidtune.models import make_scheduler

    config = dict(base_scheduler.config)
    config.update(
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        num_train_timesteps=cfg.num_train_timesteps,
    )
    return make_scheduler(cfg.scheduler, config)


def vp_factor(scheduler: SchedulerMixin, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """c with c * z = the VP latent sqrt(abar) x0 + sqrt(1-abar) eps (1 for DDIM/DDPM/DPM, 1/sqrt(sigma^2+1) for Euler)."""
    return scheduler.scale_model_input(torch.ones_like(like[:1]), t).flatten()[0]


def vp_x0(
    scheduler: SchedulerMixin, t: torch.Tensor, latents: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DDIM's clean prediction x0 of ``latents`` at t given eps, in float32 and the variance-preserving
    parametrisation whatever the sampler's scaling; returns (x0, c, alpha_bar) so the caller can re-noise."""
    from vidtune.method import fusion as F

    c, alpha_bar = _vp_terms(scheduler, t, latents)
    return F.x0_from_eps(c * latents.float(), eps.float(), alpha_bar), c, alpha_bar


def vp_eps(scheduler: SchedulerMixin, t: torch.Tensor, latents: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The eps that `vp_x0` turned into ``x0`` at t, recovered from ``latents`` and ``x0`` (float32): its
    inverse, so that a stage handed a clean prediction and the latents it came from does not evaluate the
    UNet again to get the eps back."""
    from vidtune.method import fusion as F

    c, alpha_bar = _vp_terms(scheduler, t, latents)
    return F.eps_from_x0(c * latents.float(), x0.to(latents.device).float(), alpha_bar)


def _vp_terms(scheduler: SchedulerMixin, t: torch.Tensor, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c, alpha_bar) at t in float32 on the latents' device: c z is the VP latent (`vp_factor`)."""
    c = vp_factor(scheduler, t, latents).float()
    return c, scheduler.alphas_cumprod[int(t)].to(device=latents.device, dtype=torch.float32)


def x0_guide(scheduler: SchedulerMixin, transform, first_step: int = 0, last_step: int | None = None):
    """A `sampling.StepGuide` applying ``transform`` to the predicted clean latents at every step
    in [first_step, last_step]: z_t -> x0 = x0(z_t, eps) -> transform -> z~_t = renoise(x0~, eps).

    The noise part of every frame stays its own eps, so the scheduler step then moves to the
    transformed x0 exactly as DDIM would to its own prediction. Works in the variance-preserving
    parametrisation whatever the sampler's scaling (Euler's sigmas): c z is the VP latent.
    """
    from vidtune.method import fusion as F

    def guide(step: int, t: torch.Tensor, latents: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if step < first_step or (last_step is not None and step > last_step):
            return latents
        x0, c, alpha_bar = vp_x0(scheduler, t, latents, eps)
        z = F.renoise(transform(x0), eps.float(), alpha_bar) / c
        return z.to(latents.dtype)

    return guide


@dataclass(frozen=True)
class Conditioning:
    """Per-frame conditioning computed once: prompt embeddings and adapter features."""

    prompts: PromptBank
    features: FeatureBank


def conditioning(
    components: Components,
    pose_images: np.ndarray,
    prompts: list[str],
    negative_prompt: str,
    adapter_scale: float,
    storage: torch.device | None = None,
) -> Conditioning:
    """Encode the frames' prompts and run the adapter once on every pose image."""
    bank = make_prompt_bank(components.tokenizer, components.text_encoder, prompts, negative_prompt)
    feats = adapter_features(components.adapter, pose_images, adapter_scale, storage=storage)
    return Conditioning(prompts=bank, features=feats)


def decode_frames(
    vae: Any, latents: torch.Tensor, batch: int = 4, progress: bool = True, desc: str = "decoding"
) -> np.ndarray:
    """Decode latents in chunks to uint8 (N, H, W, 3) RGB frames."""
    bar = tqdm(total=latents.shape[0], desc=desc, disable=not progress, leave=False, unit="frame")
    chunks = []
    for chunk in decode(vae, latents, batch=batch):
        chunks.append(chunk)
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(chunks)


StageCallback = Callable[[int, int, int, torch.Tensor], "torch.Tensor | None"]
"""The user's per-step callback: (stage, step, timestep, latents) -> replacement latents or None."""


DECODE_BATCH = 4  # `decode_frames`' chunk of frames


def frame_block(batch_frames: int) -> int:
    """The block of frames the ranks split by: whole UNet batches and whole decoding chunks, so that every
    rank evaluates exactly the batches one process does (`distributed.parts`)."""
    return math.lcm(max(1, batch_frames), DECODE_BATCH)


def split_eps_fn(
    unet: UNet2DConditionModel, cond: Conditioning, guidance: float, batch_frames: int, num_frames: int
) -> EpsFn:
    """Stages 1-2's eps of the whole video; under torchrun each rank evaluates its own frames (`D.part`)
    and the frames are gathered every step, so every rank holds the eps of every frame."""
    if not D.current().enabled:
        return frame_eps_fn(unet, cond.prompts, cond.features, guidance, batch_frames)
    align = frame_block(batch_frames)
    rows = D.part(num_frames, align=align)
    local = frame_eps_fn(unet, cond.prompts, cond.features, guidance, batch_frames, frames=list(rows))
    return D.gathered_eps_fn(local, rows, num_frames, align)


def split_decode(vae: AutoencoderKL, latents: torch.Tensor, batch_frames: int, progress: bool, desc: str) -> np.ndarray:
    """`decode_frames` of the whole video, each rank decoding its own frames (gathered under torchrun)."""
    align = frame_block(batch_frames)
    rows = D.part(latents.shape[0], align=align)
    frames = decode_frames(vae, latents[rows.start : rows.stop], batch=DECODE_BATCH, progress=progress, desc=desc)
    return D.gather_array(frames, latents.shape[0], align)


def step_callback(callback: StageCallback | None, stage: int):
    """The `sampling.denoise` callback that calls the user's `callback` with its stage number."""
    if callback is None:
        return None
    return lambda step, t, latents: callback(stage, step, int(t), latents)


def background_plate(
    frames: np.ndarray,
    fg_pixel: torch.Tensor | None,
    fg_latent: torch.Tensor,
    cfg: FusionConfig,
    segments: list[tuple[int, int]],
    transition: int = 0,
) -> np.ndarray:
    """Decoded frames with their backgrounds snapped to each prompt segment's pixel plate (`vidtune.method.plate`,
    ``fusion.plate*``). The masks are stage 1's pixel masks, or the latent masks upsampled (nearest)
    for a result built without the pixel ones."""
    from vidtune.method.plate import PlateConfig, composite

    if not cfg.plate:
        return frames
    if fg_pixel is None:
        size = frames.shape[1:3]
        fg_pixel = torch.nn.functional.interpolate(fg_latent.float().cpu(), size=size, mode="nearest")[:, 0]
    plate = PlateConfig(dilate=cfg.plate_dilate, key_low=cfg.plate_key_low, key_high=cfg.plate_key_high)
    return composite(frames, fg_pixel.float().cpu().numpy(), plate, segments, transition)


@dataclass(frozen=True)
class StageContext:
    """What a stage runs with (`vidtune.stages.registry.Stage.run`): `cfg`, its config view; the loaded
    components; the inputs; `conditioning()`, the shared per-frame conditioning (computed on first use);
    `folder`, its folder in the run folder (None in memory); the user's step callback; whether to show
    progress bars; where messages go."""

    cfg: Any
    components: Components
    inputs: VideoInputs
    conditioning: Callable[[], Conditioning]
    folder: Path | None = None
    callback: StageCallback | None = None
    progress: bool = True
    log: Callable[[str], None] = print


class Stage(Protocol):
    """One stage. `number` is its place (the CLI's `--stages 1,2`); `view` the config view it reads (the
    sections its resume hash covers, `config.stage_view`); `method` the `VidtunePipeline` method
    that runs it; `result` its result type; `video` its video under the run folder (None: none); `uses`
    the stages whose results it takes when they are done (stage 4: stage 3's tuned UNet)."""

    number: int
    name: str
    title: str
    method: str
    view: type
    result: type[Result]
    video: str | None
    uses: tuple[int, ...]

    def requires(self, cfg: Any) -> tuple[int, ...]:
        """The stages that must be done before this one runs with `cfg` (its config view)."""
        ...

    def run(self, ctx: StageContext, previous: Mapping[int, Result]) -> Result:
        """Run on `ctx` and the results of `requires` (and of `uses` when done) by stage number."""
        ...

    def finish(self, folder: Path, cfg: Any, log: Callable[[str], None]) -> None:
        """Tidy the stage's folder once it is marked done (stage 3 drops its checkpoints)."""
