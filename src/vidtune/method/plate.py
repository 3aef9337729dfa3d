"""Background plate in pixel space: the decoded frames' backgrounds made equal again (pure math).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method.plate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from vidtune.method.segments import Segment, transition_weights

__all__ = ["PlateConfig", "composite", "figure_gains", "filled_plates", "plates"]


@dataclass(frozen=True)
class PlateConfig:
    """How the decoded frames' backgrounds are made equal (see the module docstring).

    enabled: composite at all; dilate: pixels the foreground mask grows by before it is protected;
    key_low / key_high: the difference key's ramp in grey levels (0-255), a pixel further than
    ``key_high`` from the plate is kept as it is; fill_below: in a schedule's transitions, plate pixels
    seen as background in fewer than this fraction of their segment's frames (next to a figure that
    stays put, where the masks' misses would dominate the average) are filled from around them."""

    enabled: bool = True
    dilate: int = 1
    key_low: float = 12.0
    key_high: float = 32.0
    fill_below: float = 0.1
    chunk: int = 32  # frames held as float at a time (memory flat in the frame count)


def _dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-level dilation of (frames, H, W) masks by a (2r+1)^2 square."""
    if radius <= 0:
        return masks
    return torch.nn.functional.max_pool2d(masks[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]


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

    ``segments`` (default: the whole video) decide which frames share a plate; ``transition`` (frames
    over which a prompt schedule's scenes dissolve, `codenoise.transition`; 0 = a cut) how the
    backgrounds near a boundary mix the plates. Returns uint8 frames of the input's shape; the input
    when ``cfg.enabled`` is false."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (frames, height, width, 3), got {frames.shape}")
    if fg.shape != frames.shape[:3]:
        raise ValueError(f"masks must be (frames, height, width) = {frames.shape[:3]}, got {fg.shape}")
    if not cfg.enabled or len(frames) < 2:
        return frames
    if cfg.key_high <= cfg.key_low:
        raise ValueError(f"plate key_high ({cfg.key_high}) must exceed key_low ({cfg.key_low})")
    n = len(frames)
    segments = list(segments or [(0, n)])
    own = transition_weights(n, segments, 0)
    mix = transition_weights(n, segments, transition)
    moving = own.ne(mix).any(dim=1)  # the frames inside a transition
    plate, cover = plates(frames, fg, own, cfg.dilate, cfg.chunk)
    seen = (cover > 1e-3).float()  # (S, H, W): the segment saw background at p
    if moving.any():
        full = torch.ones_like(seen)
        filled = filled_plates(plate, cover, own.sum(dim=0), cfg.fill_below)
        gain = figure_gains(frames, fg, own, mix, cfg.chunk)
    out = np.empty_like(frames)
    for s in range(0, n, cfg.chunk):
        rows = slice(s, s + cfg.chunk)
        x = torch.from_numpy(frames[rows]).float()
        core = torch.from_numpy(fg[rows]).float()
        o_seen, o = _frame_plates(own[rows], seen, plate)
        dissolving = moving[rows].any()
        if dissolving:  # where the own plate saw no background, the key compares with the filled one
            q_own = _frame_plates(own[rows], full, filled)[1]
            q_mix = _frame_plates(mix[rows], full, filled)[1]
            o = torch.where(o_seen[..., None], o, q_own)
        key = (((x - o).abs().amax(dim=-1) - cfg.key_low) / (cfg.key_high - cfg.key_low)).clamp(0, 1)
        alpha = torch.maximum(_dilate(core, cfg.dilate), key)
        alpha = torch.where(o_seen, alpha, torch.ones_like(alpha))
        a = alpha[..., None]
        y = a * x + (1 - a) * o
        if dissolving:
            m = moving[rows, None, None, None]
            y = torch.where(m, _dissolve(x, core, key, alpha, q_own, q_mix, gain[rows]), y)
        out[rows] = y.round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _dissolve(
    x: torch.Tensor,
    core: torch.Tensor,
    key: torch.Tensor,
    alpha: torch.Tensor,
    q_own: torch.Tensor,
    q_mix: torch.Tensor,
    gain: torch.Tensor,
) -> torch.Tensor:
    """Frames inside a transition (module docstring): the background becomes the mixed plate ``q_mix``;
    the background part of the kept pixels around the figure (the ring the mask's dilation protects,
    weight a (1 - M_f) (1 - k)) moves by q_mix - q_own; the figure's brightness is scaled by ``gain``
    (frames, 1). Float (frames, H, W, 3)."""
    ring = (alpha * (1 - core) * (1 - key))[..., None]
    figure = alpha[..., None] - ring
    g = gain[:, None, None, :]
    return figure * x * g + ring * (x + q_mix - q_own) + (1 - alpha[..., None]) * q_mix


def figure_gains(
    frames: np.ndarray, fg: np.ndarray, own: torch.Tensor, mix: torch.Tensor, chunk: int = 32
) -> torch.Tensor:
    """Per frame (frames, 1), the factor that takes its segment's mean figure brightness to the mix (by
    ``mix``) of the segments' mean figure brightnesses, clamped to [1/2, 2]: 1 outside transitions.
    A scene's light (day, sunset, night) brightens or darkens the whole figure; without this the
    background would dissolve and the figure's brightness would cut at the boundary. One factor for
    the three channels: per-channel factors pushed the saturated pixels of a dark figure to streaks of
    one colour. Means over the pixels the masks hold."""
    num = torch.zeros(own.shape[1])
    den = torch.zeros(own.shape[1])
    for s in range(0, len(frames), chunk):
        x = torch.from_numpy(frames[s : s + chunk]).float().mean(dim=-1)
        w = torch.from_numpy(fg[s : s + chunk]).float()
        num += torch.einsum("ns,nhw,nhw->s", own[s : s + chunk].float(), w, x)
        den += torch.einsum("ns,nhw->s", own[s : s + chunk].float(), w)
    mean = torch.where(den > 0, (num / den.clamp_min(1e-6)).clamp_min(1.0), torch.full_like(num, float("nan")))
    gain = (mix.float() @ mean) / (own.float() @ mean)
    return torch.nan_to_num(gain, nan=1.0).clamp(0.5, 2.0)[:, None]


def filled_plates(plate: torch.Tensor, cover: torch.Tensor, frames: torch.Tensor, below: float) -> torch.Tensor:
    """The plates (S, H, W, 3) with every pixel their segment saw as background in fewer than ``below``
    x its ``frames`` (S,) filled from the pixels around it (OpenCV's Telea inpainting): where a figure
    stays put its plate rests on the masks' misses, and a transition must not dissolve to those."""
    import cv2

    out = plate.clone()
    for k in range(plate.shape[0]):
        hole = (cover[k] < max(1e-3, below * float(frames[k]))).numpy()
        if not hole.any() or hole.all():
            continue
        image = plate[k].round().clamp(0, 255).to(torch.uint8).numpy()
        fill = cv2.inpaint(np.ascontiguousarray(image), hole.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        out[k][torch.from_numpy(hole)] = torch.from_numpy(fill[hole]).float()
    return out


def _frame_plates(weights: torch.Tensor, seen: torch.Tensor, plate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame, the plates mixed by ``weights`` (frames, S) over the segments that saw background at
    each pixel: (whether any did (frames, H, W), the mix (frames, H, W, 3))."""
    wk = weights.float()
    den = torch.einsum("ns,shw->nhw", wk, seen)
    p = torch.einsum("ns,shw,shwc->nhwc", wk, seen, plate) / den.clamp_min(1e-6)[..., None]
    return den > 1e-6, p
