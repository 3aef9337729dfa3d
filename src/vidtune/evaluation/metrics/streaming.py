"""One pass over a video: the per-step values every metric reads (`iter_steps`), and buckets and
running means over frames."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vidtune.evaluation.metrics.frames import (
    NAN,
    as_frame,
    as_mask,
    dis_flow,
    gray,
)

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
