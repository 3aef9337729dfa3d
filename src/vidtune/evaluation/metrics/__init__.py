"""Temporal-consistency metrics, computed in one streaming pass over a video.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vidtune.evaluation.metrics.embedded import (
    ClipScores,
    DinoSubjectConsistency,
    _Embedded,
    _features,
    _local_model_dir,
    load_clip,
    load_dino,
)
from vidtune.evaluation.metrics.frames import (
    NAN,
    as_frame,
    as_mask,
    dis_flow,
    fb_consistent,
    gray,
    reference_region,
    warp_by_flow,
)
from vidtune.evaluation.metrics.pixel import (
    BgStability,
    DriftBg,
    DriftFgColor,
    Flicker,
    Metric,
    MotionEPE,
    SeamRatio,
    WarpErrorDIS,
    _Welford,
    boundary_pairs,
    lab_histogram,
)
from vidtune.evaluation.metrics.streaming import (
    LengthMismatch,
    Step,
    _LineFit,
    _Means,
    bucket_of_frame,
    bucket_of_pair,
    bucket_spans,
    iter_steps,
    num_buckets,
)

# ------------------------------------------------------------------------------------------
# One pass, one summary, and the registry
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
    """``{"metrics": {key: value}, "buckets": [{"start", "end", "metrics"}], "notes": [str]}`` of one metric."""
    spans = bucket_spans(num_frames, metric.bucket)
    return {
        "metrics": metric.result(),
        "buckets": [{"start": s, "end": e, "metrics": v} for (s, e), v in zip(spans, metric.bucket_results())],
        "notes": metric.notes(),
    }


def compute(
    metric: Metric,
    frames: Iterable[np.ndarray],
    masks: Iterable[np.ndarray] | None = None,
    reference: Iterable[np.ndarray] | None = None,
) -> dict[str, Any]:
    """One metric over one video: ``compute(Flicker(), frames, masks)`` -> `summarize`'s dict. ``reference``
    is the motion reference (`MotionEPE`: the pose images)."""
    return summarize(metric, run([metric], frames, masks, reference))


def flicker_curve(frames: Iterable[np.ndarray]) -> list[float]:
    """Mean |dI| (0-255) of each consecutive frame pair, as ``Flicker`` measures it: N frames -> N - 1 values."""
    metric = Flicker()
    run([metric], frames)
    return metric.curve


METRICS: dict[str, type[Metric]] = {
    "flicker": Flicker,
    "warp_err_dis": WarpErrorDIS,
    "bg_stability": BgStability,
    "drift_bg": DriftBg,
    "drift_fg_color": DriftFgColor,
    "seam_ratio": SeamRatio,
    "motion_epe": MotionEPE,
    "clip_scores": ClipScores,
    "dino_subject_consistency": DinoSubjectConsistency,
}
"""Every accumulator of this package by name (the figure metrics ``fg_appearance`` and ``drift_long``:
``foreground.METRICS``, which builds on this module). Adherence to a synthetic sequence's poses and prompt
needs its ground truth: ``vidtune.demo.synthetic.adherence``."""

WEIGHT_FREE: tuple[str, ...] = (
    "flicker", "warp_err_dis", "bg_stability", "drift_bg", "drift_fg_color", "fg_appearance", "drift_long",
)  # fmt: skip
"""Metrics that need nothing but the frames (and masks, if any): what ``evaluate`` runs by default."""

__all__ = [
    "BgStability",
    "ClipScores",
    "DinoSubjectConsistency",
    "DriftBg",
    "DriftFgColor",
    "Flicker",
    "LengthMismatch",
    "METRICS",
    "Metric",
    "MotionEPE",
    "NAN",
    "SeamRatio",
    "Step",
    "WEIGHT_FREE",
    "WarpErrorDIS",
    "_Embedded",
    "_LineFit",
    "_Means",
    "_Welford",
    "compute",
    "_features",
    "_local_model_dir",
    "as_frame",
    "as_mask",
    "boundary_pairs",
    "bucket_of_frame",
    "bucket_of_pair",
    "bucket_spans",
    "dis_flow",
    "fb_consistent",
    "flicker_curve",
    "gray",
    "iter_steps",
    "lab_histogram",
    "load_clip",
    "load_dino",
    "num_buckets",
    "reference_region",
    "run",
    "summarize",
    "warp_by_flow",
]
