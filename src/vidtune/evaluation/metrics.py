"""Temporal-consistency metrics, computed in one streaming pass over a video.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.evaluation.metrics`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

NAN = float("nan")

# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------


def as_frame(frame: np.ndarray) -> np.ndarray:
    """Check a frame: uint8 ``(H, W, 3)`` RGB (``(H, W)`` grey is expanded to 3 channels)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB in 0-255, got dtype {frame.dtype}")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frames must be (H, W, 3) RGB, got shape {frame.shape}")
    return frame[:, :, :3]


def as_mask(mask: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A foreground mask as bool ``(H, W)``: bool as is, uint8 ``>= 128``, float ``>= 0.5``."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise ValueError(f"masks must be (H, W), got shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"mask of size {mask.shape[1]}x{mask.shape[0]} for a frame of size {shape[1]}x{shape[0]}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask >= 128
    return mask >= 0.5


def gray(frame: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` luma of an RGB frame (what DIS flow runs on)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def dis_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV DIS optical flow (PRESET_MEDIUM) from grey ``src`` to grey ``dst``.

    Returns float32 ``(H, W, 2)`` (dx, dy) in pixels: pixel ``x`` of ``src`` moves to
    ``x + flow[x]`` in ``dst``.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(src, dst, None)


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward warp: ``out[x] = image[x + flow[x]]`` (bilinear); also return in-bounds mask.

    ``image`` float32 ``(H, W)`` or ``(H, W, C)``; ``flow`` float32 ``(H, W, 2)``.
    Samples outside the image are replicated from the border and flagged False.
    """
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    out = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return out, inside


def fb_consistent(flow_bw: np.ndarray, flow_fw_warped: np.ndarray) -> np.ndarray:
    """Forward-backward check (Ruder et al. 2016, eq. 6; Lai et al. 2018's evaluation code).

    Visible where ``|b + f~|^2 < 0.01 (|b|^2 + |f~|^2) + 0.5``, with ``b`` the flow t+1 -> t and
    ``f~`` the flow t -> t+1 sampled at ``x + b(x)``. Returns bool ``(H, W)``.
    """
    total = flow_bw + flow_fw_warped
    sq = lambda f: f[..., 0] ** 2 + f[..., 1] ** 2  # noqa: E731
    return sq(total) < 0.01 * (sq(flow_bw) + sq(flow_fw_warped)) + 0.5


def reference_region(reference: np.ndarray, dilate: int = 9, threshold: int = 20) -> np.ndarray:
    """Foreground of a reference frame: non-black pixels (any channel > ``threshold``), dilated.

    For a rendered skeleton this is the limbs grown by ``dilate`` pixels (elliptic kernel of
    diameter ``2 * dilate + 1``); for a ground-truth RGB frame it is usually the whole frame.
    """
    region = (reference.max(axis=2) > threshold).astype(np.uint8)
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        region = cv2.dilate(region, kernel)
    return region.astype(bool)


# ------------------------------------------------------------------------------------------
# One step of the stream
# ------------------------------------------------------------------------------------------


@dataclass
class Step:
    """Frame ``index`` of the stream, with the previous frame (pair ``index - 1``) if any.

    Optical flows are computed lazily and cached, so metrics that share a flow compute it once.
    """

    index: int
    frame: np.ndarray  # uint8 (H, W, 3)
    mask: np.ndarray | None = None  # bool (H, W), True = foreground
    prev_frame: np.ndarray | None = None
    prev_mask: np.ndarray | None = None
    reference: np.ndarray | None = None  # uint8 (H, W, 3): skeleton render or ground truth
    prev_reference: np.ndarray | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def is_pair(self) -> bool:
        return self.prev_frame is not None

    @property
    def pair(self) -> int:
        """Index ``t`` of the pair (t, t+1) that ends at this frame."""
        return self.index - 1

    def _cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def flow_fw(self) -> np.ndarray:
        """DIS flow frame t -> t+1 (t = ``pair``), float32 (H, W, 2)."""
        return self._cached("fw", lambda: dis_flow(self._gray("g0", self.prev_frame), self._gray("g1", self.frame)))

    def flow_bw(self) -> np.ndarray:
        """DIS flow frame t+1 -> t, float32 (H, W, 2)."""
        return self._cached("bw", lambda: dis_flow(self._gray("g1", self.frame), self._gray("g0", self.prev_frame)))

    def reference_flow_fw(self) -> np.ndarray:
        """DIS flow of the reference, frame t -> t+1."""
        return self._cached("ref_fw", lambda: dis_flow(gray(self.prev_reference), gray(self.reference)))

    def _gray(self, key: str, frame: np.ndarray) -> np.ndarray:
        return self._cached(key, lambda: gray(frame))


class LengthMismatch(ValueError):
    """A side stream (masks, reference) does not have one item per frame."""

    def __init__(self, stream: str, items: int, frames: int):
        super().__init__(f"{stream}: {items} items for {frames} frames")
        self.stream, self.items, self.frames = stream, items, frames


def iter_steps(
    frames: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    reference: Iterable[np.ndarray] | None = None,
) -> Iterator[Step]:
    """Turn frame / mask / reference streams into ``Step``s, checking sizes and lengths.

    Raises ``LengthMismatch`` (with both full counts) if a side stream is shorter or longer.
    """
    side = {
        "masks": None if masks is None else iter(masks),
        "reference": None if reference is None else iter(reference),
    }
    frames = iter(frames)
    prev: Step | None = None
    index = 0
    for index, raw in enumerate(frames):
        frame = as_frame(raw)
        got: dict[str, Any] = {}
        for name, it in side.items():
            if it is None:
                continue
            item = next(it, None)
            if item is None:
                rest = sum(1 for _ in frames)  # count the frames left, for an honest message
                raise LengthMismatch(name, index, index + 1 + rest)
            if name == "masks":
                got[name] = as_mask(item, frame.shape[:2])
            else:
                item = as_frame(item)
                if item.shape != frame.shape:
                    raise ValueError(
                        f"reference frame {index} is {item.shape[1]}x{item.shape[0]}, the video is {frame.shape[1]}x{frame.shape[0]}"
                    )
                got[name] = item
        step = Step(index=index, frame=frame, mask=got.get("masks"), reference=got.get("reference"))
        if prev is not None:
            if prev.frame.shape != frame.shape:
                raise ValueError(
                    f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {prev.frame.shape[1]}x{prev.frame.shape[0]}"
                )
            step.prev_frame, step.prev_mask, step.prev_reference = prev.frame, prev.mask, prev.reference
            if "g1" in prev._cache:  # this frame's grey image, already computed as the previous step's
                step._cache["g0"] = prev._cache["g1"]
            prev._cache.clear()
        yield step
        prev = step
    num_frames = index + 1 if prev is not None else 0
    for name, it in side.items():
        if it is not None:
            extra = sum(1 for _ in it)
            if extra:
                raise LengthMismatch(name, num_frames + extra, num_frames)


# ------------------------------------------------------------------------------------------
# Bucketed statistics
# ------------------------------------------------------------------------------------------


def num_buckets(num_frames: int, bucket: int) -> int:
    """``max(1, ceil((N - 1) / B))``: buckets of ``B`` frame pairs."""
    return max(1, -(-(num_frames - 1) // bucket))


def bucket_of_pair(t: int, bucket: int) -> int:
    return t // bucket


def bucket_of_frame(i: int, bucket: int) -> int:
    """Frame ``i`` belongs to the bucket of the pair ending at it (frame 0 to bucket 0)."""
    return max(i - 1, 0) // bucket


def bucket_spans(num_frames: int, bucket: int) -> list[tuple[int, int]]:
    """Half-open ranges ``[start, end)`` of pair indices per bucket."""
    pairs = max(num_frames - 1, 0)
    return [(b * bucket, min(b * bucket + bucket, pairs)) for b in range(num_buckets(num_frames, bucket))]


class _Means:
    """Sums and counts per key, for the whole video (bucket None) and per bucket."""

    def __init__(self) -> None:
        self.sum: dict[tuple[int | None, str], float] = defaultdict(float)
        self.n: dict[tuple[int | None, str], int] = defaultdict(int)

    def add(self, bucket: int, key: str, value: float) -> None:
        if not math.isfinite(value):
            return
        for b in (None, bucket):
            self.sum[b, key] += value
            self.n[b, key] += 1

    def get(self, key: str, bucket: int | None = None) -> float:
        n = self.n.get((bucket, key), 0)
        return self.sum[bucket, key] / n if n else NAN


class _LineFit:
    """Least-squares slope of y over x, for the whole video and per bucket."""

    def __init__(self) -> None:
        self.s: dict[int | None, np.ndarray] = defaultdict(lambda: np.zeros(5))  # n, Sx, Sy, Sxx, Sxy

    def add(self, bucket: int, x: float, y: float) -> None:
        if not math.isfinite(y):
            return
        for b in (None, bucket):
            self.s[b] += (1.0, x, y, x * x, x * y)

    def slope(self, bucket: int | None = None) -> float:
        n, sx, sy, sxx, sxy = self.s[bucket] if bucket in self.s else (0,) * 5
        den = n * sxx - sx * sx
        return float((n * sxy - sx * sy) / den) if n >= 2 and den > 0 else NAN


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


# ------------------------------------------------------------------------------------------
# Metrics with local weights (CLIP, DINO)
# ------------------------------------------------------------------------------------------


def _local_model_dir(path: str, what: str) -> str:
    """The folder of a metric's model on disk (`models.local_folder`: a folder or a cached hub id)."""
    from vidtune.errors import VidtuneError
    from vidtune.models import local_folder

    folder = local_folder(path, "config.json")
    if folder is None or not (folder / "config.json").is_file():
        raise VidtuneError(f"{path}: no config.json; give a local {what} model folder (weights are never downloaded)")
    return str(folder)


def load_clip(path: str, with_text: bool = True) -> tuple[Any, Any, Any]:
    """(CLIPModel, image processor, tokenizer or None) from a local folder, offline, eval mode."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    path = _local_model_dir(path, "CLIP")
    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    images = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if with_text else None
    return model, images, tokenizer


def load_dino(path: str) -> tuple[Any, Any]:
    """(ViT model, image processor) from a local folder, offline, eval mode."""
    from transformers import AutoImageProcessor, AutoModel

    path = _local_model_dir(path, "DINO")
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return model, AutoImageProcessor.from_pretrained(path, local_files_only=True)


def _features(output: Any) -> Any:
    """transformers 5 returns a ModelOutput whose ``pooler_output`` is the projected feature."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _Embedded(Metric):
    """Base for metrics on per-frame embeddings: frames are embedded in small batches."""

    def __init__(self, bucket: int = 16, batch_size: int = 8) -> None:
        self.batch_size = batch_size
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.pending: list[tuple[int, np.ndarray]] = []

    def update(self, step: Step) -> None:
        super().update(step)
        self.pending.append((step.index, step.frame))
        if len(self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        import torch

        indices, frames = zip(*self.pending)
        self.pending = []
        with torch.no_grad():
            emb = self._embed(list(frames)).float()
        emb = torch.nn.functional.normalize(emb, dim=-1).cpu().numpy().astype(np.float64)
        for i, e in zip(indices, emb):
            self._consume(i, e)

    def _embed(self, frames: list[np.ndarray]) -> Any:
        raise NotImplementedError

    def _consume(self, index: int, emb: np.ndarray) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        self._flush()
        return super().result()

    def bucket_results(self) -> list[dict[str, float]]:
        self._flush()
        return super().bucket_results()


class ClipScores(_Embedded):
    """Tune-A-Video's CLIP metrics (x100, as Tune-A-Video reports them).

    With ``e_i`` the L2-normalised CLIP image embedding of frame i and ``c`` the prompt's text
    embedding: ``consistency = 100 * mean_i cos(e_i, e_{i+1})`` over consecutive pairs (our
    choice: it measures frame-to-frame flicker and streams; Tune-A-Video's paper says "all pairs
    of video frames"), ``consistency_all_pairs = 100 * mean_{i<j} cos(e_i, e_j)`` (computed from
    the running sum ``s``: ``(|s|^2 - N) / (N (N - 1))``), and, with a prompt,
    ``text_alignment = 100 * mean_i cos(e_i, c)`` (CLIP score, not clamped). Range [-100, 100].
    """

    name = "clip"

    def __init__(self, model_path: str, prompt: str | None = None, bucket: int = 16, batch_size: int = 8) -> None:
        self.model, self.images, self.tokenizer = load_clip(model_path, with_text=prompt is not None)
        self.prompt = prompt
        self.text_emb: np.ndarray | None = None
        if prompt is not None:
            import torch

            tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                text = _features(self.model.get_text_features(**tokens)).float()
            self.text_emb = torch.nn.functional.normalize(text, dim=-1)[0].numpy().astype(np.float64)
        super().__init__(bucket, batch_size)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.prev: np.ndarray | None = None
        self.sums: dict[int | None, tuple[np.ndarray, int]] = {}

    def _embed(self, frames: list[np.ndarray]) -> Any:
        pixels = self.images(images=frames, return_tensors="pt")["pixel_values"]
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _consume(self, index: int, emb: np.ndarray) -> None:
        b = bucket_of_frame(index, self.bucket)
        if self.prev is not None:
            self.means.add(bucket_of_pair(index - 1, self.bucket), "consistency", 100.0 * float(emb @ self.prev))
        self.prev = emb
        if self.text_emb is not None:
            self.means.add(b, "text_alignment", 100.0 * float(emb @ self.text_emb))
        for key in (None, b):
            s, n = self.sums.get(key, (np.zeros_like(emb), 0))
            self.sums[key] = (s + emb, n + 1)

    def _values(self, bucket: int | None) -> dict[str, float]:
        s, n = self.sums.get(bucket, (None, 0))
        all_pairs = 100.0 * (float(s @ s) - n) / (n * (n - 1)) if n >= 2 else NAN
        out = {"consistency": self.means.get("consistency", bucket), "consistency_all_pairs": all_pairs}
        if self.text_emb is not None:
            out["text_alignment"] = self.means.get("text_alignment", bucket)
        return out


class DinoSubjectConsistency(_Embedded):
    """VBench subject consistency with DINO ViT CLS features (``last_hidden_state[:, 0]``,
    after the final layer norm, as DINO's own ``forward``), L2-normalised:
    ``score = mean_{i>=1} (max(0, cos(d_i, d_{i-1})) + max(0, cos(d_i, d_0))) / 2``.
    Range [0, 1], 1 = the subject never changes.
    """

    name = "dino_subject_consistency"

    def __init__(self, model_path: str, bucket: int = 16, batch_size: int = 8) -> None:
        self.model, self.images = load_dino(model_path)
        super().__init__(bucket, batch_size)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.first: np.ndarray | None = None
        self.prev: np.ndarray | None = None

    def _embed(self, frames: list[np.ndarray]) -> Any:
        pixels = self.images(images=frames, return_tensors="pt")["pixel_values"]
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]

    def _consume(self, index: int, emb: np.ndarray) -> None:
        if self.first is None:
            self.first = emb
        else:
            sim = (max(0.0, float(emb @ self.prev)) + max(0.0, float(emb @ self.first))) / 2
            self.means.add(bucket_of_frame(index, self.bucket), "score", sim)
        self.prev = emb

    def _values(self, bucket: int | None) -> dict[str, float]:
        return {"score": self.means.get("score", bucket)}


# ------------------------------------------------------------------------------------------
# compute_<name> functions and the registry
# ------------------------------------------------------------------------------------------


def run(
    metrics: Sequence[Metric],
    frames: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    reference: Iterable[np.ndarray] | None = None,
) -> int:
    """Feed one pass over the streams to every accumulator; returns the number of frames."""
    n = 0
    for step in iter_steps(frames, masks, reference):
        for metric in metrics:
            metric.update(step)
        n = step.index + 1
    return n


def summarize(metric: Metric, num_frames: int) -> dict[str, Any]:
    """``{"metrics": {key: value}, "buckets": [{"start", "end", "metrics"}]}`` of one metric."""
    spans = bucket_spans(num_frames, metric.bucket)
    return {
        "metrics": metric.result(),
        "buckets": [{"start": s, "end": e, "metrics": v} for (s, e), v in zip(spans, metric.bucket_results())],
    }


def _compute(
    metric: Metric, frames: Iterable, masks: Iterable | None = None, reference: Iterable | None = None
) -> dict[str, Any]:
    return summarize(metric, run([metric], frames, masks, reference))


def compute_flicker(
    frames: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None, bucket: int = 16
) -> dict[str, Any]:
    """VBench temporal flickering (see ``Flicker``): score in [0, 1], mean |dI| in [0, 255]."""
    return _compute(Flicker(bucket), frames, masks)


def flicker_curve(frames: Iterable[np.ndarray]) -> list[float]:
    """Mean |dI| (0-255) of each consecutive frame pair, as ``Flicker`` measures it: N frames -> N - 1 values."""
    metric = Flicker()
    run([metric], frames)
    return metric.curve


def compute_warp_err_dis(
    frames: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None, bucket: int = 16
) -> dict[str, Any]:
    """Lai et al. 2018 warping error with DIS flow (see ``WarpErrorDIS``), colours in [0, 1]."""
    return _compute(WarpErrorDIS(bucket), frames, masks)


def compute_bg_stability(
    frames: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    bucket: int = 16,
    min_bg_fraction: float = 0.5,
) -> dict[str, Any]:
    """Mean per-pixel temporal std of the background, 0-255 (see ``BgStability``)."""
    return _compute(BgStability(bucket, min_bg_fraction), frames, masks)


def compute_drift_bg(
    frames: Iterable[np.ndarray], masks: Iterable[np.ndarray] | None = None, bucket: int = 16
) -> dict[str, Any]:
    """Mean and slope of the background's distance to frame 0 (see ``DriftBg``)."""
    return _compute(DriftBg(bucket), frames, masks)


def compute_drift_fg_color(
    frames: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    bucket: int = 16,
    bins: Sequence[int] = (8, 16, 16),
) -> dict[str, Any]:
    """Mean and slope of the foreground's Lab-histogram Bhattacharyya distance to frame 0."""
    return _compute(DriftFgColor(bucket, bins), frames, masks)


def compute_seam_ratio(
    frames: Iterable[np.ndarray],
    windows: Iterable[Sequence[int]],
    masks: Iterable[np.ndarray] | None = None,
    bucket: int = 16,
) -> dict[str, Any]:
    """Mean |dI| across co-denoising clip boundaries / elsewhere (1 = seamless); windows [s, e)."""
    return _compute(SeamRatio(windows, bucket), frames, masks)


def compute_motion_epe(
    frames: Iterable[np.ndarray],
    reference: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    bucket: int = 16,
    dilate: int = 9,
) -> dict[str, Any]:
    """End-point error (pixels) between the output's and the reference's DIS flow."""
    return _compute(MotionEPE(bucket, dilate), frames, masks, reference)


def compute_clip_consistency(
    frames: Iterable[np.ndarray], clip: str, bucket: int = 16, batch_size: int = 8
) -> dict[str, Any]:
    """Tune-A-Video frame consistency, x100 (see ``ClipScores``); ``clip`` a local model folder."""
    return _compute(ClipScores(clip, None, bucket, batch_size), frames)


def compute_clip_text_alignment(
    frames: Iterable[np.ndarray], prompt: str, clip: str, bucket: int = 16, batch_size: int = 8
) -> dict[str, Any]:
    """Tune-A-Video textual alignment (CLIP score), x100 (see ``ClipScores``)."""
    out = _compute(ClipScores(clip, prompt, bucket, batch_size), frames)
    keep = lambda d: {"text_alignment": d["text_alignment"]}  # noqa: E731
    return {"metrics": keep(out["metrics"]), "buckets": [{**b, "metrics": keep(b["metrics"])} for b in out["buckets"]]}


def compute_dino_subject_consistency(
    frames: Iterable[np.ndarray], dino: str, bucket: int = 16, batch_size: int = 8
) -> dict[str, Any]:
    """VBench subject consistency with DINO CLS features, in [0, 1] (see ``DinoSubjectConsistency``)."""
    return _compute(DinoSubjectConsistency(dino, bucket, batch_size), frames)


METRICS: dict[str, Callable[..., dict[str, Any]]] = {
    "flicker": compute_flicker,
    "warp_err_dis": compute_warp_err_dis,
    "bg_stability": compute_bg_stability,
    "drift_bg": compute_drift_bg,
    "drift_fg_color": compute_drift_fg_color,
    "seam_ratio": compute_seam_ratio,
    "motion_epe": compute_motion_epe,
    "clip_consistency": compute_clip_consistency,
    "clip_text_alignment": compute_clip_text_alignment,
    "dino_subject_consistency": compute_dino_subject_consistency,
}
"""Every metric by name. All take a frame stream first and return
``{"metrics": {key: float}, "buckets": [{"start", "end", "metrics"}]}``. (Adherence to a synthetic
sequence's poses and prompt needs its ground truth: ``vidtune.demo.synthetic.adherence``. The figure
metrics ``fg_appearance`` and ``drift_long`` are in ``foreground.METRICS``: that module builds on this one.)"""

WEIGHT_FREE: tuple[str, ...] = (
    "flicker", "warp_err_dis", "bg_stability", "drift_bg", "drift_fg_color", "fg_appearance", "drift_long",
)  # fmt: skip
"""Metrics that need nothing but the frames (and masks, if any): what ``evaluate`` runs by default."""
