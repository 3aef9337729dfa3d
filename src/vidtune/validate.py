"""Check a run's config against itself and against its inputs before any stage work starts.

`config.load` checks keys and types; this module checks values: a schedule that destroys the
signal, zero steps, a fusion step outside the schedule, clips longer than the video... Every
problem is one `VidtuneError` line naming the key, the bad value and the fix, raised before
stage 1 (which with SD can take hours) and before anything in the run folder is written.
`vidtune plan` runs the same checks. Pure: no torch, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from vidtune.config import CODENOISE_STAGE, STAGE_NUMBERS, RunConfig
from vidtune.errors import VidtuneError

# The schedule must keep some signal at its last training step: alpha_bar_T below this makes
# x0 = (z - sqrt(1 - abar) eps) / sqrt(abar) blow up (SD v1-4's own abar_T is 4.7e-3).
MIN_FINAL_ALPHA_BAR = 1e-8
MAX_TRAIN_TIMESTEPS = 100_000  # SD's is 1000; the schedule check is O(T)


def _fail(key: str, value: Any, rule: str, fix: str) -> VidtuneError:
    """The one-line error: `key = value rule; fix`."""
    return VidtuneError(f"{key} = {value!r} {rule}; {fix}")


def check_finite(cfg: RunConfig) -> None:
    """Every float field is a finite number (TOML and --set accept nan and inf)."""
    for section in fields(cfg):
        values = getattr(cfg, section.name)
        for f in fields(values):
            value = getattr(values, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise _fail(
                    f"{section.name}.{f.name}",
                    value,
                    "is not a finite number",
                    f"set {section.name}.{f.name} to a number",
                )


def _example(key: str, fix: str) -> str:
    """ "e.g. 4" -> "use e.g. separate.batch_frames = 4"; other fixes are kept as they are."""
    return f"use e.g. {key} = {fix[5:]}" if fix.startswith("e.g. ") else fix


def _at_least(key: str, value: float, low: float, fix: str) -> None:
    if value < low:
        raise _fail(key, value, f"must be >= {low:g}", _example(key, fix))


def _positive(key: str, value: float, fix: str) -> None:
    if not value > 0:
        raise _fail(key, value, "must be > 0", _example(key, fix))


def final_alpha_bar(beta_start: float, beta_end: float, schedule: str, num_train_timesteps: int) -> float:
    """alpha_bar at the last training step, prod_t (1 - beta_t), of diffusers' beta schedules."""
    n = num_train_timesteps
    if schedule == "scaled_linear":
        a, b = math.sqrt(beta_start), math.sqrt(beta_end)
        betas = [(a + (b - a) * i / max(n - 1, 1)) ** 2 for i in range(n)]
    else:
        betas = [beta_start + (beta_end - beta_start) * i / max(n - 1, 1) for i in range(n)]
    log_abar = sum(math.log1p(-beta) if beta < 1 else -math.inf for beta in betas)
    return math.exp(log_abar) if log_abar > -math.inf else 0.0


def check_sampling(cfg: RunConfig) -> None:
    """The training schedule and the sampler (docs/method.md: SD v1-4's schedule, DDIM, CFG)."""
    s = cfg.sampling
    sd = "SD v1-4's is sampling.beta_start = 0.00085, sampling.beta_end = 0.012"
    _at_least("sampling.num_train_timesteps", s.num_train_timesteps, 1, "SD's is 1000")
    if s.num_train_timesteps > MAX_TRAIN_TIMESTEPS:
        raise _fail(
            "sampling.num_train_timesteps",
            s.num_train_timesteps,
            f"exceeds {MAX_TRAIN_TIMESTEPS}",
            "use the model's own training schedule (SD's is 1000)",
        )
    if not 0 < s.beta_start < 1:
        raise _fail("sampling.beta_start", s.beta_start, "must be in (0, 1)", sd)
    if not s.beta_start <= s.beta_end < 1:
        raise VidtuneError(
            f"sampling.beta_end = {s.beta_end!r} must be in [sampling.beta_start = {s.beta_start!r}, 1) "
            f"(noise grows along the schedule); {sd}"
        )
    abar = final_alpha_bar(s.beta_start, s.beta_end, s.beta_schedule, s.num_train_timesteps)
    if abar < MIN_FINAL_ALPHA_BAR:
        raise VidtuneError(
            f"sampling.beta_start = {s.beta_start!r} -> beta_end = {s.beta_end!r} over "
            f"{s.num_train_timesteps} steps leaves no signal (alpha_bar at the last step {abar:.3g}); {sd}"
        )
    _at_least("sampling.steps", s.steps, 1, "use e.g. --steps 50 (DDIM)")
    if s.steps >= s.num_train_timesteps:  # SD's schedulers offset their timesteps by 1: N steps of N overflow
        raise _fail(
            "sampling.steps",
            s.steps,
            f"must be below sampling.num_train_timesteps = {s.num_train_timesteps}",
            "use fewer sampling steps",
        )
    if not 0 <= s.eta <= 1:
        raise _fail("sampling.eta", s.eta, "must be in [0, 1]", "0 is deterministic DDIM, 1 is DDPM-like")
    _at_least("sampling.guidance", s.guidance, 0, "use 7.5 (SD's default), or a value <= 1 for no guidance")
    _at_least("sampling.adapter_scale", s.adapter_scale, 0, "use 1.0 (0 ignores the poses)")


def check_inputs(cfg: RunConfig) -> None:
    """Frame size, frame count and rate."""
    i = cfg.inputs
    for key, value in (("inputs.height", i.height), ("inputs.width", i.width)):
        if value < 8 or value % 8:
            near = sorted({max(8, value // 8 * 8), max(8, -(-value // 8) * 8)})
            raise _fail(
                key,
                value,
                "must be a positive multiple of 8 (the VAE and UNet downsample by 8)",
                f"use {' or '.join(map(str, near))} (--{key.split('.')[1]} on the command line)",
            )
    _at_least("inputs.frames", i.frames, 0, "0 keeps every frame of the pose source")
    _at_least("inputs.fps", i.fps, 0, "0 keeps the pose source's rate")


def check_separate(cfg: RunConfig) -> None:
    """Stage 1: the fusion step lies inside the schedule; frames per UNet batch."""
    p = cfg.separate
    if not 0 < p.fusion_step < 1:
        raise _fail(
            "separate.fusion_step",
            p.fusion_step,
            "must be in (0, 1) (a fraction of the schedule)",
            "the paper's is 0.5",
        )
    _at_least("separate.batch_frames", p.batch_frames, 1, "e.g. 4")
    steps = cfg.sampling.steps
    at = int(round(p.fusion_step * steps))  # `sampling.fusion_index` before it clamps
    if p.stop == "fusion" and steps >= 1 and not 1 <= at <= steps - 1:
        where = "before the first step" if at < 1 else "at or past the last step"
        raise VidtuneError(
            f"separate.fusion_step = {p.fusion_step:g} of sampling.steps = {steps} puts the fusion step {where}, "
            f"so stage 1 (separate.stop = 'fusion') and stage 2 would not share it; choose a fusion step between "
            f"{1 / steps:.2g} and {(steps - 1) / steps:.2g}, or more sampling.steps"
        )


def check_fusion(cfg: RunConfig) -> None:
    """Stage 2: sample count and weights."""
    f = cfg.fusion
    _at_least("fusion.num_samples", f.num_samples, 0, "0 averages over every frame")
    _at_least("fusion.w_f", f.w_f, 0, "the paper's is 1.0")
    _at_least("fusion.w_b", f.w_b, 0, "the paper's is 1.0")
    _at_least("fusion.fidelity", f.fidelity, 0, "e.g. 1.0")
    _at_least("fusion.dilate", f.dilate, 0, "0 keeps the mask as it is, e.g. 1")
    if f.learn:
        _at_least("fusion.learn_steps", f.learn_steps, 1, "e.g. 50")
        _positive("fusion.learn_lr", f.learn_lr, "e.g. 0.05")


def check_tuning(cfg: RunConfig) -> None:
    """Stage 3: what `stages.tuning.check_config` checks at stage 3, checked before stage 1."""
    t = cfg.tuning
    _at_least("tuning.steps", t.steps, 1, "e.g. 300")
    if not 0 < t.max_timestep <= 1:
        raise _fail("tuning.max_timestep", t.max_timestep, "must be in (0, 1]", "1.0 trains on the whole schedule")
    if not 0 <= t.uncond_prob <= 1:
        raise _fail("tuning.uncond_prob", t.uncond_prob, "must be in [0, 1]", "e.g. 0.5")
    if not 0 < t.typical_fraction <= 1:
        raise _fail(
            "tuning.typical_fraction", t.typical_fraction, "must be in (0, 1]", "1 trains on every frame, e.g. 0.5"
        )
    _positive("tuning.lr", t.lr, "SD's default is tuning.lr = 5e-6")
    if t.trainable == "lora":
        _at_least("tuning.lora_rank", t.lora_rank, 1, "e.g. 4")
    for name in ("batch_size", "grad_accum"):
        _at_least(f"tuning.{name}", getattr(t, name), 1, "e.g. 1")
    for name in ("warmup_steps", "checkpoint_every"):
        _at_least(f"tuning.{name}", getattr(t, name), 0, "0 turns it off")
    for name in ("grad_clip", "l_n", "l_f", "l_b"):
        _at_least(f"tuning.{name}", getattr(t, name), 0, "e.g. 1.0")


def check_codenoise(cfg: RunConfig) -> None:
    """Stage 4: clip length, stride, SDEdit strength, batch size."""
    c = cfg.codenoise
    _at_least("codenoise.clip_length", c.clip_length, 1, "e.g. 16")
    _at_least("codenoise.stride", c.stride, 1, "use e.g. half of codenoise.clip_length")
    if c.stride > c.clip_length:
        raise VidtuneError(
            f"codenoise.stride = {c.stride} is larger than codenoise.clip_length = {c.clip_length}: "
            "frames between clips would never be denoised; use a stride <= the clip length"
        )
    if not 0 < c.strength <= 1:
        raise _fail("codenoise.strength", c.strength, "must be in (0, 1]", "1 noises the fused frames fully, e.g. 0.8")
    if not 0 <= c.unguided_below <= 1:
        raise _fail("codenoise.unguided_below", c.unguided_below, "must be in [0, 1]", "0 guides every step, e.g. 0.2")
    _at_least("codenoise.fg_gain", c.fg_gain, 0, "0 turns it off")
    _at_least("codenoise.background_margin", c.background_margin, 0, "0 keeps everything outside the figure")
    if not 0 <= c.figure_pull <= 1:
        raise _fail("codenoise.figure_pull", c.figure_pull, "must be in [0, 1]", "0 turns it off, e.g. 0.5")
    if not 0 <= c.tuned_scale <= 2:
        raise _fail(
            "codenoise.tuned_scale", c.tuned_scale, "must be in [0, 2]", "1 applies stage 3's tuning as trained"
        )
    if not 0 < c.figure_pull_steps <= 1:
        raise _fail("codenoise.figure_pull_steps", c.figure_pull_steps, "must be in (0, 1]", "1 pulls at every step")
    if not 0 < c.figure_pull_below <= 1:
        raise _fail(
            "codenoise.figure_pull_below", c.figure_pull_below, "must be in (0, 1]", "1 pulls from the first step"
        )
    _at_least("codenoise.transition", c.transition, 0, "0 cuts between prompts, e.g. 8")
    _at_least("codenoise.steps", c.steps, 0, "0 uses sampling.steps")
    steps = cfg.sampling.steps
    if c.init == "trajectory" and c.steps not in (0, steps):
        raise VidtuneError(
            f"codenoise.steps = {c.steps} with codenoise.init = 'trajectory': stage 2's trajectory is on "
            f"sampling.steps = {steps}'s steps; use codenoise.steps = 0 or init = 'fused'"
        )
    if c.init == "trajectory" and steps >= 1:
        start = min(steps - 1, int(round((1.0 - c.strength) * steps)))  # `sampling.sdedit_start`
        fusion = min(steps - 1, max(0, int(round(cfg.separate.fusion_step * steps))))  # `sampling.fusion_index`
        if start < fusion:
            raise VidtuneError(
                f"codenoise.init = 'trajectory' at codenoise.strength = {c.strength:g} starts stage 4 at step {start} "
                f"of {steps}, before stage 2's first step {fusion} (separate.fusion_step = "
                f"{cfg.separate.fusion_step:g}); use codenoise.strength <= {1 - fusion / steps:.2g} or a smaller fusion step"
            )
    _at_least("codenoise.max_batch_frames", c.max_batch_frames, 1, "e.g. 16")


def check_output(cfg: RunConfig) -> None:
    """The videos: an integer upscale factor, a quality imageio-ffmpeg accepts."""
    o = cfg.output
    _at_least("output.upscale", o.upscale, 0, "0 picks the factor, 1 keeps the frames' size")
    _at_least("output.min_side", o.min_side, 1, "e.g. 256")
    if not 1 <= o.quality <= 10:
        raise _fail("output.quality", o.quality, "must be in [1, 10]", "10 is the best, e.g. 9")


CHECKS = (
    check_finite,
    check_sampling,
    check_inputs,
    check_separate,
    check_fusion,
    check_tuning,
    check_codenoise,
    check_output,
)


def check_config(cfg: RunConfig) -> None:
    """Every value check that needs only the config; raises the first problem as one line."""
    for check in CHECKS:
        check(cfg)


def check_frames(cfg: RunConfig, num_frames: int, stages: Sequence[int] = STAGE_NUMBERS) -> None:
    """Checks that need the frame count of the inputs (after resampling); stage 4's only when it runs."""
    c = cfg.codenoise
    if num_frames < 1:
        raise VidtuneError("the pose source gives 0 frames; give a pose source with at least one frame")
    if CODENOISE_STAGE in stages and num_frames < c.clip_length and not c.shrink_clip:
        raise VidtuneError(
            f"the video has {num_frames} frames, fewer than codenoise.clip_length = {c.clip_length}; "
            f"set codenoise.clip_length <= {num_frames} (or more frames, or codenoise.shrink_clip = true)"
        )


def check_run(cfg: RunConfig, num_frames: int, stages: Sequence[int] = STAGE_NUMBERS) -> None:
    """Everything that can be checked before stage 1: the config's values, then against the frame count."""
    check_config(cfg)
    check_frames(cfg, num_frames, stages)
