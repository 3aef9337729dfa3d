"""Evaluate a video (file or frame folder) with the metrics of ``vidtune.evaluation.metrics``, in one pass.

``evaluate_video`` streams the frames (and masks, and a reference sequence) once through every
applicable accumulator and returns a JSON-ready dict; ``format_table`` prints it;
``write_json`` saves it atomically. The ``vidtune evaluate`` command calls these.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidtune import atomic
from vidtune.errors import VidtuneError
from vidtune.evaluation.foreground import METRICS as foreground_registry
from vidtune.evaluation.metrics import METRICS as metrics_registry
from vidtune.evaluation.metrics import (
    WEIGHT_FREE,
    ClipScores,
    DinoSubjectConsistency,
    LengthMismatch,
    Metric,
    MotionEPE,
    SeamRatio,
    bucket_spans,
    run,
)
from vidtune.video import list_image_files, read_frames

METRICS: dict[str, type[Metric]] = {**metrics_registry, **foreground_registry}
"""Every accumulator by name: the pixel and embedded metrics and the figure metrics."""


def mask_files(folder: str | Path) -> list[Path]:
    """The png/jpg masks of ``folder`` in natural file-name order (the frames' order)."""
    path = Path(folder)
    if not path.is_dir():
        raise VidtuneError(
            f"{path}: not a folder; --masks takes a folder of png masks (white = foreground), one per frame"
        )
    files = list_image_files(path)
    if not files:
        raise VidtuneError(f"{path}: no png masks found; put one mask per frame (white = foreground) in this folder")
    return files


def read_masks(files: Sequence[Path]) -> Iterator[np.ndarray]:
    """Yield each mask file as uint8 ``(H, W)`` (or ``(H, W, C)``); 255 / white = foreground."""
    for f in files:
        data = np.fromfile(str(f), dtype=np.uint8)
        mask = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        if mask is None:
            raise VidtuneError(f"{f}: cannot be decoded as an image; replace it with a 0/255 png mask")
        if mask.dtype != np.uint8:  # 16-bit png: keep the top byte
            mask = (mask >> 8).astype(np.uint8) if mask.dtype == np.uint16 else mask.astype(np.uint8)
        yield mask


def build_metrics(
    masks: bool = False,
    prompt: str | None = None,
    clip: str | None = None,
    dino: str | None = None,
    reference: bool = False,
    windows: Sequence[Sequence[int]] | None = None,
    bucket: int = 16,
    names: Sequence[str] | None = None,
) -> list[Metric]:
    """The accumulators that apply to these inputs (``names`` limits the weight-free ones)."""
    chosen = list(WEIGHT_FREE if names is None else names)
    unknown = [n for n in chosen if n not in WEIGHT_FREE]
    if unknown:
        raise VidtuneError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(WEIGHT_FREE)}")
    out: list[Metric] = [METRICS[n](bucket) for n in chosen]
    if windows:
        out.append(SeamRatio(windows, bucket))
    if reference:
        out.append(MotionEPE(bucket))
    if clip is not None:
        out.append(ClipScores(clip, prompt, bucket))
    if dino is not None:
        out.append(DinoSubjectConsistency(dino, bucket))
    return out


def _json_safe(value: Any) -> Any:
    """NaN / inf -> None (strict JSON), recursively; numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def at_size(frames: Iterator[np.ndarray], size: tuple[int, int]) -> tuple[Iterator[np.ndarray], int]:
    """Frames whose size is an integer multiple k > 1 of ``size`` (h, w) area-averaged down to it (a
    video vidtune wrote upscaled, `vidtune.encoding`), with k; any other frames as they are, with 1
    (a real mismatch is then reported by the metrics)."""
    first = next(frames, None)
    if first is None:
        return iter(()), 1
    (h, w), (th, tw) = first.shape[:2], size
    k = h // th if th and tw and h % th == 0 and w % tw == 0 and h // th == w // tw else 1
    rest = itertools.chain([first], frames)
    if k <= 1:
        return rest, 1
    return (cv2.resize(f, (tw, th), interpolation=cv2.INTER_AREA) for f in rest), k


def evaluate_video(
    video: str,
    masks: str | None = None,
    prompt: str | None = None,
    clip: str | None = None,
    dino: str | None = None,
    reference: str | None = None,
    windows: list | None = None,
    bucket: int = 16,
    metrics: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every applicable metric of ``video``, over the whole video and per time bucket.

    Args:
        video: mp4/gif/... file or folder of png/jpg frames (streamed).
        masks: folder of foreground masks (png, 0/255, white = foreground), one per frame,
            matched to the frames in natural file-name order.
        prompt: text for CLIP text alignment (needs ``clip``).
        clip: local CLIP model folder -> ``clip`` (consistency, all-pairs, text alignment).
        dino: local DINO ViT folder -> ``dino_subject_consistency``.
        reference: skeleton renders or ground-truth frames (file or folder) -> ``motion_epe``.
        windows: co-denoising clips as half-open frame ranges ``[start, end)`` -> ``seam_ratio``.
        bucket: frames per time bucket (pairs starting in ``[B*b, B*b + B)``).
        metrics: weight-free metrics to run (default all of ``metrics.WEIGHT_FREE``).

    Returns:
        ``{"video", "num_frames", "bucket", "inputs", "notes",
        "metrics": {metric: {key: value}}, "buckets": [{"start", "end", "metrics"}]}``; values
        that cannot be computed are ``None`` (strict JSON).

    Raises:
        VidtuneError: unreadable inputs, a mask or reference count that differs from the frame
            count (naming the folder and both counts), or frames of different sizes.
    """
    if bucket < 1:
        raise VidtuneError(f"bucket must be >= 1 frame, got {bucket}")
    files = mask_files(masks) if masks is not None else None
    accumulators = build_metrics(files is not None, prompt, clip, dino, reference is not None, windows, bucket, metrics)
    notes = []
    if prompt is not None and clip is None:
        notes.append("a prompt was given without a CLIP model folder: no text alignment")
    frames = read_frames(video)
    if files is not None or reference is not None:
        target = next(read_masks(files[:1])).shape[:2] if files is not None else next(read_frames(reference)).shape[:2]
        frames, factor = at_size(frames, target)
        if factor > 1:
            notes.append(
                f"the video is {factor}x the size of its masks / reference (an upscaled video): scored at theirs"
            )
    try:
        num_frames = run(
            accumulators,
            frames,
            read_masks(files) if files is not None else None,
            read_frames(reference) if reference is not None else None,
        )
    except LengthMismatch as e:
        where = masks if e.stream == "masks" else reference
        kind = "masks" if e.stream == "masks" else "reference frames"
        raise VidtuneError(
            f"{where}: {e.items} {kind} for the {e.frames} frames of {video}; give exactly one per frame"
        ) from e
    except VidtuneError:
        raise
    except ValueError as e:
        raise VidtuneError(f"{video}: {e}") from e
    if num_frames == 0:
        raise VidtuneError(f"{video}: no frames; give a non-empty video or frame folder")
    notes += [n for m in accumulators for n in getattr(m, "notes", list)()]  # why a metric is null
    if num_frames == 1:
        notes.append(
            "one frame: every metric compares consecutive frames, so none can be computed ('-'); "
            "give a video of at least 2 frames"
        )
    spans = bucket_spans(num_frames, bucket)
    per_bucket = {m.name: m.bucket_results() for m in accumulators}
    result = {
        "video": str(video),
        "num_frames": num_frames,
        "bucket": bucket,
        "inputs": {
            "masks": masks,
            "prompt": prompt,
            "clip": clip,
            "dino": dino,
            "reference": reference,
            "windows": [list(w) for w in windows] if windows else None,
        },  # fmt: skip
        "notes": notes,
        "metrics": {m.name: m.result() for m in accumulators},
        "buckets": [
            {"start": s, "end": e, "metrics": {name: values[b] for name, values in per_bucket.items()}}
            for b, (s, e) in enumerate(spans)
        ],
    }
    return _json_safe(result)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(result: dict[str, Any]) -> str:
    """Aligned text table: one row per ``metric.key``, a column for the video and each bucket."""
    header = ["metric", "video"] + [f"t{b['start']}-{max(b['end'] - 1, b['start'])}" for b in result["buckets"]]
    rows = [header]
    for name, values in result["metrics"].items():
        for key, value in values.items():
            row = [f"{name}.{key}", _fmt(value)]
            row += [_fmt(b["metrics"].get(name, {}).get(key)) for b in result["buckets"]]
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    title = f"{result['video']}: {result['num_frames']} frames, buckets of {result['bucket']} frame pairs (tA-B = pairs starting at A..B)"
    return "\n".join([title, *lines, *(f"note: {n}" for n in result.get("notes", []))])


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    """Atomically write an ``evaluate_video`` result as JSON."""
    atomic.write_json(path, _json_safe(result))
