"""Scoring an ablation: every metric of every variant of one sequence, and the statistics over sequences.

`score_sequence` measures each variant's frames with the weight-free metrics
(`vidtune.evaluation.evaluate`, docs/benchmark.md) against the ground truth's exact masks and pose images,
its adherence to the poses and the prompt (`vidtune.demo.synthetic.adherence.judge_frames`), and,
for a prompt schedule, its consistency within each segment and the schedule metrics. `summarize`
gives each metric's mean, std and 95% bootstrap interval over the sequences. The math
(`transition_ratio`, `schedule_metrics`, `segment_cores`, `bootstrap_interval`) is pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vidtune.errors import VidtuneError

if TYPE_CHECKING:
    from vidtune.benchmark.sequence import SequenceRun
    from vidtune.demo.synthetic.adherence import FrameAdherence

PROMPT_KEYS = ("colour_accuracy", "scene_accuracy", "time_accuracy")
IDENTITY_KEYS = ("shirt", "trousers", "hat")


# --------------------------------------------------------------------------------------------
# One sequence
# --------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, float]) -> None:
    """Nested metric dicts as flat `name.key` floats into `out` (booleans left out)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (bool, np.bool_)):
        return
    elif isinstance(value, (int, float, np.integer, np.floating)):
        out[prefix] = float(value)


def adherence_metrics(judged: Sequence[FrameAdherence | None]) -> dict[str, float]:
    """Pose adherence (figure-mask IoU vs the ground truth) and prompt adherence of a video's judged
    frames (`vidtune.demo.synthetic.adherence.judge_frames`; None = not judged), as
    `pose_adherence.pose_iou` and `prompt_adherence.<colour|scene|time>_accuracy`; where the frames
    show the figure's identity (`vidtune.demo.synthetic.readout`), `prompt_adherence.<attr>_accuracy`
    for the attributes the prompt names and `identity.consistency` / `identity.flips` (how constant
    the identity is over the video)."""
    from vidtune.demo.synthetic.adherence import summarize

    s = summarize([r for r in judged if r is not None])
    details = {f"pose_adherence.{k}": s[k] for k in ("stripes_iou", "hat_iou") if k in s}  # prompts naming them
    named = {f"prompt_adherence.{k}_accuracy": s[f"{k}_accuracy"] for k in IDENTITY_KEYS if f"{k}_accuracy" in s}
    identity = {f"identity.{k}": s[f"identity_{k}"] for k in ("consistency", "flips") if f"identity_{k}" in s}
    return {
        "pose_adherence.pose_iou": s["pose_iou"],
        **details,
        **{f"prompt_adherence.{k}": s[k] for k in PROMPT_KEYS},
        **named,
        **identity,
    }


SEGMENT_KEYS = (
    "flicker.",
    "warp_err_dis.",
    "bg_stability.",
    "drift_bg.",
    "drift_fg_color.",
    "fg_appearance.",
    "drift_long.",
    "motion_epe.",
)


def segment_cores(starts: Sequence[int], num_frames: int, transition: int) -> list[tuple[int, int]]:
    """Each prompt segment without the frames of its transitions: the frames one prompt alone holds
    (`vidtune.method.segments.transition_frames`), the same frames for every variant."""
    from vidtune.method.segments import transition_frames

    bounds = list(starts) + [num_frames]
    segments = list(zip(bounds[:-1], bounds[1:]))
    between = transition_frames(num_frames, segments, transition).tolist()
    cores = []
    for s, e in segments:
        held = [f for f in range(s, e) if not between[f]]
        if held:
            cores.append((held[0], held[-1] + 1))
    return cores


def segment_consistency(
    folder: Path, masks: Path, poses: Path, starts: Sequence[int], num_frames: int, transition: int = 0
) -> dict:
    """A prompt schedule's consistency metrics measured within each segment's core (`segment_cores`:
    a scene meant to change at a boundary, or cross-fading into the next, is not flicker or drift)
    and averaged over the segments, weighted by their frame pairs. The frame files are hard-linked
    (copied where links fail) into one folder per segment."""
    import tempfile

    from vidtune.benchmark.sequence import link_or_copy
    from vidtune.evaluation.evaluate import evaluate_video

    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s, e in segment_cores(starts, num_frames, transition):
            if e - s < 2:
                continue
            parts = {}
            for kind, src in (("frames", folder), ("masks", masks), ("poses", poses)):
                files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg"))[s:e]
                dst = Path(tmp) / f"{s}_{kind}"
                dst.mkdir()
                for f in files:
                    link_or_copy(f, dst / f.name)
                parts[kind] = str(dst)
            flat: dict[str, float] = {}
            _flatten(
                evaluate_video(parts["frames"], masks=parts["masks"], reference=parts["poses"])["metrics"], "", flat
            )
            for k, v in flat.items():
                if k.startswith(SEGMENT_KEYS) and math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v * (e - s - 1)
                    weights[k] = weights.get(k, 0.0) + (e - s - 1)
    return {k: sums[k] / weights[k] for k in sums}


def transition_ratio(curve: Sequence[float], boundaries: Sequence[int], width: int) -> float:
    """The largest frame-to-frame change at a schedule boundary against the median within segments.

    Pair p is frames (p, p + 1). A boundary b (a segment's first frame) owns the pairs within
    max(1, width / 2) frames of it; the ratio is max |dI| over those pairs / median |dI| over
    every other pair. A cut gives a ratio far above 1; a transition over `width` frames about 1.
    """
    curve = np.asarray(curve, dtype=np.float64)
    half = max(1.0, width / 2.0)
    centres = np.arange(len(curve)) + 1.0  # pair p sits between frames p and p + 1
    near = np.zeros(len(curve), bool)
    for b in boundaries:
        near |= np.abs(centres - b) <= half
    if not near.any() or near.all():
        return float("nan")
    return float(curve[near].max() / max(np.median(curve[~near]), 1e-6))


def schedule_metrics(
    curve: Sequence[float], judged: Sequence[FrameAdherence | None], starts: Sequence[int], width: int
) -> dict[str, float]:
    """A prompt schedule's metrics from a video's flicker curve (`metrics.flicker_curve`) and judged
    frames (`judge_frames`): `transition.ratio` (`transition_ratio` over the truth's transition width)
    and `segment_adherence.min` (the worst segment's worst accuracy of colour, scene and time, judged
    on the frames outside the transitions)."""
    from vidtune.demo.synthetic.adherence import summarize

    out = {"transition.ratio": transition_ratio(curve, starts[1:], width)}
    bounds = list(starts) + [len(judged)]
    worst = 1.0
    for s, e in zip(bounds[:-1], bounds[1:]):
        segment = [r for r in judged[s:e] if r is not None]
        if segment:
            summary = summarize(segment)
            worst = min(worst, *(summary[k] for k in PROMPT_KEYS))
    out["segment_adherence.min"] = worst
    return out


def mask_iou(masks: Path, truth: Path) -> float | None:
    """Mean IoU of stage 1's foreground masks (the segmenter's) with the ground-truth figure masks."""
    from vidtune.video import read_frames

    if not masks.is_dir():
        return None
    ious = [
        float(((a[..., 0] > 127) & (b[..., 0] > 127)).sum() / max(1, ((a[..., 0] > 127) | (b[..., 0] > 127)).sum()))
        for a, b in zip(read_frames(masks), read_frames(truth))
    ]
    return float(np.mean(ious)) if ious else None


def score_sequence(run: SequenceRun) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Every metric of every variant of one sequence (flat `metric.key` dicts) and the flicker curves."""
    from vidtune.demo.synthetic.adherence import judge_frames
    from vidtune.evaluation.evaluate import evaluate_video
    from vidtune.evaluation.metrics import flicker_curve
    from vidtune.video import read_frames

    masks, poses = run.root / "source" / "gt_masks", run.root / "source" / "poses"
    starts = [k for k, _ in run.spec.prompts]
    metrics, curves = {}, {}
    for name, folder in run.frames.items():
        result = evaluate_video(str(folder), masks=str(masks), reference=str(poses), windows=run.windows.get(name))
        flat: dict[str, float] = {}
        _flatten(result["metrics"], "", flat)
        if starts:  # consistency within each prompt's segment; the changes between them: transition.ratio
            flat.update(segment_consistency(folder, masks, poses, starts, run.spec.frames, run.transition))
        frames = np.stack(list(read_frames(folder)))
        if len(frames) != run.spec.frames:
            raise VidtuneError(f"{folder}: {len(frames)} frames, expected {run.spec.frames}")
        judged, curves[name] = judge_frames(frames, run.truth), flicker_curve(frames)
        flat.update(adherence_metrics(judged))
        if starts:
            flat.update(schedule_metrics(curves[name], judged, starts, run.transition))
        flat["seconds"] = run.seconds.get(name, 0.0)
        metrics[name] = {k: (v if math.isfinite(v) else None) for k, v in flat.items()}
    return metrics, curves


# --------------------------------------------------------------------------------------------
# Over sequences
# --------------------------------------------------------------------------------------------


def bootstrap_interval(
    values: Sequence[float], level: float = 0.95, resamples: int = 4000, seed: int = 0
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean over sequences (resampled with replacement, seeded)."""
    if not values:
        return None, None
    x = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def summarize(per_sequence: dict[str, dict[str, dict[str, float | None]]], variants: Sequence[str]) -> dict:
    """{variant: {metric: {"mean", "std", "n"}}} over sequences (None values left out; std ddof 0)."""
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for v in variants:
        keys = sorted({k for seq in per_sequence.values() for k in seq.get(v, {})})
        out[v] = {}
        for k in keys:
            vals = [seq[v][k] for seq in per_sequence.values() if seq.get(v, {}).get(k) is not None]
            lo, hi = bootstrap_interval(vals)
            out[v][k] = {
                "mean": float(np.mean(vals)) if vals else None,
                "std": float(np.std(vals)) if vals else None,
                "n": len(vals),
                "lo": lo,
                "hi": hi,
            }
    return out
