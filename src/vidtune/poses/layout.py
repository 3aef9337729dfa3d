"""COCO-18 keypoints: the layout, the palette and the skeleton renderer T2I-Adapter's openpose adapter was
trained on (lllyasviel's ``draw_bodypose``). Keypoints are ``(x, y, conf)`` in canvas pixels; ``conf == 0``
means "not detected"."""

from __future__ import annotations

import math

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------
# COCO-18 layout (spec sections 1-3)
# --------------------------------------------------------------------------------------------

KEYPOINT_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)  # fmt: skip
NUM_KEYPOINTS = 18

# The 17 drawn limbs, 0-based joint pairs, in drawing order; limb j is drawn in COLORS[j].
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip

# One palette of 18 RGB colours: joint i in COLORS[i], limb j in COLORS[j].
COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

# COCO-18 index k takes BODY_25 index BODY25_TO_COCO18[k] (drops MidHip 8 and the feet 19-24).
BODY25_TO_COCO18: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

JOINT_RADIUS = 4  # px, filled circle at full colour
STICK_WIDTH = 4  # px, semi-minor axis of the limb ellipse
LIMB_ALPHA = 0.6  # new = (1 - LIMB_ALPHA) * old + LIMB_ALPHA * colour inside the limb polygon


def _trunc(v: float) -> int:
    """Python ``int()`` truncation (toward zero), as the reference code does."""
    return int(v)


def render_pose(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """Draw COCO-18 skeletons the way ControlNet / T2I-Adapter's ``draw_bodypose`` does.

    Args:
        keypoints: ``(18, 3)`` for one person or ``(P, 18, 3)`` for P people; ``(x, y, conf)`` in
            pixel coordinates of the output canvas. A joint with ``conf <= 0`` (or non-finite
            values) is missing: it is not drawn, nor is any limb touching it.
        height, width: canvas size in pixels.

    Returns:
        ``(height, width, 3)`` uint8 RGB image: black canvas; all joints first (joint i, then each
        person) as filled radius-4 circles in full colour; then limbs 0..16 (limb j, then each
        person), each a filled ellipse polygon (semi-major ``int(length/2)``, semi-minor 4 px,
        angle ``int(degrees(atan2(dy, dx)))``, centre truncated to int, sampled 0..360 deg in 1 deg
        steps) blended as ``new = 0.4*old + 0.6*colour`` inside the polygon only.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[1:] != (NUM_KEYPOINTS, 3):
        raise ValueError(f"render_pose expects keypoints of shape (18, 3) or (P, 18, 3), got {kp.shape}")
    if height <= 0 or width <= 0:
        raise ValueError(f"render_pose needs a positive canvas size, got {height}x{width}")
    present = np.isfinite(kp).all(axis=-1) & (kp[..., 2] > 0)  # (P, 18)

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for i in range(NUM_KEYPOINTS):
        for p in range(kp.shape[0]):
            if present[p, i]:
                x, y = kp[p, i, 0], kp[p, i, 1]
                cv2.circle(canvas, (_trunc(x), _trunc(y)), JOINT_RADIUS, COLORS[i], thickness=-1)

    for j, (a, b) in enumerate(LIMBS):
        for p in range(kp.shape[0]):
            if not (present[p, a] and present[p, b]):
                continue
            (xa, ya), (xb, yb) = kp[p, a, :2], kp[p, b, :2]
            length = math.hypot(xa - xb, ya - yb)
            angle = math.degrees(math.atan2(ya - yb, xa - xb))
            centre = (_trunc((xa + xb) / 2), _trunc((ya + yb) / 2))
            polygon = cv2.ellipse2Poly(centre, (_trunc(length / 2), STICK_WIDTH), _trunc(angle), 0, 360, 1)
            _blend_polygon(canvas, polygon, COLORS[j])
    return canvas


def _blend_polygon(canvas: np.ndarray, polygon: np.ndarray, color: tuple[int, int, int]) -> None:
    """In place: ``canvas = 0.4*canvas + 0.6*color`` inside the filled convex ``polygon``.

    Works on the polygon's bounding box only (the reference blends the whole canvas, which leaves
    pixels outside the polygon unchanged, so the result is identical), rounding like
    ``cv2.addWeighted``.
    """
    h, w = canvas.shape[:2]
    x0, y0 = max(int(polygon[:, 0].min()), 0), max(int(polygon[:, 1].min()), 0)
    x1, y1 = min(int(polygon[:, 0].max()) + 1, w), min(int(polygon[:, 1].max()) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    roi = canvas[y0:y1, x0:x1]
    painted = roi.copy()
    cv2.fillConvexPoly(painted, polygon - np.array([x0, y0], dtype=polygon.dtype), color)
    roi[...] = cv2.addWeighted(roi, 1.0 - LIMB_ALPHA, painted, LIMB_ALPHA, 0)
