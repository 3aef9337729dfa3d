"""Resampling a pose sequence in time, and framing it onto the output canvas (fit, or around the person)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from vidtune.errors import VidtuneError
from vidtune.poses.sequence import (
    FRAMINGS,
    PoseSequence,
)

# --- resampling and framing ------------------------------------------------------------------


def resample_keypoints(keypoints: np.ndarray, num_frames: int) -> np.ndarray:
    """Resample ``(N, 18, 3)`` keypoints to ``num_frames`` frames, linearly in time.

    Output frame i sits at source time ``s = i * (N - 1) / (num_frames - 1)`` (first and last
    frames kept). A joint present (conf > 0) at both neighbouring source frames is interpolated
    (x, y, conf); otherwise the nearer source frame's value is taken.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    n = kp.shape[0]
    if num_frames == 1 or n == 1:
        return kp[np.zeros(num_frames, dtype=int)].copy()
    s = np.arange(num_frames, dtype=np.float64) * (n - 1) / (num_frames - 1)
    lo = np.clip(np.floor(s).astype(int), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = (s - lo)[:, None, None]
    lerp = (1 - w) * kp[lo] + w * kp[hi]
    nearest = np.where(w >= 0.5, kp[hi], kp[lo])
    both = (kp[lo, :, 2] > 0) & (kp[hi, :, 2] > 0)
    return np.where(both[..., None], lerp, nearest).astype(np.float32)


def resampled_size(seq: PoseSequence, num_frames: int | None, fps: float | None) -> tuple[int, float | None]:
    """(frames, fps) that :func:`resample` gives, without resampling anything (see its rules)."""
    n = seq.num_frames
    if fps is not None and fps <= 0:
        raise VidtuneError(f"{seq.source}: fps must be > 0, got {fps}")
    if num_frames is None:
        if not seq.fps:
            raise VidtuneError(
                f"{seq.source}: the source frame rate is unknown, so it cannot be resampled to {fps:g} fps;"
                " give the number of frames instead, or the source fps when loading"
            )
        num_frames = int(round((n - 1) * fps / seq.fps)) + 1
    if num_frames < 1:
        raise VidtuneError(f"{seq.source}: cannot resample to {num_frames} frames; give at least 1")
    if fps is None and seq.fps and n > 1 and num_frames > 1:
        fps = seq.fps * (num_frames - 1) / (n - 1)
    elif fps is None:
        fps = seq.fps
    return num_frames, fps


def resample(seq: PoseSequence, num_frames: int | None = None, fps: float | None = None) -> PoseSequence:
    """Change the frame count and/or frame rate, keeping the first and last frames.

    Args:
        num_frames: the new frame count. With ``fps`` alone it is
            ``round((N - 1) * fps / seq.fps) + 1`` (needs ``seq.fps``).
        fps: the new frame rate. With ``num_frames`` alone it becomes
            ``seq.fps * (num_frames - 1) / (N - 1)`` (same duration), or stays None.

    Keypoints are interpolated linearly in time (:func:`resample_keypoints`); images take the
    nearest source frame.
    """
    n = seq.num_frames
    if num_frames is None and fps is None:
        return seq
    num_frames, fps = resampled_size(seq, num_frames, fps)
    if seq.keypoints is not None:
        return replace(seq, keypoints=resample_keypoints(seq.keypoints, num_frames), fps=fps)
    # nearest source frame, halves rounded up (as resample_keypoints' nearest rule)
    idx = (
        np.zeros(num_frames, dtype=int)
        if num_frames == 1
        else np.floor(np.linspace(0, n - 1, num_frames) + 0.5).astype(int)
    )
    return replace(seq, images=seq.images[idx], fps=fps)


@dataclass(frozen=True)
class Framing:
    """Maps source pixels to target pixels: ``target = source * scale + (offset_x, offset_y)``."""

    scale: float
    offset_x: float
    offset_y: float


def fit_framing(src_w: int, src_h: int, height: int, width: int) -> Framing:
    """Scale the source canvas uniformly to fit ``width x height``, centred (letterbox / pillarbox)."""
    s = min(width / src_w, height / src_h)
    return Framing(s, (width - src_w * s) / 2, (height - src_h * s) / 2)


def box_framing(box: tuple[float, float, float, float], height: int, width: int, margin: float = 0.1) -> Framing:
    """Fit the box ``(x0, y0, x1, y1)`` grown by ``margin`` x its larger side on every side, centred.

    The grown box is widened or heightened to the target aspect ratio around its centre, so the
    whole box shows and nothing is distorted.
    """
    x0, y0, x1, y1 = box
    pad = margin * max(x1 - x0, y1 - y0, 1.0)
    bw, bh = max(x1 - x0, 1.0) + 2 * pad, max(y1 - y0, 1.0) + 2 * pad
    s = min(width / bw, height / bh)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return Framing(s, width / 2 - cx * s, height / 2 - cy * s)


def person_box(keypoints: np.ndarray) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1, y1)`` around every joint with conf > 0 over the whole sequence (None if none)."""
    conf = keypoints[..., 2] > 0
    if not conf.any():
        return None
    xs, ys = keypoints[..., 0][conf], keypoints[..., 1][conf]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def image_box(images: np.ndarray, threshold: int = 0) -> tuple[float, float, float, float] | None:
    """``(x0, y0, x1 + 1, y1 + 1)`` around every pixel brighter than ``threshold`` in any frame."""
    lit = images.max(axis=(0, 3)) > threshold
    if not lit.any():
        return None
    rows, cols = np.nonzero(lit.any(axis=1))[0], np.nonzero(lit.any(axis=0))[0]
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def sequence_framing(seq: PoseSequence, height: int, width: int, framing: str = "fit", margin: float = 0.1) -> Framing:
    """The source-to-target mapping for ``framing`` ``"fit"`` or ``"person"`` (see :func:`frame_poses`)."""
    if framing not in FRAMINGS:
        raise VidtuneError(f"framing {framing!r} is not one of {', '.join(FRAMINGS)}")
    if height <= 0 or width <= 0:
        raise VidtuneError(f"target size must be positive, got {width}x{height}")
    if framing == "person":
        box = person_box(seq.keypoints) if seq.keypoints is not None else image_box(seq.images)
        if box is not None:
            return box_framing(box, height, width, margin)
    return fit_framing(seq.width, seq.height, height, width)


def frame_poses(seq: PoseSequence, height: int, width: int, framing: str = "fit", margin: float = 0.1) -> np.ndarray:
    """Map the keypoints onto a ``width x height`` target canvas.

    Args:
        framing: ``"fit"`` scales the whole source canvas uniformly to fit, centred (letterbox);
            ``"person"`` shows a fixed box around the union of the tracked person's joints over
            the whole sequence, grown by ``margin`` x its larger side, at the target aspect ratio
            (for wide footage where the person is small). The box may reach past the source
            canvas; nothing is distorted.

    Returns:
        ``(N, 18, 3)`` float32 ``(x, y, conf)`` in target pixels (conf unchanged; joints with
        conf 0 are mapped too but stay missing). For an image sequence use
        :func:`frame_images`.
    """
    if seq.keypoints is None:
        raise VidtuneError(f"{seq.source}: is a sequence of pose images, it has no keypoints; use frame_images")
    f = sequence_framing(seq, height, width, framing, margin)
    out = seq.keypoints.astype(np.float32, copy=True)
    out[..., 0] = out[..., 0] * f.scale + f.offset_x
    out[..., 1] = out[..., 1] * f.scale + f.offset_y
    return out


def _warp_image(image: np.ndarray, f: Framing, height: int, width: int) -> np.ndarray:
    """Place ``image`` on a black ``width x height`` canvas with ``target = source * scale + offset``.

    Pixel centres sit at integer coordinates (as keypoints do). Shrinking first area-averages
    with ``cv2.resize`` (no aliasing of thin limbs), then places the small image.
    """
    h, w = image.shape[:2]
    if f.scale >= 1:
        m = np.array([[f.scale, 0.0, f.offset_x], [0.0, f.scale, f.offset_y]])
        return cv2.warpAffine(image, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    small = cv2.resize(image, (max(1, round(w * f.scale)), max(1, round(h * f.scale))), interpolation=cv2.INTER_AREA)
    # small pixel i has its centre at source coordinate (i + 0.5) * r - 0.5, r = source / small size
    rx, ry = w / small.shape[1], h / small.shape[0]
    m = np.array(
        [[rx * f.scale, 0.0, (0.5 * rx - 0.5) * f.scale + f.offset_x],
         [0.0, ry * f.scale, (0.5 * ry - 0.5) * f.scale + f.offset_y]]
    )  # fmt: skip
    return cv2.warpAffine(small, m, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def frame_images(seq: PoseSequence, height: int, width: int, framing: str = "fit", margin: float = 0.1) -> np.ndarray:
    """Resize pose images onto a black ``width x height`` canvas, as :func:`frame_poses` maps keypoints.

    ``"person"`` uses the box around every non-black pixel over the whole sequence.

    Returns:
        ``(N, height, width, 3)`` uint8 RGB.
    """
    if seq.images is None:
        raise VidtuneError(f"{seq.source}: has keypoints, not images; use render_sequence")
    f = sequence_framing(seq, height, width, framing, margin)
    return np.stack([_warp_image(img, f, height, width) for img in seq.images])
