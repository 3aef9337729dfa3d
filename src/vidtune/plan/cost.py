"""UNet frame evaluations per stage against frame-by-frame generation, and a time estimate from one
measured UNet evaluation (`vidtune plan --measure`)."""

from __future__ import annotations

from vidtune.config import STAGE_NUMBERS, RunConfig, codenoise_steps

TRAIN_STEP_EVALS = 3  # a training sample of stage 3: forward + backward ~ 3 forward evaluations


def unet_evaluations(cfg: RunConfig, num_frames: int) -> dict[str, float]:
    """UNet frame evaluations per video frame of each stage and in all, and of frame-by-frame generation
    (`sampling.steps` steps of one frame; classifier-free guidance counts twice). Pure: no model.

    stage 1: every step, or with ``separate.stop = "fusion"`` the steps before the fusion step t and the eps
    at t (its x0 prediction); stage 2: the steps from the fusion step t on, after the eps at t when stage 1 ran
    to the end (stopped at t, stage 1's x0 prediction gives that eps back, `stages.common.vp_eps`); stage 3: its
    training samples x `TRAIN_STEP_EVALS`, spread over the frames; stage 4: its steps (``codenoise.steps``
    of its own or `sampling.steps`, from the SDEdit start with ``init = "fused"`` or ``"trajectory"``) x the clips' frames per video frame (1 in ``shifted`` mode, about M / S in
    ``overlap`` mode) + the global anchor, its steps below ``codenoise.unguided_below`` without guidance."""
    from vidtune.sampling import fusion_index, sdedit_start

    s, c, t = cfg.sampling, cfg.codenoise, cfg.tuning
    cfg_rows = 2 if s.guidance > 1.0 else 1
    steps4 = codenoise_steps(cfg)
    start4 = sdedit_start(steps4, c.strength) if c.init != "noise" else 0
    rows4 = sum(
        cfg_rows if float(ts) >= c.unguided_below * s.num_train_timesteps else 1
        for ts in _timesteps(s, steps4)[start4:]
    )
    eps_at_t = 0 if cfg.separate.stop == "fusion" else 1  # stage 2's eps at t: recovered or evaluated
    per_step = float(num_frames) if c.mode == "shifted" else float(_overlap_frames(c, num_frames))
    per_step += 1 if c.attention == "global" else 0
    out = {
        "frame_by_frame": float(s.steps * cfg_rows),
        "stage1": float(stage1_steps(s.steps, cfg.separate) * cfg_rows),
        "stage2": float((s.steps - fusion_index(s.steps, cfg.separate.fusion_step) + eps_at_t) * cfg_rows),
        "stage3": TRAIN_STEP_EVALS * t.steps * t.batch_size * t.grad_accum / num_frames,
        "stage4": rows4 * per_step / num_frames,
    }
    out["total"] = out["stage1"] + out["stage2"] + out["stage3"] + out["stage4"]
    return out


def stage1_steps(num_steps: int, separate) -> int:
    """UNet evaluations of one frame in stage 1 (per CFG row): all steps, or those up to the fusion step."""
    from vidtune.sampling import fusion_index

    return fusion_index(num_steps, separate.fusion_step) + 1 if separate.stop == "fusion" else num_steps


def _timesteps(s, steps: int) -> list[int]:
    """The sampler's timesteps at ``steps`` steps on SD's schedule (what a run's scheduler gives)."""
    from vidtune.models import make_scheduler, sd_schedule_config

    scheduler = make_scheduler(
        s.scheduler, sd_schedule_config(s.beta_start, s.beta_end, s.beta_schedule, s.num_train_timesteps)
    )
    scheduler.set_timesteps(steps)
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
