"""Stage 4 — inter-frame consistency: temporal co-denoising of the whole video (Gen-L-Video).

The video is denoised as overlapping clips (length M, stride S, one prompt per clip) by the
(tuned) UNet with cross-frame attention inside each clip. Every step: eps of every clip (clips
batched up to `codenoise.max_batch_frames`), merged per frame with the merge weights, then ONE
scheduler step on the whole video (right for every scheduler; design §3, stage 4). Memory:
the whole video's latents are small; activations are per batch of clips; decoding streams to
PNG frames and an mp4.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from vidtune import atomic
from vidtune.attention import CrossFrameAttention
from vidtune.config import CodenoiseConfig, RunConfig
from vidtune.inputs import VideoInputs
from vidtune.sampling import (EpsFn, FeatureBank, PromptBank, adapter_features, denoise, guided_eps, initial_noise, make_prompt_bank,
                              prepare_scheduler)
from vidtune.stages.common import build_scheduler, decode_to_disk
from vidtune.windows import MergeAccumulator, Window, assign_prompts, clip_windows, frame_merge_weights, \
    pixel_merge_weights


@dataclass(frozen=True)
class ClipPlan:
    """The clips of a video and how their predictions merge: windows [(start, end)], per-clip prompt
    bank (index = clip), merge weights (K, N) or per pixel (K, N, 1, h, w), the global anchor frame."""

    windows: list[Window]
    prompts: list[str]
    weights: torch.Tensor
    anchor: int


def plan_clips(cfg: CodenoiseConfig, num_frames: int, schedule, fg: torch.Tensor | None = None) -> ClipPlan:
    """Windows, clip prompts and merge weights for `num_frames` frames (pure; no model)."""
    windows = clip_windows(num_frames, cfg.clip_length, cfg.stride, shrink_clip=cfg.shrink_clip)
    weights = frame_merge_weights(num_frames, windows, cfg.weighting)
    if cfg.fg_gain > 0 and fg is not None:
        weights = pixel_merge_weights(weights, windows, fg, cfg.fg_gain)
    return ClipPlan(windows=windows, prompts=assign_prompts(windows, schedule), weights=weights,
                    anchor=num_frames // 2)


def clip_batches(windows: Sequence[Window], max_frames: int) -> list[list[int]]:
    """Group consecutive clips so that each UNet batch holds at most `max_frames` frames (>= 1 clip)."""
    batches: list[list[int]] = [[]]
    used = 0
    for k, (s, e) in enumerate(windows):
        if batches[-1] and used + (e - s) > max_frames:
            batches.append([])
            used = 0
        batches[-1].append(k)
        used += e - s
    return batches


def codenoise_eps_fn(unet, xattn: CrossFrameAttention | None, plan: ClipPlan, clip_bank: PromptBank,
                     anchor_bank: PromptBank, features: FeatureBank, guidance: float, max_batch_frames: int) -> EpsFn:
    """eps(f) = sum_k w_k(f) eps_k(f) / sum_k w_k(f) over the clips containing f (design §3, stage 4)."""
    batches = clip_batches(plan.windows, max_batch_frames)
    cfg_copies = 2 if guidance > 1.0 else 1

    def eps_fn(model_input: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        dtype = unet.dtype
        if xattn is not None and xattn.uses_anchor:
            a = [plan.anchor]
            with xattn.record_anchor():
                feats = features.take(a, model_input.device, dtype) if features.num_frames else []
                guided_eps(unet, model_input[a].to(dtype), t, anchor_bank.embeds, anchor_bank.uncond, feats, guidance)
        acc = MergeAccumulator(model_input.shape[0])
        for batch in batches:
            frames = [f for k in batch for f in range(*plan.windows[k])]
            sizes = [plan.windows[k][1] - plan.windows[k][0] for k in batch]
            if xattn is not None:
                anchor_rows = [c for c in range(cfg_copies) for _ in batch]
                xattn.set_groups(sizes * cfg_copies, anchor_index=anchor_rows)
            x = model_input[frames].to(dtype)
            cond = torch.cat([clip_bank.take([k]).expand(n, -1, -1) for k, n in zip(batch, sizes)]).to(x.device)
            feats = features.take(frames, x.device, dtype) if features.num_frames else []
            eps = guided_eps(unet, x, t, cond, clip_bank.uncond.to(x.device), feats, guidance).to(model_input.dtype)
            for k, eps_k in zip(batch, eps.split(sizes)):
                s, e = plan.windows[k]
                acc.add((s, e), eps_k, plan.weights[k, s:e])
        return acc.result()

    return eps_fn


def initial_latents(cfg: CodenoiseConfig, scheduler, timesteps: torch.Tensor, num_frames: int,
                    shape: tuple[int, int, int], device, dtype, fused_x0: torch.Tensor | None) -> tuple[torch.Tensor, int]:
    """z at the first step: seeded noise, or stage 2's frames noised to `strength` (SDEdit). Returns (z, start index)."""
    noise = initial_noise(num_frames, shape, cfg.seed, shared=cfg.noise_mode == "shared", device=device, dtype=dtype)
    if cfg.init == "noise":
        return noise * scheduler.init_noise_sigma, 0
    start = min(len(timesteps) - 1, int(round((1.0 - cfg.strength) * len(timesteps))))
    t0 = timesteps[start:start + 1]
    if hasattr(scheduler, "set_begin_index"):  # Euler / DPM-Solver's add_noise uses the sigma at the begin index
        scheduler.set_begin_index(start * getattr(scheduler, "order", 1))
    return scheduler.add_noise(fused_x0.to(device=device, dtype=dtype), noise, t0.repeat(num_frames)), start


def use_tuned_unet(components, rd, cfg: RunConfig) -> str:
    """Load stage 3's result into the UNet when stage 3 is done (once per process); say which UNet runs."""
    marker = str(rd.stage(3).resolve())
    tuned = components.sources.get("tuned")
    if not rd.is_done(3, cfg):
        if tuned:
            raise RuntimeError(f"the loaded UNet was tuned by {tuned}; load fresh components for a base-model stage 4")
        return "base"
    if components.sources.get("tuned") != marker:
        from vidtune.stages.tuning import apply_tuned

        apply_tuned(components, rd.stage(3))
        components.sources["tuned"] = marker
    return "tuned"


def run(cfg: RunConfig, components, inputs: VideoInputs, rd, progress: bool = True) -> dict:
    """Stage 4: plan clips -> conditioning -> initial latents -> co-denoise -> decode to final.mp4."""
    from vidtune.inputs import prompt_schedule
    from vidtune.stages import fusion as stage2
    from vidtune.stages import separate

    c, s = cfg.codenoise, cfg.sampling
    device, dtype = components.device, components.unet.dtype
    unet_kind = use_tuned_unet(components, rd, cfg)
    fg = separate.load(rd.stage(1))["fg"] if c.fg_gain > 0 else None
    plan = plan_clips(c, inputs.num_frames, prompt_schedule(cfg.inputs), fg)
    clip_bank = make_prompt_bank(components.tokenizer, components.text_encoder, plan.prompts, cfg.inputs.negative_prompt)
    anchor_bank = make_prompt_bank(components.tokenizer, components.text_encoder, [inputs.prompts[plan.anchor]],
                                   cfg.inputs.negative_prompt)
    # On an accelerator the features of every frame wait in host memory; each batch copies its frames over
    # (at 1024 SD frames they are ~4.5 GiB in fp16, more than the latents and one batch's activations).
    storage = torch.device("cpu") if torch.device(device).type != "cpu" else None
    features = adapter_features(components.adapter, inputs.pose_images, s.adapter_scale, storage=storage)
    scheduler = build_scheduler(components.scheduler, s)
    f = components.vae_scale_factor
    shape = (components.latent_channels, cfg.inputs.height // f, cfg.inputs.width // f)
    all_steps = prepare_scheduler(scheduler, s.steps, device)
    fused = stage2.load(rd.stage(2))["x0"] if c.init == "fused" else None
    z, start = initial_latents(c, scheduler, all_steps, inputs.num_frames, shape, device, dtype, fused)
    timesteps = prepare_scheduler(scheduler, s.steps, device, start=start)
    xattn = CrossFrameAttention(c.attention)
    xattn.install(components.unet)
    try:
        eps_fn = codenoise_eps_fn(components.unet, xattn, plan, clip_bank, anchor_bank, features, s.guidance,
                                  c.max_batch_frames)
        with torch.no_grad():
            x0 = denoise(z, scheduler, timesteps, eps_fn, start_index=start, eta=s.eta,
                         generator=torch.Generator("cpu").manual_seed(c.seed), progress=progress,
                         desc=f"stage 4: co-denoising {len(plan.windows)} clips")
    finally:
        xattn.remove()
    del features, eps_fn  # not needed while decoding
    decode_to_disk(components.vae, x0, rd.stage(4) / "frames", rd.final_video, inputs.fps, progress=progress,
                   desc="stage 4: decoding")
    atomic.write_safetensors(rd.stage(4) / "latents.safetensors", {"x0": x0})
    return {"frames": inputs.num_frames, "clips": len(plan.windows), "unet": unet_kind, "attention": c.attention,
            "unet_frame_evals_per_step": (sum(e - s_ for s_, e in plan.windows) + (1 if xattn.uses_anchor else 0))
            * (2 if s.guidance > 1 else 1)}
