"""Tracking one person across frames and cleaning the track (pure): the most plausible person, implausible
joints dropped, missing joints interpolated, the canvas inferred."""

from __future__ import annotations

import math

import numpy as np

from vidtune.poses.layout import (
    NUM_KEYPOINTS,
)
from vidtune.poses.sequence import (
    INTERPOLATED_CONFIDENCE_SCALE,
    MAX_COORDINATE,
    STANDARD_CANVASES,
)

# --- tracking and cleaning (pure) ------------------------------------------------------------


def person_score(person: np.ndarray) -> float:
    """Size score of one ``(18, 3)`` person: bbox area of its confident joints x mean confidence.

    The mean confidence is over all 18 joints (missing ones count 0), so a partial skeleton of a
    few low-confidence joints scores far below a full confident one of the same extent.
    """
    conf = person[:, 2] > 0
    if conf.sum() < 2:
        return 0.0
    xy = person[conf, :2]
    area = float(np.ptp(xy[:, 0]) * np.ptp(xy[:, 1]))
    return area * float(person[:, 2].mean())


def person_distance(reference: np.ndarray, person: np.ndarray) -> float:
    """Mean pixel distance over joints confident in both ``(18, 3)`` poses.

    With no joint in common, the distance between the centroids of their confident joints is used
    instead; inf if either has no confident joint.
    """
    ra, pa = reference[:, 2] > 0, person[:, 2] > 0
    if not ra.any() or not pa.any():
        return math.inf
    both = ra & pa
    if both.any():
        return float(np.linalg.norm(reference[both, :2] - person[both, :2], axis=1).mean())
    return float(np.linalg.norm(reference[ra, :2].mean(0) - person[pa, :2].mean(0)))


def track_person(frames: list[np.ndarray]) -> np.ndarray:
    """Follow one person through per-frame detections, independent of the list order.

    The start is the highest :func:`person_score` in the first frame with anyone. In every later
    frame the choice is the person nearest (:func:`person_distance`) to the track's last known
    pose, where each joint keeps its last confident position (so a frame where the person was
    seen only partially, or not at all, does not blind the matching).

    Args:
        frames: per frame a ``(P_t, 18, 3)`` array of detected people (P_t may be 0).

    Returns:
        ``(N, 18, 3)`` float32: the tracked person per frame, all zeros where nobody was detected.
    """
    track = np.zeros((len(frames), NUM_KEYPOINTS, 3), np.float32)
    reference: np.ndarray | None = None
    for t, people in enumerate(frames):
        if len(people) == 0:
            continue
        if reference is None:
            choice = int(np.argmax([person_score(p) for p in people]))
            reference = np.zeros((NUM_KEYPOINTS, 3), np.float32)
        else:
            choice = int(np.argmin([person_distance(reference, p) for p in people]))
        track[t] = people[choice]
        seen = people[choice][:, 2] > 0
        reference[seen] = people[choice][seen]
    return track


def interpolate_missing(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill missing joints (conf 0) by linear interpolation in time, per joint.

    A joint missing at frame t between confident frames a < t < b becomes
    ``p_t = p_a + (t - a) / (b - a) * (p_b - p_a)`` (x, y and conf alike), with its conf then
    multiplied by :data:`INTERPOLATED_CONFIDENCE_SCALE`. Before the first / after the last
    confident frame the joint is held at that frame's value (conf scaled the same way). A joint
    never confident stays missing (all zeros).

    Args:
        keypoints: ``(N, 18, 3)`` ``(x, y, conf)``.

    Returns:
        ``(filled, was_filled)``: ``(N, 18, 3)`` float32 and a ``(N, 18)`` bool mask of the filled
        entries.
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    out = kp.copy()
    n = kp.shape[0]
    t = np.arange(n, dtype=np.float64)
    was_filled = np.zeros(kp.shape[:2], dtype=bool)
    for j in range(kp.shape[1]):
        conf = kp[:, j, 2] > 0
        if conf.all() or not conf.any():
            continue
        known = np.nonzero(conf)[0]
        missing = ~conf
        for c in range(3):
            out[missing, j, c] = np.interp(t[missing], known, kp[known, j, c].astype(np.float64))
        out[missing, j, 2] *= INTERPOLATED_CONFIDENCE_SCALE
        was_filled[missing, j] = True
    return out, was_filled


def infer_canvas(keypoints: np.ndarray) -> tuple[int, int]:
    """Guess the source canvas ``(width, height)`` from the extent of the confident keypoints.

    The smallest (by area; landscape first on ties) of :data:`STANDARD_CANVASES` whose width and
    height exceed the largest confident x and y; beyond those, both maxima rounded up to a multiple
    of 64. With no confident joint at all, 512x512. A guess: e.g. a person pillarboxed inside a
    1920x1080 frame who never goes right of x=1280 or below y=720 gives 1280x720, so pass
    ``canvas`` when it is known, or frame with ``"person"``.
    """
    conf = keypoints[..., 2] > 0
    if not conf.any():
        return (512, 512)
    max_x = float(keypoints[..., 0][conf].max())
    max_y = float(keypoints[..., 1][conf].max())
    for w, h in sorted(STANDARD_CANVASES, key=lambda s: (s[0] * s[1], -s[0])):
        if max_x < w and max_y < h:
            return (w, h)
    return (int(math.floor(max_x / 64) + 1) * 64, int(math.floor(max_y / 64) + 1) * 64)


def drop_implausible(people: np.ndarray, canvas: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """Mark detected joints that no camera could give as missing (all zeros).

    A joint (conf > 0) is implausible when x or y is negative, above :data:`MAX_COORDINATE`, or
    (when the canvas ``(width, height)`` is known) outside it. One such joint would otherwise set
    the inferred canvas or the "person" framing of the whole sequence (a 1e30 coordinate shrinks
    every pose map to a dot).

    Args:
        people: ``(P, 18, 3)`` ``(x, y, conf)`` of one frame.

    Returns:
        ``(cleaned copy, number of joints dropped)``.
    """
    out = np.array(people, dtype=np.float32, copy=True)
    x, y, conf = out[..., 0], out[..., 1], out[..., 2]
    limit_x, limit_y = (MAX_COORDINATE, MAX_COORDINATE) if canvas is None else (float(canvas[0]), float(canvas[1]))
    bad = (conf > 0) & ((x < 0) | (y < 0) | (x > limit_x) | (y > limit_y))
    out[bad] = 0.0
    return out, int(bad.sum())


def has_usable_pose(keypoints: np.ndarray) -> bool:
    """True when some frame of ``(N, 18, 3)`` keypoints has at least two detected joints (one limb's worth)."""
    return bool(((keypoints[..., 2] > 0).sum(axis=-1) >= 2).any())


def clean_track(frames: list[np.ndarray]) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Track one person (:func:`track_person`) and fill the gaps (:func:`interpolate_missing`).

    Frames where the person is absent are filled joint by joint from the nearest frames where
    that joint was seen (interpolated between them, held at the ends).

    Returns:
        ``(keypoints (N, 18, 3) float32, filled frame indices, joints interpolated in the other
        frames)``.
    """
    track = track_person(frames)
    absent = ~(track[..., 2] > 0).any(axis=1)
    filled, was_filled = interpolate_missing(track)
    return filled, tuple(int(i) for i in np.nonzero(absent)[0]), int(was_filled[~absent].sum())
