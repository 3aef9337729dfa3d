"""Prompt segments and transitions (pure): which frames share a prompt, and how a video moves
from one prompt's segment to the next.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method.segments`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Segment = tuple[int, int]


def prompt_segments(prompts: Sequence[str]) -> list[Segment]:
    """Maximal runs of equal consecutive per-frame prompts, as ``(start, end)`` ranges."""
    if len(prompts) == 0:
        raise ValueError("prompts: need at least one frame")
    segments: list[Segment] = []
    start = 0
    for i in range(1, len(prompts) + 1):
        if i == len(prompts) or prompts[i] != prompts[start]:
            segments.append((start, i))
            start = i
    return segments


def transition_weights(num_frames: int, segments: Sequence[Segment], width: int) -> torch.Tensor:
    """Weight of every segment for every frame, ``(frames, segments)``: one-hot inside a segment,
    a linear ramp across each boundary.

    Around the boundary b between segments s and s+1 the frames f with |f + 1/2 - b| < width / 2
    get w_{s+1}(f) = clip((f + 1/2 - b) / width + 1/2, 0, 1) and w_s = 1 - w_{s+1}: the two
    frames beside the boundary are 1/width apart instead of a full cut. The ramp reaches at most a
    quarter of each neighbouring segment into it, so every segment keeps at least half of its
    frames at full weight (where its prompt alone holds).
    width <= 1 gives the hard cut (one-hot rows).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    _check_segments(segments, num_frames)
    w = torch.zeros(num_frames, len(segments))
    for k, (s, e) in enumerate(segments):
        w[s:e, k] = 1.0
    if width <= 1:
        return w
    centres = torch.arange(num_frames, dtype=torch.float32) + 0.5
    for k in range(len(segments) - 1):
        (s0, b), (_, e1) = segments[k], segments[k + 1]
        half = min(width / 2.0, (b - s0) / 4.0, (e1 - b) / 4.0)
        if half <= 0.5:
            continue
        near = (centres > b - half) & (centres < b + half)
        ramp = ((centres[near] - b) / (2 * half) + 0.5).clamp(0.0, 1.0)
        w[near, k] = 1.0 - ramp
        w[near, k + 1] = ramp
    return w


def transition_frames(num_frames: int, segments: Sequence[Segment], width: int) -> torch.Tensor:
    """Bool ``(frames,)``: the frames inside a transition (mixing two segments' prompts)."""
    return transition_weights(num_frames, segments, width).max(dim=1).values < 1.0


def _check_segments(segments: Sequence[Segment], num_frames: int) -> None:
    expected = 0
    for s, e in segments:
        if s != expected or e <= s:
            raise ValueError(f"segments must cover 0..{num_frames - 1} in order without gaps, got {list(segments)}")
        expected = e
    if expected != num_frames:
        raise ValueError(f"segments must end at frame {num_frames}, got {list(segments)}")
