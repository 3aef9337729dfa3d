"""Stage 4 math (docs/method.md, stage 4): clip windows and merge weights.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method.windows`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from vidtune.errors import VidtuneError

Window = tuple[int, int]

__all__ = [
    "MERGE_WEIGHTS",
    "MergeAccumulator",
    "clip_merge_weights",
    "clip_position_weights",
    "clip_windows",
    "frame_merge_weights",
    "shift_offset",
    "shifted_windows",
    "merge_predictions",
    "pixel_merge_weights",
]


# ---------------------------------------------------------------------------------------------
# Windows


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise VidtuneError(f"{name} must be a positive integer, got {value!r}")
    return value


def clip_windows(num_frames: int, length: int, stride: int, shrink_clip: bool = False) -> list[Window]:
    """Overlapping clips ``[kS, kS + M)`` for k = 0, 1, ... while kS + M <= N, plus ``[N - M, N)``.

    Gen-L-Video's windows stop at the last full stride and leave the tail frames uncovered; here a
    last clip ending at frame N is added whenever the regular ones do not end there, so every
    frame is covered by at least one clip. Consecutive clips overlap by M - S frames (they touch
    when S = M); the added last clip overlaps its neighbour by more.

    Args:
        num_frames: N >= 1.
        length: M, the clip length (``codenoise.clip_length``) >= 1.
        stride: S, 1 <= S <= M (``codenoise.stride``); S > M would leave gaps.
        shrink_clip: when N < M, use M := N (one clip, the whole video) instead of failing
            (``codenoise.shrink_clip``). The caller should tell the user it happened.

    Returns:
        Half-open ``(start, end)`` frame ranges, starts strictly increasing, every one M long.
    """
    num_frames = _positive_int(num_frames, "num_frames")
    length = _positive_int(length, "codenoise.clip_length")
    stride = _positive_int(stride, "codenoise.stride")
    if stride > length:
        raise VidtuneError(
            f"codenoise.stride = {stride} is larger than codenoise.clip_length = {length}: frames between "
            f"clips would never be denoised; use a stride <= the clip length"
        )
    if num_frames < length:
        if not shrink_clip:
            raise VidtuneError(
                f"the video has {num_frames} frames, fewer than codenoise.clip_length = {length}; "
                f"set codenoise.clip_length <= {num_frames} or codenoise.shrink_clip = true"
            )
        length = num_frames
    windows = [(start, start + length) for start in range(0, num_frames - length + 1, stride)]
    if windows[-1][1] != num_frames:
        windows.append((num_frames - length, num_frames))
    return windows


def shift_offset(step: int, length: int) -> int:
    """Where step `step`'s clip boundaries start, in [0, M): the van der Corput sequence (base 2) scaled
    to M, so consecutive steps put their boundaries far apart and M consecutive steps (M a power of two)
    use every offset once: 0, M/2, M/4, 3M/4, ... A boundary of one step is then inside a clip at the
    next ones, and no frame pair sits on a boundary at more than a 1/M share of the steps."""
    step = int(step)
    length = _positive_int(length, "codenoise.clip_length")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    radical, scale = 0.0, 0.5
    while step:
        radical += scale * (step & 1)
        step >>= 1
        scale /= 2
    return int(radical * length)


def shifted_windows(num_frames: int, length: int, step: int, shrink_clip: bool = False) -> list[Window]:
    """Non-overlapping clips of M frames whose boundaries move every step (``codenoise.mode = "shifted"``).

    Step j cuts the video at o_j + kM (o_j = `shift_offset`(j, M)); an end piece shorter than
    ceil(M / 2) joins its neighbour, so every clip has between ceil(M / 2) and M + ceil(M / 2) - 1
    frames when N >= 2M (at most 2M - 1 below; the whole video when N <= M). Every frame is in exactly one clip: ONE UNet evaluation per
    frame per step instead of Gen-L-Video's M / S, and since the boundaries move, no seam stays put
    (the context schedulers of AnimateDiff tools shift their windows for the same reason).

    Args:
        num_frames: N >= 1.
        length: M >= 1 (``codenoise.clip_length``).
        step: the denoising step index (>= 0): decides the offset.
        shrink_clip: as in `clip_windows`: when N < M, one clip of N frames instead of an error.

    Returns:
        Half-open ``(start, end)`` ranges that tile 0..N in order.
    """
    num_frames = _positive_int(num_frames, "num_frames")
    length = _positive_int(length, "codenoise.clip_length")
    if num_frames < length and not shrink_clip:
        raise VidtuneError(
            f"the video has {num_frames} frames, fewer than codenoise.clip_length = {length}; "
            f"set codenoise.clip_length <= {num_frames} or codenoise.shrink_clip = true"
        )
    if num_frames <= length:
        return [(0, num_frames)]
    offset = shift_offset(step, length)
    cuts = [c for c in range(offset or length, num_frames, length)]
    bounds = [0, *cuts, num_frames]
    windows = list(zip(bounds[:-1], bounds[1:]))
    shortest = (length + 1) // 2
    if len(windows) > 1 and windows[0][1] - windows[0][0] < shortest:
        windows[:2] = [(windows[0][0], windows[1][1])]
    if len(windows) > 1 and windows[-1][1] - windows[-1][0] < shortest:
        windows[-2:] = [(windows[-2][0], windows[-1][1])]
    return windows


def _check_windows(windows: Sequence[Window], num_frames: int) -> None:
    if len(windows) == 0:
        raise ValueError("windows: need at least one clip window")
    for k, (start, end) in enumerate(windows):
        if not (0 <= start < end <= num_frames):
            raise ValueError(f"windows[{k}] = ({start}, {end}) is not a non-empty range inside 0..{num_frames}")


def _ranges_text(frames: Sequence[int]) -> str:
    """``[0, 1, 2, 7]`` -> ``"0-2, 7"``."""
    parts: list[str] = []
    run_start = prev = None
    for f in list(frames) + [None]:
        if run_start is not None and (f is None or f != prev + 1):
            parts.append(f"{run_start}" if run_start == prev else f"{run_start}-{prev}")
            run_start = None
        if f is not None and run_start is None:
            run_start = f
        prev = f
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# Merge weights over a clip's frame positions


def _uniform(length: int, sigma: float) -> torch.Tensor:
    """Gen-L-Video: every frame of a clip counts the same."""
    return torch.ones(length, dtype=torch.float64)


def _triangular(length: int, sigma: float) -> torch.Tensor:
    """w(p) = 1 - |p - c| / (c + 1), c = (M - 1) / 2: peak 1 in the middle, 1 / (c + 1) > 0 at the ends."""
    c = (length - 1) / 2
    p = torch.arange(length, dtype=torch.float64)
    return 1.0 - (p - c).abs() / (c + 1.0)


def _gaussian(length: int, sigma: float) -> torch.Tensor:
    """w(p) = exp(-(p - c)^2 / (2 (sigma M)^2)): sigma is a fraction of the clip length."""
    c = (length - 1) / 2
    p = torch.arange(length, dtype=torch.float64)
    return torch.exp(-0.5 * ((p - c) / (sigma * length)) ** 2)


# One signature for every weighting: (clip length, sigma) -> (length,) float64, all entries > 0.
MERGE_WEIGHTS: dict[str, Callable[[int, float], torch.Tensor]] = {
    "uniform": _uniform,
    "triangular": _triangular,
    "gaussian": _gaussian,
}


def clip_position_weights(length: int, kind: str, sigma: float = 0.25) -> torch.Tensor:
    """Weight of each frame position inside one clip, ``(length,)`` float64, every entry > 0.

    ``uniform`` (Gen-L-Video), ``triangular`` (peak in the middle, 1 / (c + 1) at the ends) or
    ``gaussian`` (std ``sigma * length``; the ends get exp(-1 / (8 sigma^2)), 0.135 at the default).
    Down-weighting the clip's ends smooths the seams between clips; the ends stay strictly
    positive so that a frame covered by a single clip still has weight.
    """
    length = _positive_int(length, "length")
    if kind not in MERGE_WEIGHTS:
        raise VidtuneError(f"codenoise.weighting = {kind!r} is unknown; choose one of {', '.join(MERGE_WEIGHTS)}")
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number (a fraction of the clip length), got {sigma!r}")
    return MERGE_WEIGHTS[kind](length, float(sigma))


def clip_merge_weights(
    num_frames: int,
    windows: Sequence[Window],
    kind: str = "uniform",
    sigma: float = 0.25,
    dtype: torch.dtype = torch.float32,
) -> list[torch.Tensor]:
    """Normalised merge weights per clip: entry k is ``(end_k - start_k,)``, w_k(f) for f in clip k.

    The same numbers as the non-zero part of `frame_merge_weights`, in O(K M + N) memory instead
    of a dense (clips, frames) matrix (which at 100k frames is 24 GB in float64).

    Raises:
        ValueError: when a frame is covered by no window.
    """
    num_frames = _positive_int(num_frames, "num_frames")
    _check_windows(windows, num_frames)
    total = torch.zeros(num_frames, dtype=torch.float64)
    shapes: dict[int, torch.Tensor] = {}  # clips of one length share their position weights
    for start, end in windows:
        if end - start not in shapes:
            shapes[end - start] = clip_position_weights(end - start, kind, sigma)
        total[start:end] += shapes[end - start]
    uncovered = (total == 0).nonzero().flatten().tolist()
    if uncovered:
        raise ValueError(f"windows: frames {_ranges_text(uncovered)} are covered by no clip")
    return [(shapes[end - start] / total[start:end]).to(dtype) for start, end in windows]


def frame_merge_weights(
    num_frames: int,
    windows: Sequence[Window],
    kind: str = "uniform",
    sigma: float = 0.25,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised merge weights w_k(f), ``(clips, frames)``; every column sums to 1.

    Entry (k, f) is clip k's weight for frame f: the clip's position weight of f (see
    `clip_position_weights`) divided by the sum over the clips covering f, and 0 where f is not
    in clip k. With ``uniform`` it is 1 / (number of clips covering f). Dense: quadratic in the
    frame count (K ~ N / S clips); long videos should use `clip_merge_weights`.

    Raises:
        ValueError: when a frame is covered by no window.
    """
    per_clip = clip_merge_weights(num_frames, windows, kind, sigma, dtype=torch.float64)
    weights = torch.zeros(len(windows), num_frames, dtype=torch.float64)
    for k, (start, end) in enumerate(windows):
        weights[k, start:end] = per_clip[k]
    return weights.to(dtype)


def _centre_distance(windows: Sequence[Window], num_frames: int) -> torch.Tensor:
    """d_k(f) = |f - c_k| / h_k in [0, 1] (c_k the clip's centre, h_k its half-length), ``(K, N)``."""
    f = torch.arange(num_frames, dtype=torch.float64)
    rows = []
    for start, end in windows:
        half = (end - start - 1) / 2
        rows.append(((f - (start + half)).abs() / half).clamp(max=1.0) if half > 0 else torch.zeros_like(f))
    return torch.stack(rows)


def pixel_merge_weights(
    frame_weights: torch.Tensor,
    windows: Sequence[Window],
    fg: torch.Tensor,
    fg_gain: float,
) -> torch.Tensor:
    """Per-pixel merge weights that prefer, in the foreground, the clips centred near the frame.

        w_k(f, p) = w_k(f) * exp(-fg_gain * m_f(p) * d_k(f)^2) / sum_j (same for clip j)

    m_f(p) in [0, 1] is frame f's soft foreground mask, d_k(f) = |f - c_k| / h_k in [0, 1] the
    distance of f from clip k's centre in half-lengths.

    Why: a per-pixel factor that depends only on the frame cancels in the normalisation, so the
    factor must depend on the clip. In the static background, averaging many clips is what makes
    frames agree, so the background keeps the plain weights w_k(f) (m = 0). The figure moves:
    predictions of clips with different temporal context disagree about where a limb is, and
    their average ghosts it. A frame near a clip's centre has context on both sides inside that
    clip, so that clip's prediction is the most reliable one; in the foreground the weight is
    therefore sharpened towards such clips. fg_gain = 0 returns the plain weights; as fg_gain
    grows, foreground pixels follow the most central clip(s) alone. The weights stay positive
    wherever w_k(f) > 0, so every covered pixel keeps weight (computed as a softmax in log space:
    no underflow for large gains).

    Args:
        frame_weights: w_k(f) >= 0, ``(clips, frames)``, e.g. from `frame_merge_weights`
            (normalised or not); every frame needs a positive weight somewhere.
        windows: the K clip windows the rows belong to.
        fg: soft foreground masks at latent resolution, ``(frames, 1, height, width)`` in [0, 1].
        fg_gain: >= 0 (``codenoise.fg_gain``).

    Returns:
        ``(clips, frames, 1, height, width)``, summing to 1 over clips at every frame and pixel,
        dtype and device of ``fg``.
    """
    if frame_weights.ndim != 2 or frame_weights.shape[0] != len(windows):
        raise ValueError(f"frame_weights must be (clips={len(windows)}, frames), got {tuple(frame_weights.shape)}")
    num_frames = frame_weights.shape[1]
    _check_windows(windows, num_frames)
    if fg.ndim != 4 or fg.shape[0] != num_frames or fg.shape[1] != 1:
        raise ValueError(f"fg must be (frames={num_frames}, 1, height, width), got {tuple(fg.shape)}")
    if not (isinstance(fg_gain, (int, float)) and math.isfinite(fg_gain) and fg_gain >= 0):
        raise VidtuneError(f"codenoise.fg_gain must be a number >= 0, got {fg_gain!r}")
    if (frame_weights < 0).any() or (frame_weights.sum(dim=0) <= 0).any():
        raise ValueError("frame_weights must be >= 0 with a positive weight for every frame")
    dtype = fg.dtype if fg.dtype.is_floating_point else torch.float32
    w = frame_weights.to(device=fg.device, dtype=torch.float64)
    d2 = _centre_distance(windows, num_frames).to(fg.device) ** 2  # (K, N)
    # log w_k(f) - g m_f(p) d_k(f)^2, with log 0 = -inf for frames outside the clip
    logits = w.log()[:, :, None, None, None] - fg_gain * fg.to(torch.float64)[None] * d2[:, :, None, None, None]
    return torch.softmax(logits, dim=0).to(dtype)


# ---------------------------------------------------------------------------------------------
# Merging predictions


class MergeAccumulator:
    """Accumulates ``sum_k w_k(f) eps_k(f)`` and ``sum_k w_k(f)`` over clips added one batch at a time.

    ``result()`` returns eps(f) = sum_k w_k(f) eps_k(f) / sum_k w_k(f) (docs/method.md, stage 4), so
    the weights need not be normalised. Storage is allocated on the first `add`, with its
    device; sums are kept in the prediction's dtype, or float32 for 16-bit predictions (the
    result is cast back to the prediction's dtype).

    Usage::

        acc = MergeAccumulator(num_frames)
        for (start, end), eps_k in zip(windows, predictions):
            acc.add((start, end), eps_k, weights[k, start:end])
        eps = acc.result()
        acc.reset()   # next step
    """

    def __init__(self, num_frames: int) -> None:
        self.num_frames = _positive_int(num_frames, "num_frames")
        self.reset()

    def reset(self) -> None:
        """Forget every added clip (storage is freed and reallocated on the next `add`)."""
        self._sum: torch.Tensor | None = None  # (N, C, H, W): sum_k w_k(f) eps_k(f)
        self._weight: torch.Tensor | None = None  # (N, 1, H, W): sum_k w_k(f)
        self._out_dtype: torch.dtype | None = None
        self.num_added = 0

    def add(self, window: Window, pred: torch.Tensor, weights: torch.Tensor) -> None:
        """Add clip ``window = (start, end)``'s prediction.

        Args:
            window: half-open frame range of the clip.
            pred: eps_k, ``(end - start, channels, height, width)``.
            weights: w_k(f) >= 0 for the clip's frames, ``(end - start,)`` (per frame) or
                ``(end - start, 1, height, width)`` (per pixel).
        """
        start, end = window
        if not (0 <= start < end <= self.num_frames):
            raise ValueError(f"window ({start}, {end}) is not a non-empty range inside 0..{self.num_frames}")
        frames = end - start
        if pred.ndim != 4 or pred.shape[0] != frames:
            raise ValueError(f"pred must be (clip frames={frames}, channels, height, width), got {tuple(pred.shape)}")
        if self._sum is None:
            acc_dtype = torch.float32 if pred.dtype in (torch.float16, torch.bfloat16) else pred.dtype
            self._sum = pred.new_zeros((self.num_frames, *pred.shape[1:]), dtype=acc_dtype)
            self._weight = pred.new_zeros((self.num_frames, 1, *pred.shape[2:]), dtype=acc_dtype)
            self._out_dtype = pred.dtype
        assert self._weight is not None
        if pred.shape[1:] != self._sum.shape[1:]:
            raise ValueError(
                f"pred frames must be {tuple(self._sum.shape[1:])} like the first clip, got {tuple(pred.shape[1:])}"
            )
        if weights.ndim == 1:
            weights = weights[:, None, None, None]
        if weights.shape[0] != frames or weights.ndim != 4 or weights.shape[1] != 1:
            raise ValueError(
                f"weights must be (clip frames={frames},) or ({frames}, 1, height, width), got {tuple(weights.shape)}"
            )
        w = weights.to(device=self._sum.device, dtype=self._sum.dtype)
        self._sum[start:end] += w * pred.to(self._sum.dtype)
        self._weight[start:end] += w.expand(frames, 1, *self._weight.shape[2:])
        self.num_added += 1

    def result(self) -> torch.Tensor:
        """The merged prediction, ``(frames, channels, height, width)``.

        Raises:
            ValueError: when nothing was added or some frame (pixel) has no weight.
        """
        if self._sum is None or self._weight is None or self._out_dtype is None:
            raise ValueError("MergeAccumulator.result(): no clip was added")
        empty = (self._weight.flatten(1) <= 0).any(dim=1).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"frames {_ranges_text(empty)} got no merge weight: no clip covered them")
        return (self._sum / self._weight).to(self._out_dtype)


def merge_predictions(
    preds: Sequence[torch.Tensor],
    windows: Sequence[Window],
    weights: torch.Tensor,
) -> torch.Tensor:
    """eps(f) = sum_k w_k(f) eps_k(f) / sum_k w_k(f) (docs/method.md, stage 4), one shot.

    Args:
        preds: eps_k per clip, each ``(end_k - start_k, channels, height, width)``.
        windows: the clips' ``(start, end)`` frame ranges.
        weights: ``(clips, frames)`` or per pixel ``(clips, frames, 1, height, width)``, >= 0.

    Returns:
        ``(frames, channels, height, width)`` in the predictions' dtype and device.
    """
    if not (len(preds) == len(windows) == weights.shape[0]):
        raise ValueError(
            f"need one prediction and one weight row per window: {len(preds)} predictions, "
            f"{len(windows)} windows, {weights.shape[0]} weight rows"
        )
    if weights.ndim not in (2, 5):
        raise ValueError(
            f"weights must be (clips, frames) or (clips, frames, 1, height, width), got {tuple(weights.shape)}"
        )
    acc = MergeAccumulator(weights.shape[1])
    for k, (window, pred) in enumerate(zip(windows, preds)):
        acc.add(window, pred, weights[k, window[0] : window[1]])
    return acc.result()
