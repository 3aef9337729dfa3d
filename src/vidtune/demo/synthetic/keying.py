"""Colour keying of the synthetic world's frames: hue, saturation and value, and the mask of one figure
colour. The scenes use muted colours and the figures saturated hues the scenes never use, which is what
makes keying work; `adherence` and `readout` judge generated frames with it."""

from __future__ import annotations

import cv2
import numpy as np

from vidtune.demo.synthetic.grammar import COLOURS, FIGURE_COLOURS

HUE_TOLERANCE = 22.0  # degrees
MIN_SATURATION = 0.62
MIN_VALUE = 0.22


def hsv(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1]."""
    hsv = cv2.cvtColor(np.ascontiguousarray(frame, dtype=np.uint8), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    return hsv[..., 0] * (360.0 / 256.0), hsv[..., 1] / 255.0, hsv[..., 2] / 255.0


def _hue_of(rgb: tuple[int, int, int]) -> float:
    return float(hsv(np.array([[rgb]], np.uint8))[0][0, 0])


PALETTE_HUES: dict[str, float] = {name: _hue_of(rgb) for name, rgb in FIGURE_COLOURS.items()}


def hue_distance(h: np.ndarray, ref: float) -> np.ndarray:
    d = np.abs(h - ref) % 360.0
    return np.minimum(d, 360.0 - d)


def keyed_figure_mask(frame: np.ndarray, colour: str) -> np.ndarray:
    """Bool (H, W): pixels of the figure colour's hue, saturated and not too dark (shirt,
    sleeves and trousers; the scenes never use these saturated hues)."""
    if colour not in FIGURE_COLOURS:
        raise ValueError(f"unknown figure colour {colour!r}; choose one of {', '.join(COLOURS)}")
    h, s, v = hsv(frame)
    return (hue_distance(h, PALETTE_HUES[colour]) <= HUE_TOLERANCE) & (s >= MIN_SATURATION) & (v >= MIN_VALUE)
