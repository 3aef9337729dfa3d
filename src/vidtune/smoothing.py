"""Temporal smoothing of keypoint tracks: the One-Euro filter (Casiez, Roussel, Vogel, CHI 2012).

Detector jitter of a few pixels per frame becomes flicker in the generated video (the pose map
moves, so the picture moves). The One-Euro filter is an adaptive low-pass filter: a low cutoff
while a joint is still (jitter removed), a higher one while it moves fast (little lag). Pure
functions of arrays; no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OneEuroParams:
    """The filter's three knobs (paper §3). Cutoffs in Hz, so they scale with the frame rate.

    min_cutoff: the cutoff of a still joint; lower = smoother, more lag on slow motion.
    beta: how fast the cutoff rises with the joint's speed (per px/s); higher = less lag on
        fast motion, more jitter kept.
    d_cutoff: the cutoff of the speed estimate itself.
    """

    min_cutoff: float = 1.0
    beta: float = 0.02
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(f"One-Euro needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got {self}")


def smoothing_factor(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
    """The exponential smoothing factor alpha of a first-order low-pass at `cutoff` Hz (eq. 4)."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(track: np.ndarray, fps: float, params: OneEuroParams = OneEuroParams()) -> np.ndarray:
    """Filter every joint's (x, y) through time with the One-Euro filter (eq. 5-6).

    Args:
        track: ``(N, J, 3)`` ``(x, y, conf)`` in pixels; conf 0 = missing.
        fps: frames per second (dt = 1 / fps).
        params: the filter's knobs.

    Returns:
        ``(N, J, 3)`` float32: x, y filtered, conf unchanged. A missing joint stays missing and
        restarts the filter where it reappears (no smoothing across a gap, which would drag the
        joint from where it was last seen).
    """
    kp = np.asarray(track, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"one_euro expects (N, J, 3) keypoints, got {kp.shape}")
    if fps <= 0:
        raise ValueError(f"one_euro needs fps > 0, got {fps}")
    dt = 1.0 / fps
    out = kp.copy()
    n, joints = kp.shape[:2]
    x_hat = np.zeros((joints, 2))  # filtered position of the previous frame
    dx_hat = np.zeros((joints, 2))  # filtered speed (px/s) of the previous frame
    alive = np.zeros(joints, dtype=bool)  # the joint was present in the previous frame
    a_d = smoothing_factor(params.d_cutoff, dt)
    for t in range(n):
        present = kp[t, :, 2] > 0
        x = kp[t, :, :2]
        cont = present & alive
        dx = np.where(cont[:, None], (x - x_hat) / dt, 0.0)
        dx_hat = np.where(cont[:, None], a_d * dx + (1 - a_d) * dx_hat, 0.0)
        speed = np.linalg.norm(dx_hat, axis=1)
        a = smoothing_factor(params.min_cutoff + params.beta * speed, dt)[:, None]
        x_hat = np.where(cont[:, None], a * x + (1 - a) * x_hat, x)
        out[t, present, :2] = x_hat[present]
        alive = present
    return out.astype(np.float32)
