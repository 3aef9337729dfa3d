"""Temporal-consistency metrics, computed in one streaming pass over a video.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
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
    "_compute",
    "_features",
    "_local_model_dir",
    "as_frame",
    "as_mask",
    "boundary_pairs",
    "bucket_of_frame",
    "bucket_of_pair",
    "bucket_spans",
    "compute_bg_stability",
    "compute_clip_consistency",
    "compute_clip_text_alignment",
    "compute_dino_subject_consistency",
    "compute_drift_bg",
    "compute_drift_fg_color",
    "compute_flicker",
    "compute_motion_epe",
    "compute_seam_ratio",
    "compute_warp_err_dis",
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
