"""Stage 4's clips and targets, pure (no model): which clips each denoising step runs and how their
predictions merge (`ClipPlan`, `ClipSchedule`, `clip_schedule`), how clips group into UNet batches,
FreeNoise's noise rescheduling, and the background the stage keeps (`background_targets`). The
runner is `vidtune.stages.codenoise`; the windows and merge weights themselves are
`vidtune.method.windows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from vidtune.config import CodenoiseConfig
from vidtune.errors import VidtuneError
from vidtune.method.prompts import assign_prompts, majority_prompts, per_frame_prompts
from vidtune.method.segments import transition_weights
from vidtune.method.windows import (
    Window,
    clip_merge_weights,
    clip_windows,
    frame_merge_weights,
    pixel_merge_weights,
    shifted_windows,
)


@dataclass(frozen=True)
class ClipPlan:
    """The clips of a video and how their predictions merge: windows [(start, end)], per-clip prompt
    bank (index = clip), merge weights per clip (weights[k]: (M_k,), or (M_k, 1, h, w) per pixel with
    codenoise.fg_gain), the global anchor frame."""

    windows: list[Window]
    prompts: list[str]
    weights: list[torch.Tensor]
    anchor: int

    @property
    def weight_bytes(self) -> int:
        """Host memory of the merge weights (float32)."""
        return 4 * sum(w.numel() for w in self.weights)


def plan_clips(
    cfg: CodenoiseConfig, num_frames: int, schedule, fg: torch.Tensor | None = None, step: int = 0
) -> ClipPlan:
    """Windows, clip prompts and merge weights for `num_frames` frames at denoising step `step` (pure; no
    model): `clip_schedule(...).at(step)`."""
    return clip_schedule(cfg, num_frames, schedule, fg).at(step)


def overlap_plan(
    cfg: CodenoiseConfig, num_frames: int, schedule, fg: torch.Tensor | None = None, anchor: int | None = None
) -> ClipPlan:
    """Gen-L-Video's overlapping clips [kS, kS + M) plus a tail clip, their prompts and merge weights;
    `anchor` the global anchor frame (None: the middle one)."""
    windows = clip_windows(num_frames, cfg.clip_length, cfg.stride, shrink_clip=cfg.shrink_clip)
    if cfg.fg_gain > 0 and fg is not None:  # per pixel: dense over the clips (opt-in, O(K N h w))
        dense = pixel_merge_weights(frame_merge_weights(num_frames, windows, cfg.weighting), windows, fg, cfg.fg_gain)
        weights = [dense[k, s:e] for k, (s, e) in enumerate(windows)]
    else:  # per clip: O(K M + N) memory, however long the video
        weights = clip_merge_weights(num_frames, windows, cfg.weighting)
    anchor = num_frames // 2 if anchor is None else anchor
    return ClipPlan(windows=windows, prompts=assign_prompts(windows, schedule), weights=weights, anchor=anchor)


@dataclass(frozen=True)
class ClipSchedule:
    """Stage 4's clips at every denoising step: ``at(step)`` is that step's `ClipPlan`.

    ``prompts`` lists every prompt a clip may get (the clip prompt bank is built over it, in this order).
    A fixed schedule (``overlap`` mode, or one given plan) returns the same plan at every step."""

    plan_at: Callable[[int], ClipPlan]
    prompts: tuple[str, ...]
    mode: str = "overlap"
    _cache: dict[int, ClipPlan] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def fixed(cls, plan: ClipPlan) -> ClipSchedule:
        """The same clips at every step."""
        return cls(plan_at=lambda step: plan, prompts=tuple(plan.prompts))

    def at(self, step: int) -> ClipPlan:
        if step not in self._cache:
            self._cache[step] = self.plan_at(step)
        return self._cache[step]


def clip_schedule(
    cfg: CodenoiseConfig, num_frames: int, schedule, fg: torch.Tensor | None = None, anchor: int | None = None
) -> ClipSchedule:
    """The clips of every step for ``codenoise.mode`` (see the module docstring; pure, no model); `anchor`
    the global anchor frame (None: the middle one).

    Shifted clips take the prompt most of their frames have (`majority_prompts`; a per-clip prompt list
    gives each frame the prompt of the nearest overlapping clip first); each frame is in one clip per
    step, so its merge weight is 1 (``weighting`` and ``fg_gain`` matter in ``overlap`` mode only)."""
    anchor = num_frames // 2 if anchor is None else anchor
    if cfg.mode == "overlap":
        return ClipSchedule.fixed(overlap_plan(cfg, num_frames, schedule, fg, anchor))
    if cfg.mode != "shifted":
        raise VidtuneError(f"codenoise.mode = {cfg.mode!r} is unknown; use 'shifted' or 'overlap'")
    overlap = None
    if not isinstance(schedule, (str, dict)):  # a per-clip list names Gen-L-Video's clips
        overlap = clip_windows(num_frames, cfg.clip_length, cfg.stride, shrink_clip=cfg.shrink_clip)
    frames = per_frame_prompts(num_frames, schedule, overlap)
    shifted_windows(num_frames, cfg.clip_length, 0, shrink_clip=cfg.shrink_clip)  # fail early on N < M

    def plan_at(step: int) -> ClipPlan:
        windows = shifted_windows(num_frames, cfg.clip_length, step, shrink_clip=cfg.shrink_clip)
        weights = [torch.ones(e - s) for s, e in windows]
        return ClipPlan(windows, majority_prompts(windows, frames), weights, anchor=anchor)

    return ClipSchedule(plan_at=plan_at, prompts=tuple(dict.fromkeys(frames)), mode="shifted")


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


def reschedule_noise(noise: torch.Tensor, window: int, stride: int, generator: torch.Generator) -> torch.Tensor:
    """FreeNoise's noise rescheduling (Qiu et al. 2023): frames [i, i + S) for i = M, M + S, ... take
    the noises of frames [i - M, i - M + S) in a random order, so every window holds a shuffle of
    the first window's noises (long-range correlation without one frozen noise)."""
    out = noise.clone()
    for i in range(window, noise.shape[0], stride):
        n = min(stride, noise.shape[0] - i)
        order = torch.randperm(n, generator=generator) + (i - window)
        out[i : i + n] = out[order]
    return out


def background_targets(
    stage2_x0: torch.Tensor,
    fg: torch.Tensor,
    segments: list[tuple[int, int]],
    dilate: int,
    margin: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What `keep_background_guide` pulls the predicted x0 to, and how hard: (targets, M_b = 1 - M_f, or
    with a ``margin`` of m latent pixels 1 - M_f dilated by m), both per frame (N, C, h, w) / (N, 1, h, w).
    The margin is left to stage 4 (`codenoise.background_margin`): kept, it pastes stage 2's own edge of the
    figure onto the figure stage 4 draws.

    The target is, away from the figure (outside its dilated mask), the average background of stage
    2's frames over the frame's own prompt segment (eq. 10 over the segment); on the ring between the
    mask and its dilation it is the frame's own stage-2 latent (the figure's edge as stage 2 drew it:
    pulling a soft edge to a background every step would erase thin limbs).

    A schedule's transitions are not made here: every frame keeps its own segment's scene, and the
    decoded frames dissolve from one scene to the next in pixels (`vidtune.method.plate.composite`).
    Mixing two scenes' latents was tried: a blend of two latents decodes to smeared shapes, not to
    the blend of the two pictures (dark smears in the middle of `schedule_wave_96`'s transition), and
    the ring kept a box of the frame's own scene around the figure."""
    from vidtune.method import fusion as F

    wide = F.dilate(fg, dilate)
    seg_bg = F.segment_backgrounds(stage2_x0, 1.0 - wide, segments)
    own = transition_weights(stage2_x0.shape[0], segments, 0)
    targets = wide * stage2_x0 + (1.0 - wide) * F.background_targets(stage2_x0, seg_bg, own)
    return targets, 1.0 - F.dilate(fg, margin)
