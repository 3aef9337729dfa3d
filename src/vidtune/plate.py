"""Background plate in pixel space: the decoded frames' backgrounds made equal again (pure math).

Why: stages 2 and 4 make the backgrounds' *latents* equal across the frames of a prompt segment
(eq. 10-11 at every step; measured on the benchmark: consecutive frames' background latents differ
by 0.3% of their std), yet the decoded backgrounds still flicker, 1.2 grey levels far (> 10 px) from
the figure. The VAE decoder is not local: its receptive field and its mid-block attention span the
frame, so the same background latent decodes a little differently wherever the figure stands. This
module removes what decoding adds, after decoding:

    P_s(p)  = sum_i c_is M_b^i(p) I^i(p) / sum_i c_is M_b^i(p)           segment s's plate (eq. 10 on pixels)
    P^i     = sum_s m_is P_s / sum_s m_is   (over the segments that see p)   frame i's plate
    a^i(p)  = max(M_f^i(p) dilated, clip((|I^i(p) - P^i(p)|_inf - lo) / (hi - lo), 0, 1))
    I~^i    = a^i I^i + (1 - a^i) P^i

with M_b = 1 - M_f dilated by ``dilate`` pixels, ``m`` the segments' transition weights
(`vidtune.segments.transition_weights`; one-hot without transitions) and ``c_is`` = 1 for the frames
segment s alone holds (`core_weights`: a frame cross-fading between two scenes would blend the other
scene into the plate). The difference key ``a`` keeps
every pixel the plate does not explain (by more than ``lo`` grey levels, fully beyond ``hi``): a limb
the segmenter missed, a shadow, anything that moves, so the plate never paints over the figure and
never makes it translucent; it snaps to the plate only what already nearly equals it.

Layouts: frames ``(frames, height, width, 3)`` uint8; masks ``(frames, height, width)`` float in
[0, 1] (1 = foreground); weights ``(frames, segments)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vidtune.segments import Segment, transition_weights

__all__ = ["PlateConfig", "composite", "plates"]


@dataclass(frozen=True)
class PlateConfig:
    """How the decoded frames' backgrounds are made equal (see the module docstring).

    enabled: composite at all; dilate: pixels the foreground mask grows by before it is protected;
    key_low / key_high: the difference key's ramp in grey levels (0-255), a pixel further than
    ``key_high`` from the plate is kept as it is."""

    enabled: bool = True
    dilate: int = 1
    key_low: float = 12.0
    key_high: float = 32.0
    chunk: int = 32  # frames held as float at a time (memory flat in the frame count)


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-level dilation of (frames, H, W) masks by a (2r+1)^2 square."""
    if radius <= 0:
        return masks
    return torch.nn.functional.max_pool2d(masks[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]


def core_weights(weights: torch.Tensor) -> torch.Tensor:
    """The frames a segment's plate averages: those its prompt alone holds (weight 1), not the ones
    cross-fading into a neighbour (their background is a mix of two scenes); all of its frames, by weight,
    for a segment that has no such frame."""
    core = (weights >= 1.0 - 1e-6).to(weights.dtype)
    empty = core.sum(dim=0) == 0
    core[:, empty] = weights[:, empty]
    return core


def plates(
    frames: np.ndarray, fg: np.ndarray, weights: torch.Tensor, dilate: int, chunk: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every segment's plate P_s (S, H, W, 3) float32 in [0, 255] and its coverage (S, H, W):
    the background-weighted mean of the frames, each frame weighed by its segment weight."""
    n, h, w, _ = frames.shape
    num = torch.zeros(weights.shape[1], h, w, 3)
    den = torch.zeros(weights.shape[1], h, w)
    for s in range(0, n, chunk):
        x = torch.from_numpy(frames[s : s + chunk]).float()
        bg = 1.0 - _dilate(torch.from_numpy(fg[s : s + chunk]).float(), dilate)
        wk = weights[s : s + chunk].float()
        num += torch.einsum("ns,nhw,nhwc->shwc", wk, bg, x)
        den += torch.einsum("ns,nhw->shw", wk, bg)
    return num / den.clamp_min(1e-6)[..., None], den


def composite(
    frames: np.ndarray,
    fg: np.ndarray,
    cfg: PlateConfig,
    segments: Sequence[Segment] | None = None,
    transition: int = 0,
) -> np.ndarray:
    """The frames with their backgrounds snapped to their segment's plate (module docstring).

    ``segments`` (default: the whole video) and ``transition`` (frames over which a prompt schedule
    cross-fades, as stage 4 does; 0 = a cut) decide which frames share a plate. Returns uint8 frames
    of the input's shape; the input when ``cfg.enabled`` is false."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (frames, height, width, 3), got {frames.shape}")
    if fg.shape != frames.shape[:3]:
        raise ValueError(f"masks must be (frames, height, width) = {frames.shape[:3]}, got {fg.shape}")
    if not cfg.enabled or len(frames) < 2:
        return frames
    if cfg.key_high <= cfg.key_low:
        raise ValueError(f"plate key_high ({cfg.key_high}) must exceed key_low ({cfg.key_low})")
    n = len(frames)
    weights = transition_weights(n, list(segments or [(0, n)]), transition)
    plate, cover = plates(frames, fg, core_weights(weights), cfg.dilate, cfg.chunk)
    seen = (cover > 1e-3).float()  # (S, H, W): the segment saw background at p
    out = np.empty_like(frames)
    for s in range(0, n, cfg.chunk):
        x = torch.from_numpy(frames[s : s + cfg.chunk]).float()
        wk = weights[s : s + cfg.chunk].float()
        den = torch.einsum("ns,shw->nhw", wk, seen)
        p = torch.einsum("ns,shw,shwc->nhwc", wk, seen, plate) / den.clamp_min(1e-6)[..., None]
        key = ((x - p).abs().amax(dim=-1) - cfg.key_low) / (cfg.key_high - cfg.key_low)
        alpha = torch.maximum(_dilate(torch.from_numpy(fg[s : s + cfg.chunk]).float(), cfg.dilate), key.clamp(0, 1))
        alpha = torch.where(den > 1e-6, alpha, torch.ones_like(alpha))[..., None]
        out[s : s + cfg.chunk] = (alpha * x + (1 - alpha) * p).round().clamp(0, 255).to(torch.uint8).numpy()
    return out
