"""The weight-free metrics: flicker, warping error, background stability and drift, figure colour
drift, seam ratio, motion EPE."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar

import cv2
import numpy as np

from vidtune.evaluation.metrics.frames import (
    NAN,
    fb_consistent,
    reference_region,
    warp_by_flow,
)
from vidtune.evaluation.metrics.streaming import (
    Step,
    _LineFit,
    _Means,
    bucket_of_frame,
    bucket_of_pair,
    num_buckets,
)

# ------------------------------------------------------------------------------------------
# Accumulators
# ------------------------------------------------------------------------------------------


class Metric:
    """Base accumulator. Subclasses implement ``update`` and ``_values(bucket)``.

    ``result()`` -> ``{key: float}`` over the whole video; ``bucket_results()`` -> one such dict
    per time bucket (see the module docstring for the bucket rule).
    """

    name: ClassVar[str] = ""

    def __init__(self, bucket: int = 16) -> None:
        if bucket < 1:
            raise ValueError(f"bucket must be >= 1 frame, got {bucket}")
        self.bucket = bucket
        self.reset()

    def reset(self) -> None:
        self.num_frames = 0

    def update(self, step: Step) -> None:
        self.num_frames = max(self.num_frames, step.index + 1)

    def _values(self, bucket: int | None) -> dict[str, float]:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        return self._values(None)

    def bucket_results(self) -> list[dict[str, float]]:
        return [self._values(b) for b in range(num_buckets(self.num_frames, self.bucket))]

    def notes(self) -> list[str]:
        """Caveats of the result worth a line in a report (frames it could not measure, ...)."""
        return []


class Flicker(Metric):
    """VBench temporal flickering: ``score = 1 - mean_t mean_px |I_t - I_{t+1}| / 255``.

    ``mean_abs_diff`` is the raw ``mean_t mean_px |dI|`` on the 0-255 scale (mean over pixels
    and RGB channels per pair, then over pairs). ``*_bg`` restricts each pair's mean to pixels
    that are background in both frames of the pair (reported only when masks are given; a pair
    without such pixels is skipped). Ranges: score in [0, 1] (1 = no change), diff in [0, 255].
    ``curve`` keeps each pair's ``mean_abs_diff`` in pair order (``N - 1`` floats, for plots and
    the transition ratio).
    """

    name = "flicker"

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.has_masks = False
        self.curve: list[float] = []

    def update(self, step: Step) -> None:
        super().update(step)
        if not step.is_pair:
            return
        b = bucket_of_pair(step.pair, self.bucket)
        diff = np.abs(step.frame.astype(np.int16) - step.prev_frame.astype(np.int16))
        self.curve.append(float(diff.mean()))
        self.means.add(b, "mad", self.curve[-1])
        if step.mask is not None and step.prev_mask is not None:
            self.has_masks = True
            bg = ~step.mask & ~step.prev_mask
            if bg.any():
                self.means.add(b, "mad_bg", float(diff[bg].mean()))

    def _values(self, bucket: int | None) -> dict[str, float]:
        mad = self.means.get("mad", bucket)
        out = {"score": 1.0 - mad / 255.0, "mean_abs_diff": mad}
        if self.has_masks:
            mad_bg = self.means.get("mad_bg", bucket)
            out.update(score_bg=1.0 - mad_bg / 255.0, mean_abs_diff_bg=mad_bg)
        return out


class WarpErrorDIS(Metric):
    """Warping error (Lai et al. 2018, eq. 9) with OpenCV DIS flow (PRESET_MEDIUM).

    For pair t, with ``b`` = flow O_{t+1} -> O_t and ``f`` = flow O_t -> O_{t+1}, at each pixel
    x of frame t+1: ``W(x) = O_t(x + b(x))`` (O_t backward-warped to t+1, bilinear);
    ``M(x) = 1`` where the forward-backward check passes (``fb_consistent`` with
    ``f~(x) = f(x + b(x))``) and ``x + b(x)`` lies inside the frame;
    ``E_t = sum_x M(x) e(x) / sum_x M(x)``, ``e(x) = mean_c (O_{t+1}(x) - W(x))^2`` with colours
    in [0, 1]. ``all`` = mean over pairs of E_t; ``fg`` / ``bg`` the same with M further limited
    to the foreground / background of frame t+1 (when masks are given). A pair with no such
    pixel is skipped. ``visible`` = mean fraction of pixels passing the check. Range [0, 1].
    Differences from Lai et al.'s code: the flow comes from the output itself (no input video
    here), and only the forward-backward test masks occlusions (no motion-boundary test).
    """

    name = "warp_err_dis"

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.has_masks = False

    def update(self, step: Step) -> None:
        super().update(step)
        if not step.is_pair:
            return
        b = bucket_of_pair(step.pair, self.bucket)
        flow_bw = step.flow_bw()
        prev = step.prev_frame.astype(np.float32) / 255.0
        cur = step.frame.astype(np.float32) / 255.0
        warped, inside = warp_by_flow(prev, flow_bw)
        fw_warped, _ = warp_by_flow(step.flow_fw(), flow_bw)
        visible = fb_consistent(flow_bw, fw_warped) & inside
        err = ((cur - warped) ** 2).mean(axis=2)
        self.means.add(b, "visible", float(visible.mean()))
        regions = {"all": visible}
        if step.mask is not None:
            self.has_masks = True
            regions.update(fg=visible & step.mask, bg=visible & ~step.mask)
        for key, region in regions.items():
            if region.any():
                self.means.add(b, key, float(err[region].mean()))

    def _values(self, bucket: int | None) -> dict[str, float]:
        keys = ("all", "fg", "bg", "visible") if self.has_masks else ("all", "visible")
        return {k: self.means.get(k, bucket) for k in keys}


class _Welford:
    """Per-pixel running mean / M2 over the frames where a pixel is background."""

    def __init__(self) -> None:
        self.count: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.frames = 0

    def add(self, frame: np.ndarray, bg: np.ndarray) -> None:
        x = frame.astype(np.float64)
        if self.count is None:
            self.count = np.zeros(bg.shape, np.int64)
            self.mean = np.zeros_like(x)
            self.m2 = np.zeros_like(x)
        self.frames += 1
        w = bg[..., None]
        self.count += bg
        delta = x - self.mean
        self.mean += np.where(w, delta / np.maximum(self.count, 1)[..., None], 0.0)
        self.m2 += np.where(w, delta * (x - self.mean), 0.0)

    def value(self, min_fraction: float) -> tuple[float, float]:
        """(mean per-pixel std over eligible pixels, fraction of eligible pixels)."""
        if self.count is None:
            return NAN, NAN
        eligible = (self.count >= 2) & (self.count > min_fraction * self.frames)
        if not eligible.any():
            return NAN, 0.0
        std = np.sqrt(self.m2[eligible] / self.count[eligible][:, None]).mean(axis=1)
        return float(std.mean()), float(eligible.mean())


class BgStability(Metric):
    """Background stability: per-pixel temporal std of the background, averaged over pixels.

    Each pixel's population std (ddof 0) over the frames where it is background (streaming
    Welford), on the 0-255 scale, averaged over RGB. Averaged over the pixels that are
    background in more than ``min_bg_fraction`` (default 0.5: most) of the frames and in at
    least 2 of them. Without masks every pixel is background. ``std`` in [0, 127.5] (0 = a
    perfectly still background); ``pixels`` = fraction of pixels averaged. Per bucket the same
    over the bucket's frames only.
    """

    name = "bg_stability"

    def __init__(self, bucket: int = 16, min_bg_fraction: float = 0.5) -> None:
        self.min_bg_fraction = min_bg_fraction
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.whole = _Welford()
        self.current: tuple[int, _Welford] | None = None
        self.done: dict[int, tuple[float, float]] = {}

    def update(self, step: Step) -> None:
        super().update(step)
        bg = np.ones(step.frame.shape[:2], bool) if step.mask is None else ~step.mask
        b = bucket_of_frame(step.index, self.bucket)
        if self.current is None or self.current[0] != b:
            self._close_bucket()
            self.current = (b, _Welford())
        self.whole.add(step.frame, bg)
        self.current[1].add(step.frame, bg)

    def _close_bucket(self) -> None:
        if self.current is not None:
            self.done[self.current[0]] = self.current[1].value(self.min_bg_fraction)

    def _values(self, bucket: int | None) -> dict[str, float]:
        if bucket is None:
            std, frac = self.whole.value(self.min_bg_fraction)
        else:
            if self.current is not None and self.current[0] == bucket:
                std, frac = self.current[1].value(self.min_bg_fraction)
            else:
                std, frac = self.done.get(bucket, (NAN, NAN))
        return {"std": std, "pixels": frac}


class DriftBg(Metric):
    """Background drift: ``d_i = mean |I_i - I_0|`` (0-255, RGB mean) over pixels background in
    both frame 0 and frame i; ``mean`` = mean of d_i over i >= 1, ``slope`` = least-squares slope
    of d_i against i over i >= 1 (0-255 units per frame; > 0 = the background wanders away).
    Without masks the whole frame is background.
    """

    name = "drift_bg"

    def reset(self) -> None:
        super().reset()
        self.first: np.ndarray | None = None
        self.first_bg: np.ndarray | None = None
        self.means = _Means()
        self.fit = _LineFit()

    def update(self, step: Step) -> None:
        super().update(step)
        bg = np.ones(step.frame.shape[:2], bool) if step.mask is None else ~step.mask
        if step.index == 0:
            self.first, self.first_bg = step.frame.astype(np.int16), bg
            return
        region = bg & self.first_bg
        if not region.any():
            return
        d = float(np.abs(step.frame.astype(np.int16) - self.first)[region].mean())
        b = bucket_of_frame(step.index, self.bucket)
        self.means.add(b, "d", d)
        self.fit.add(b, step.index, d)

    def _values(self, bucket: int | None) -> dict[str, float]:
        return {"mean": self.means.get("d", bucket), "slope": self.fit.slope(bucket)}


def lab_histogram(frame: np.ndarray, region: np.ndarray | None, bins: Sequence[int] = (8, 16, 16)) -> np.ndarray:
    """3-D CIE-Lab histogram (OpenCV 8-bit Lab, each channel 0-255) of ``region``'s pixels."""
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB)
    mask = None if region is None else region.astype(np.uint8)
    return cv2.calcHist([lab], [0, 1, 2], mask, list(bins), [0, 256, 0, 256, 0, 256])


class DriftFgColor(Metric):
    """Foreground colour drift: Bhattacharyya distance (``cv2.compareHist``,
    HISTCMP_BHATTACHARYYA, in [0, 1]) between the Lab histogram of frame i's foreground and of
    the reference frame's (frame 0, or the first frame with a non-empty foreground).
    ``mean`` over frames i after the reference, ``slope`` least squares against i (per frame).
    Frames with an empty foreground are skipped. Without masks the whole frame is used.
    """

    name = "drift_fg_color"

    def __init__(self, bucket: int = 16, bins: Sequence[int] = (8, 16, 16)) -> None:
        self.bins = tuple(bins)
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.ref_hist: np.ndarray | None = None
        self.means = _Means()
        self.fit = _LineFit()

    def update(self, step: Step) -> None:
        super().update(step)
        if step.mask is not None and not step.mask.any():
            return
        hist = lab_histogram(step.frame, step.mask, self.bins)
        if self.ref_hist is None:
            self.ref_hist = hist
            return
        d = float(cv2.compareHist(self.ref_hist, hist, cv2.HISTCMP_BHATTACHARYYA))
        b = bucket_of_frame(step.index, self.bucket)
        self.means.add(b, "d", d)
        self.fit.add(b, step.index, d)

    def _values(self, bucket: int | None) -> dict[str, float]:
        return {"mean": self.means.get("d", bucket), "slope": self.fit.slope(bucket)}


def boundary_pairs(windows: Iterable[Sequence[int]]) -> set[int]:
    """Pair indices ``f - 1`` for every clip start ``f = s > 0`` and clip end ``f = e``.

    Windows are half-open frame ranges ``[s, e)`` (the co-denoising clips); the pair
    ``(f - 1, f)`` straddles a clip boundary. Ends at the last frame never form a pair.
    """
    out: set[int] = set()
    for window in windows:
        s, e = int(window[0]), int(window[1])
        if not 0 <= s < e:
            raise ValueError(
                f"window {tuple(window)} must be a half-open frame range [start, end) with 0 <= start < end"
            )
        if s > 0:
            out.add(s - 1)
        out.add(e - 1)
    return out


class SeamRatio(Metric):
    """Seam ratio: mean |dI| over the pairs straddling a clip boundary / mean |dI| over the
    other pairs (|dI| as in ``Flicker``, 0-255). 1 = seamless, > 1 = visible seams; ``nan``
    if either set of pairs is empty. Also reports both means.
    """

    name = "seam_ratio"

    def __init__(self, windows: Iterable[Sequence[int]], bucket: int = 16) -> None:
        self.boundaries = boundary_pairs(windows)
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()

    def update(self, step: Step) -> None:
        super().update(step)
        if not step.is_pair:
            return
        d = float(np.abs(step.frame.astype(np.int16) - step.prev_frame.astype(np.int16)).mean())
        key = "boundary" if step.pair in self.boundaries else "other"
        self.means.add(bucket_of_pair(step.pair, self.bucket), key, d)

    def _values(self, bucket: int | None) -> dict[str, float]:
        boundary, other = self.means.get("boundary", bucket), self.means.get("other", bucket)
        ratio = boundary / other if other > 0 else NAN
        return {"ratio": ratio, "boundary_mad": boundary, "other_mad": other}


class MotionEPE(Metric):
    """Motion end-point error: ``mean ||F_out(x) - F_ref(x)||_2`` (pixels) between the DIS flow
    (t -> t+1) of the output and of the reference sequence (rendered skeletons or ground-truth
    frames, same size), over the region: the output's foreground mask of frame t when masks are
    given, else the reference's non-black pixels dilated by ``dilate`` px
    (``reference_region``). Mean per pair, then over pairs. Range [0, inf), 0 = same motion.
    """

    name = "motion_epe"

    def __init__(self, bucket: int = 16, dilate: int = 9) -> None:
        self.dilate = dilate
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()

    def update(self, step: Step) -> None:
        super().update(step)
        if not step.is_pair:
            return
        if step.reference is None:
            raise ValueError("motion_epe needs a reference sequence (skeleton renders or ground-truth frames)")
        region = step.prev_mask if step.prev_mask is not None else reference_region(step.prev_reference, self.dilate)
        if not region.any():
            return
        diff = step.flow_fw() - step.reference_flow_fw()
        epe = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)
        self.means.add(bucket_of_pair(step.pair, self.bucket), "epe", float(epe[region].mean()))

    def _values(self, bucket: int | None) -> dict[str, float]:
        return {"epe": self.means.get("epe", bucket)}
