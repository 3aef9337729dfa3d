"""Figure (foreground) consistency metrics, weight-free, streamed like those of ``metrics``.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.evaluation.foreground`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from vidtune.evaluation.metrics import (
    NAN,
    Metric,
    Step,
    _LineFit,
    _Means,
    bucket_of_frame,
    bucket_of_pair,
)

ORIENTATIONS = 8  # unsigned gradient orientation bins of 22.5 degrees, bin 0 centred on 0 degrees
MAGNITUDE_EDGES = (2.0, 6.0, 18.0)  # Lab units per pixel; below the first edge a pixel is "flat"
TEXTURE_BINS = 1 + ORIENTATIONS * len(MAGNITUDE_EDGES)  # flat + orientation x magnitude level
FRAMES_PER_SLOPE = 100.0  # slopes are per 100 frames

_ERODE = np.ones((3, 3), np.uint8)


# ------------------------------------------------------------------------------------------
# One frame's figure appearance (pure functions)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Appearance:
    """A region's appearance in one frame (or averaged over a clip).

    ``mean`` / ``std``: float64 ``(3,)`` CIE-Lab (L in [0, 100], a and b in about [-127, 127]);
    ``texture``: float64 ``(TEXTURE_BINS,)`` summing to 1, or None where the region has no pixel
    whose 3x3 neighbourhood lies inside it; ``pixels``: the region's area.
    """

    mean: np.ndarray
    std: np.ndarray
    texture: np.ndarray | None
    pixels: int


def gradient_histogram(lab: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    """Histogram of gradient orientation x magnitude over ``region`` eroded by 1 px (HOG-like).

    ``lab`` float ``(H, W, 3)`` (computed in float32); ``region`` bool ``(H, W)``. Per pixel the Lab channel with the
    largest Sobel gradient is taken (as HOG does with RGB), magnitude ``|g| / 8`` (Lab units per
    pixel: a ramp of slope s gives s). Bin 0: ``|g| < MAGNITUDE_EDGES[0]`` (flat, orientation
    ignored); else ``1 + level * ORIENTATIONS + orientation`` with level the magnitude interval
    and orientation the unsigned angle in bins of 180 / ORIENTATIONS degrees centred on 0
    (vertical stripes: bin 0 of their level). Returns float64 ``(TEXTURE_BINS,)`` summing to 1,
    or None if the eroded region is empty.
    """
    inner = cv2.erode(region.astype(np.uint8), _ERODE, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    if not inner.any():
        return None
    lab = np.asarray(lab, np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)[inner]  # (N, 3)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)[inner]
    strongest = np.argmax(gx * gx + gy * gy, axis=1)[:, None]
    gx = np.take_along_axis(gx, strongest, axis=1)[:, 0]
    gy = np.take_along_axis(gy, strongest, axis=1)[:, 0]
    magnitude = np.sqrt(gx * gx + gy * gy) / 8.0
    angle = np.degrees(np.arctan2(gy, gx)) % 180.0
    width = 180.0 / ORIENTATIONS
    orientation = np.floor((angle + width / 2) / width).astype(np.int64) % ORIENTATIONS
    level = np.searchsorted(MAGNITUDE_EDGES, magnitude, side="right")  # 0 = flat, 1.. = levels
    bins = np.where(level == 0, 0, 1 + (level - 1) * ORIENTATIONS + orientation)
    return np.bincount(bins, minlength=TEXTURE_BINS).astype(np.float64) / bins.size


def figure_appearance(frame: np.ndarray, region: np.ndarray) -> Appearance | None:
    """Lab colour statistics and gradient histogram of ``region`` (bool ``(H, W)``) in ``frame``
    (uint8 ``(H, W, 3)`` RGB); None for an empty region. Only the region's bounding box is converted."""
    x, y, w, h = cv2.boundingRect(region.astype(np.uint8))
    if w == 0 or h == 0:
        return None
    crop = region[y : y + h, x : x + w]
    lab = cv2.cvtColor(frame[y : y + h, x : x + w].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)
    pixels = lab[crop].astype(np.float64)
    return Appearance(pixels.mean(axis=0), pixels.std(axis=0), gradient_histogram(lab, crop), int(crop.sum()))


def color_distance(a: Appearance, b: Appearance) -> float:
    """2-Wasserstein distance between per-channel Gaussian fits of two Lab colour distributions:
    ``sqrt(sum_c (mu_a - mu_b)^2 + (sigma_a - sigma_b)^2)``, in Lab units (for equal stds it is
    the CIE76 colour difference of the mean colours). 0 = same colour statistics."""
    return float(np.sqrt(np.sum((a.mean - b.mean) ** 2) + np.sum((a.std - b.std) ** 2)))


def texture_distance(a: Appearance, b: Appearance) -> float:
    """Total-variation distance ``0.5 * sum |h_a - h_b|`` of the gradient histograms, in [0, 1];
    ``nan`` where either has none."""
    if a.texture is None or b.texture is None:
        return NAN
    return float(0.5 * np.abs(a.texture - b.texture).sum())


def cached_appearance(step: Step) -> Appearance | None:
    """``figure_appearance`` of the step's figure, computed once per step for every metric."""
    if step.mask is None:
        return None
    return step._cached("fg_appearance", lambda: figure_appearance(step.frame, step.mask))


class _AppearanceSum:
    """Running sums of per-frame appearances; ``mean()`` is the clip's mean appearance."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = np.zeros(3)
        self.std = np.zeros(3)
        self.n_texture = 0
        self.texture = np.zeros(TEXTURE_BINS)

    def add(self, a: Appearance) -> None:
        self.n += 1
        self.mean += a.mean
        self.std += a.std
        if a.texture is not None:
            self.n_texture += 1
            self.texture += a.texture

    def value(self) -> Appearance | None:
        if self.n == 0:
            return None
        texture = self.texture / self.n_texture if self.n_texture else None
        return Appearance(self.mean / self.n, self.std / self.n, texture, self.n)


class _Notes:
    """Why values are missing: frames without masks, with an empty figure, with a figure too thin."""

    def __init__(self) -> None:
        self.frames = self.unmasked = self.empty = self.thin = 0

    def count(self, step: Step, appearance: Appearance | None) -> None:
        self.frames += 1
        if step.mask is None:
            self.unmasked += 1
        elif appearance is None:
            self.empty += 1
        elif appearance.texture is None:
            self.thin += 1

    def lines(self, name: str) -> list[str]:
        out = []
        if self.frames and self.unmasked == self.frames:
            out.append(f"{name}: no masks, so no figure; give --masks (white = the figure) to measure it")
        if self.empty:
            out.append(f"{name}: {self.empty} of {self.frames} frames have an empty figure mask; they are skipped")
        if self.thin:
            out.append(f"{name}: {self.thin} of {self.frames} frames have a figure under 3x3 px: no texture there")
        return out


# ------------------------------------------------------------------------------------------
# Accumulators
# ------------------------------------------------------------------------------------------


class FgAppearance(Metric):
    """Figure appearance consistency: colour and texture of the figure, frame to frame and
    against the first frame with a figure.

    With ``A_i = figure_appearance(frame i, mask i)``: ``color`` = mean over pairs (t, t+1), both
    with a figure, of ``color_distance(A_t, A_{t+1})`` (Lab units, 0 = same colour statistics);
    ``texture`` the same with ``texture_distance`` (in [0, 1]); ``color_vs_first`` /
    ``texture_vs_first`` = mean over frames i after the reference frame r (the first with a
    figure) of the distance of ``A_i`` to ``A_r``; ``color_slope`` / ``texture_slope`` = their
    least-squares slope against i, per 100 frames (> 0 = the figure drifts away from frame r).
    A figure that only moves scores 0. Frames without a figure are skipped; without masks every
    value is ``nan``.
    """

    name = "fg_appearance"

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.fits = {"color": _LineFit(), "texture": _LineFit()}
        self.first: Appearance | None = None
        self.prev: tuple[int, Appearance] | None = None
        self.counts = _Notes()

    def update(self, step: Step) -> None:
        super().update(step)
        a = cached_appearance(step)
        self.counts.count(step, a)
        if a is None:
            return
        if self.prev is not None and self.prev[0] == step.index - 1:
            b = bucket_of_pair(step.pair, self.bucket)
            self.means.add(b, "color", color_distance(self.prev[1], a))
            self.means.add(b, "texture", texture_distance(self.prev[1], a))
        self.prev = (step.index, a)
        if self.first is None:
            self.first = a
            return
        b = bucket_of_frame(step.index, self.bucket)
        for key, d in (("color", color_distance(self.first, a)), ("texture", texture_distance(self.first, a))):
            self.means.add(b, f"{key}_vs_first", d)
            self.fits[key].add(b, step.index / FRAMES_PER_SLOPE, d)

    def _values(self, bucket: int | None) -> dict[str, float]:
        out = {}
        for key in ("color", "texture"):
            out[key] = self.means.get(key, bucket)
            out[f"{key}_vs_first"] = self.means.get(f"{key}_vs_first", bucket)
            out[f"{key}_slope"] = self.fits[key].slope(bucket)
        return out

    def notes(self) -> list[str]:
        return self.counts.lines(self.name)


@dataclass
class _Clip:
    """Running sums of one clip: the figure's appearances and the background's pixel values."""

    index: int  # k: frames [k * clip, (k + 1) * clip)
    last: int  # the last frame added so far
    fg: _AppearanceSum
    bg_sum: np.ndarray  # float32 (H, W, 3): exact for sums of up to 65,793 frames of 0-255
    bg_count: np.ndarray  # float32 (H, W): frames where the pixel is background

    def bg_mean(self) -> np.ndarray:
        return self.bg_sum / np.maximum(self.bg_count, 1)[..., None]


class DriftLong(Metric):
    """Long-range drift, clip to clip (VBench-Long compares clips, not frames), figure and background.

    Frames are cut into clips ``k`` of ``clip`` frames: ``[k * clip, (k + 1) * clip)``, the tail
    clip shorter (never dropped). Per clip, running sums give the figure's mean appearance
    ``Abar_k`` (mean of the frames' Lab means, stds and gradient histograms) and the background's
    mean image ``Bbar_k(x)`` (per pixel, over the clip's frames where x is background). For each
    clip k after the reference: ``fg_color`` = ``color_distance(Abar_k, Abar_r)`` (Lab units),
    ``fg_texture`` = ``texture_distance(Abar_k, Abar_r)`` ([0, 1]), with r the first clip with a
    figure; ``bg`` = mean over pixels background in both clips of ``mean_c |Bbar_k - Bbar_0|``
    (0-255). Each reported as ``*_mean`` (over those clips), ``*_max``, and ``*_slope`` (least
    squares against the clip's centre frame, per 100 frames; needs 2 distances, so 3 clips).
    Without masks the whole frame is background and the figure values are ``nan``. A clip's
    value goes to the bucket of its last frame. Memory: three float images and a few numbers
    per clip.
    """

    name = "drift_long"
    KEYS = ("fg_color", "fg_texture", "bg")

    def __init__(self, bucket: int = 16, clip: int = 16) -> None:
        if clip < 1:
            raise ValueError(f"clip must be >= 1 frame, got {clip}")
        self.clip = clip
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.counts = _Notes()
        self.first_fg: Appearance | None = None  # Abar_r
        self.first_bg: tuple[np.ndarray, np.ndarray] | None = None  # Bbar_0, its pixels seen
        self.open: _Clip | None = None
        self.clips = 0
        self.records: list[tuple[float, int, dict[str, float]]] = []  # (centre frame, bucket, values)

    def update(self, step: Step) -> None:
        super().update(step)
        a = cached_appearance(step)
        self.counts.count(step, a)
        k = step.index // self.clip
        if self.open is not None and self.open.index != k:
            self._close()
        if self.open is None:
            h, w = step.frame.shape[:2]
            self.open = _Clip(
                k, step.index, _AppearanceSum(), np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
            )
            self.clips += 1
        clip = self.open
        clip.last = step.index
        if a is not None:
            clip.fg.add(a)
        bg = np.ones(step.frame.shape[:2], bool) if step.mask is None else ~step.mask
        np.add(clip.bg_sum, step.frame, out=clip.bg_sum, where=bg[..., None])
        clip.bg_count += bg

    def _record(self, clip: _Clip) -> tuple[float, int, dict[str, float]] | None:
        """The clip's distances to the reference clips (None for the first clip)."""
        if self.first_bg is None:
            return None
        first_bg, first_seen = self.first_bg
        both = first_seen & (clip.bg_count > 0)
        fg = clip.fg.value()
        have_fg = fg is not None and self.first_fg is not None
        values = {
            "fg_color": color_distance(fg, self.first_fg) if have_fg else NAN,
            "fg_texture": texture_distance(fg, self.first_fg) if have_fg else NAN,
            "bg": float(np.abs(clip.bg_mean() - first_bg)[both].mean()) if both.any() else NAN,
        }
        return (clip.index * self.clip + clip.last) / 2.0, bucket_of_frame(clip.last, self.bucket), values

    def _close(self) -> None:
        clip, self.open = self.open, None
        record = self._record(clip)
        if record is not None:
            self.records.append(record)
        if self.first_bg is None:
            self.first_bg = (clip.bg_mean(), clip.bg_count > 0)
        if self.first_fg is None:  # the first clip with a figure is the figure's reference
            self.first_fg = clip.fg.value()

    def _values(self, bucket: int | None) -> dict[str, float]:
        records = list(self.records)
        if self.open is not None:  # the tail clip, read without closing it (the stream may go on)
            tail = self._record(self.open)
            if tail is not None:
                records.append(tail)
        out = {}
        for key in self.KEYS:
            points = [(x, v[key]) for x, b, v in records if (bucket is None or b == bucket) and math.isfinite(v[key])]
            fit = _LineFit()
            for x, d in points:
                fit.add(0, x / FRAMES_PER_SLOPE, d)
            values = [d for _, d in points]
            out[f"{key}_mean"] = float(np.mean(values)) if values else NAN
            out[f"{key}_max"] = float(np.max(values)) if values else NAN
            out[f"{key}_slope"] = fit.slope()
        return out

    def notes(self) -> list[str]:
        out = self.counts.lines(self.name)
        if self.counts.frames and self.counts.unmasked == self.counts.frames:
            out.append(f"{self.name}: without masks bg_* is measured over the whole frame")
        if self.clips < 3:
            out.append(
                f"{self.name}: {self.clips} clip(s) of {self.clip} frames: a slope needs 3 (a video of at least "
                f"{2 * self.clip + 1} frames)"
            )
        return out


METRICS: dict[str, type[Metric]] = {"fg_appearance": FgAppearance, "drift_long": DriftLong}
"""The figure metrics by name, as ``metrics.METRICS`` (which cannot list them: this module imports
``metrics``' stream and helpers, and ``tests/test_layers.py`` forbids an import cycle). Both are in
``metrics.WEIGHT_FREE``; ``metrics.compute(FgAppearance(), frames, masks)`` computes one."""
