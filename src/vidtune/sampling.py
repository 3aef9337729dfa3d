"""The denoising loop on top of diffusers components (docs/method.md).

Classifier-free guidance, T2I-Adapter residuals computed once per frame and reused at every
step, a step hook that reads or replaces z_t at a given step, batched frames with ONE scheduler
step per timestep for the whole video, explicit generators. Layout of a video latent:
(frames, channels, height, width). Tensors decide device and dtype; decoding runs in fp32.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune.errors import VidtuneError

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, SchedulerMixin, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer


# A step hook sees (step index, timestep, z_t) before the model is evaluated at that step and
# may return a replacement z_t (or None to keep it).
StepHook = Callable[[int, torch.Tensor, torch.Tensor], "torch.Tensor | None"]
# A step guide sees (step index, timestep, z_t, eps) after the model at that step and returns the z_t the
# scheduler steps from (eps kept): how average fusion is applied at every step (DDIM-consistent when it
# changes only the x0 part of z_t).
StepGuide = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# An eps function maps the scheduler-scaled latents of the whole video to the guided eps.
EpsFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class PromptBank:
    """Unique prompt embeddings plus, per frame, which one it uses (saves memory on long videos).

    embeds: (P, L, D) conditional embeddings; uncond: (1, L, D) for the negative prompt;
    index: (N,) long, the prompt of each frame.
    """

    embeds: torch.Tensor
    uncond: torch.Tensor
    index: torch.Tensor

    def take(self, frames: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """Conditional embeddings (B, L, D) of the given frames."""
        idx = torch.as_tensor(frames, dtype=torch.long, device=self.index.device)
        return self.embeds[self.index[idx].to(self.embeds.device)]


@dataclass(frozen=True)
class FeatureBank:
    """T2I-Adapter features of every frame, computed once: a list of (N, C_l, H_l, W_l) levels.

    `storage` may be the CPU for long videos on a GPU; `take` moves the requested frames over.
    """

    levels: tuple[torch.Tensor, ...]

    def take(
        self, frames: torch.Tensor | Sequence[int], device: torch.device, dtype: torch.dtype
    ) -> list[torch.Tensor]:
        idx = torch.as_tensor(frames, dtype=torch.long)
        return [lvl[idx.to(lvl.device)].to(device=device, dtype=dtype) for lvl in self.levels]

    @property
    def num_frames(self) -> int:
        return 0 if not self.levels else self.levels[0].shape[0]


@torch.no_grad()
def encode_prompts(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: Sequence[str], negative_prompt: str = ""
) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP embeddings as StableDiffusionPipeline computes them: (P, L, D) and the negative (1, L, D)."""

    def encode(texts: Sequence[str]) -> torch.Tensor:
        ids = tokenizer(
            list(texts),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        return text_encoder(ids.to(text_encoder.device))[0]

    return encode(prompts), encode([negative_prompt])


def make_prompt_bank(
    tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, frame_prompts: Sequence[str], negative_prompt: str = ""
) -> PromptBank:
    """Encode each distinct prompt once; `frame_prompts[i]` is frame i's prompt."""
    unique = list(dict.fromkeys(frame_prompts))
    embeds, uncond = encode_prompts(tokenizer, text_encoder, unique, negative_prompt)
    index = torch.tensor([unique.index(p) for p in frame_prompts], dtype=torch.long)
    return PromptBank(embeds=embeds, uncond=uncond, index=index)


def pose_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB pose images -> float (N, 3, H, W) in [0, 1] (T2I-Adapter's input)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def adapter_features(
    adapter: T2IAdapter | None,
    images: np.ndarray,
    scale: float = 1.0,
    batch: int = 8,
    storage: torch.device | None = None,
) -> FeatureBank:
    """Run the T2I-Adapter once per frame: residuals (scaled by `scale`) reused at every step."""
    if adapter is None:
        return FeatureBank(levels=())
    chunks: list[list[torch.Tensor]] = []
    device, dtype = adapter.device, adapter.dtype
    for start in range(0, len(images), batch):
        x = pose_tensor(images[start : start + batch]).to(device=device, dtype=dtype)
        feats = adapter(x)
        chunks.append([(f * scale).to(storage or device) for f in feats])
    levels = tuple(torch.cat([c[i] for c in chunks]) for i in range(len(chunks[0])))
    return FeatureBank(levels=levels)


def guided_eps(
    unet: UNet2DConditionModel,
    model_input: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    features: list[torch.Tensor],
    guidance: float,
) -> torch.Tensor:
    """eps_hat = eps(uncond) + g (eps(cond) - eps(uncond)) for a batch of frames (B, C, h, w).

    The batch is evaluated as [uncond frames, cond frames] (diffusers' order); no CFG when g <= 1.
    """
    batch = model_input.shape[0]
    if guidance > 1.0:
        x = torch.cat([model_input, model_input])
        ctx = torch.cat([uncond.expand(batch, -1, -1), cond])
        res = [torch.cat([f, f]) for f in features]
    else:
        x, ctx, res = model_input, cond, list(features)
    kwargs = {"down_intrablock_additional_residuals": res} if res else {}
    eps = unet(x, t, encoder_hidden_states=ctx.to(unet.dtype), return_dict=False, **kwargs)[0]
    if guidance > 1.0:
        uncond_eps, cond_eps = eps.chunk(2)
        eps = uncond_eps + guidance * (cond_eps - uncond_eps)
    return eps


def frame_eps_fn(
    unet: UNet2DConditionModel,
    prompts: PromptBank,
    features: FeatureBank,
    guidance: float,
    batch_frames: int,
    frames: Sequence[int] | None = None,
) -> EpsFn:
    """Eps of independent frames (stages 1-2): the UNet runs on chunks of `batch_frames` frames.

    `frames[j]` is the video frame index of latent row j (defaults to 0..N-1).
    """

    def eps_fn(model_input: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        index = list(range(model_input.shape[0])) if frames is None else list(frames)
        out = []
        for s in range(0, model_input.shape[0], batch_frames):
            rows = index[s : s + batch_frames]
            x = model_input[s : s + batch_frames].to(unet.dtype)
            feats = features.take(rows, x.device, x.dtype) if features.num_frames else []
            cond, uncond = prompts.take(rows).to(x.device), prompts.uncond.to(x.device)
            out.append(guided_eps(unet, x, t, cond, uncond, feats, guidance).to(model_input.dtype))
        return torch.cat(out)

    return eps_fn


def step_kwargs(scheduler: SchedulerMixin, eta: float, generator: torch.Generator | None) -> dict:
    """The extra arguments this scheduler's `step` accepts (eta for DDIM, a generator when stochastic)."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = eta
    if "generator" in params:
        kwargs["generator"] = generator
    return kwargs


def fusion_index(num_steps: int, fraction: float) -> int:
    """The sampling step index of the fusion step t: `fraction` of the way through the schedule."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"separate.fusion_step must be in [0, 1], got {fraction}")
    return min(num_steps - 1, max(0, int(round(fraction * num_steps))))


def sdedit_start(num_steps: int, strength: float) -> int:
    """SDEdit's first step index: noising to `strength` skips the first (1 - strength) of the steps
    (at least one step runs). Stage 4's `codenoise.init = "fused"` and `vidtune plan` use it."""
    return min(num_steps - 1, int(round((1.0 - strength) * num_steps)))


def prepare_scheduler(
    scheduler: SchedulerMixin, num_steps: int, device: torch.device | str, start: int = 0
) -> torch.Tensor:
    """Set the scheduler's timesteps and return those from step index `start` on.

    Starting mid-schedule (stage 2 continues from the fusion step) tells stateful schedulers where
    they begin via `set_begin_index` so Euler / DPM-Solver index their sigmas correctly.
    """
    scheduler.set_timesteps(num_steps, device=device)
    timesteps = scheduler.timesteps
    order = getattr(scheduler, "order", 1)
    begin = start * order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(begin)
    return timesteps[begin:]


def denoise(
    latents: torch.Tensor,
    scheduler: SchedulerMixin,
    timesteps: torch.Tensor,
    eps_fn: EpsFn,
    *,
    start_index: int = 0,
    hook: StepHook | None = None,
    guide: StepGuide | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    desc: str = "denoising",
    callback: StepHook | None = None,
) -> torch.Tensor:
    """Run the sampler from `timesteps[0]` (step index `start_index`) to x0 on the whole video.

    Per step: hook (may replace z_t) -> scale_model_input -> eps for every frame -> guide (may
    replace z_t given eps) -> ONE scheduler step on all frames -> callback(step, t, z_{t-1}) (may
    replace the new latents, like diffusers' `callback_on_step_end`). Returns the final latents (N, C, h, w).
    """
    extra = step_kwargs(scheduler, eta, generator)
    bar = tqdm(
        total=len(timesteps),
        desc=desc,
        disable=not progress,
        leave=False,
        unit="step",
        postfix={"frames": latents.shape[0]},
    )
    for j, t in enumerate(timesteps):
        step = start_index + j
        if hook is not None:
            replaced = hook(step, t, latents)
            if replaced is not None:
                latents = replaced
        model_input = scheduler.scale_model_input(latents, t)
        eps = eps_fn(model_input, t, step)
        if guide is not None:
            latents = guide(step, t, latents, eps)
        latents = scheduler.step(eps, t, latents, **extra, return_dict=False)[0]
        check_finite(latents, desc, step, start_index + len(timesteps), t)
        if callback is not None:
            replaced = callback(step, t, latents)
            if replaced is not None:
                latents = replaced
        bar.update()
    bar.close()
    return latents


def check_finite(latents: torch.Tensor, desc: str, step: int, num_steps: int, t: torch.Tensor) -> None:
    """Stop the stage (it is then not marked done) when a step produced NaN or infinite latents."""
    if not bool(torch.isfinite(latents).all()):
        raise VidtuneError(
            f"{desc}: the latents became NaN/infinite at step {step + 1} of {num_steps} "
            f"(timestep {int(t)}); the stage is not marked done: check sampling.guidance, "
            f"sampling.eta and the beta schedule, or use model.dtype = 'fp32'"
        )


def initial_noise(
    num_frames: int,
    shape: tuple[int, int, int],
    seed: int,
    *,
    shared: bool = False,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """z_T: frame i from its own generator seeded `seed + i` (or every frame the noise of `seed`).

    Per-frame generators make a frame's noise independent of how many frames are generated.
    """
    out = torch.empty((num_frames, *shape), dtype=dtype, device=device)
    for i in range(num_frames):
        g = torch.Generator("cpu").manual_seed(seed + (0 if shared else i))
        out[i] = torch.randn((1, *shape), generator=g, dtype=torch.float32)[0].to(device=device, dtype=dtype)
    return out


@torch.no_grad()
def decode(vae: AutoencoderKL, latents: torch.Tensor, batch: int = 4) -> Iterator[np.ndarray]:
    """Decode latents in fp32 chunks; yields uint8 (B, H, W, 3) RGB arrays (streaming)."""
    scale = vae.config.scaling_factor
    for s in range(0, latents.shape[0], batch):
        z = latents[s : s + batch].to(device=vae.device, dtype=vae.dtype) / scale
        img = vae.decode(z, return_dict=False)[0].float()
        img = ((img / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        yield img.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def encode(
    vae: AutoencoderKL, images: np.ndarray, batch: int = 4, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 (N, H, W, 3) RGB -> scaled latents (N, C, h, w) (the posterior mean, times the scaling factor)."""
    out = []
    for s in range(0, len(images), batch):
        x = pose_tensor(images[s : s + batch]).to(device=vae.device, dtype=vae.dtype) * 2 - 1
        out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)
