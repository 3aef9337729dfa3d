"""Frame and mask conversions and the optical-flow helpers the metrics share."""

from __future__ import annotations

import cv2
import numpy as np

NAN = float("nan")

# ------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------


def as_frame(frame: np.ndarray) -> np.ndarray:
    """Check a frame: uint8 ``(H, W, 3)`` RGB (``(H, W)`` grey is expanded to 3 channels)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 RGB in 0-255, got dtype {frame.dtype}")
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"frames must be (H, W, 3) RGB, got shape {frame.shape}")
    return frame[:, :, :3]


def as_mask(mask: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A foreground mask as bool ``(H, W)``: bool as is, uint8 ``>= 128``, float ``>= 0.5``."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2:
        raise ValueError(f"masks must be (H, W), got shape {mask.shape}")
    if shape is not None and mask.shape != shape:
        raise ValueError(f"mask of size {mask.shape[1]}x{mask.shape[0]} for a frame of size {shape[1]}x{shape[0]}")
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        return mask >= 128
    return mask >= 0.5


def gray(frame: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` luma of an RGB frame (what DIS flow runs on)."""
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def dis_flow(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """OpenCV DIS optical flow (PRESET_MEDIUM) from grey ``src`` to grey ``dst``.

    Returns float32 ``(H, W, 2)`` (dx, dy) in pixels: pixel ``x`` of ``src`` moves to
    ``x + flow[x]`` in ``dst``.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(src, dst, None)


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward warp: ``out[x] = image[x + flow[x]]`` (bilinear); also return in-bounds mask.

    ``image`` float32 ``(H, W)`` or ``(H, W, C)``; ``flow`` float32 ``(H, W, 2)``.
    Samples outside the image are replicated from the border and flagged False.
    """
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = grid_x + flow[..., 0]
    map_y = grid_y + flow[..., 1]
    out = cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return out, inside


def fb_consistent(flow_bw: np.ndarray, flow_fw_warped: np.ndarray) -> np.ndarray:
    """Forward-backward check (Ruder et al. 2016, eq. 6; Lai et al. 2018's evaluation code).

    Visible where ``|b + f~|^2 < 0.01 (|b|^2 + |f~|^2) + 0.5``, with ``b`` the flow t+1 -> t and
    ``f~`` the flow t -> t+1 sampled at ``x + b(x)``. Returns bool ``(H, W)``.
    """
    total = flow_bw + flow_fw_warped
    sq = lambda f: f[..., 0] ** 2 + f[..., 1] ** 2  # noqa: E731
    return sq(total) < 0.01 * (sq(flow_bw) + sq(flow_fw_warped)) + 0.5


def reference_region(reference: np.ndarray, dilate: int = 9, threshold: int = 20) -> np.ndarray:
    """Foreground of a reference frame: non-black pixels (any channel > ``threshold``), dilated.

    For a rendered skeleton this is the limbs grown by ``dilate`` pixels (elliptic kernel of
    diameter ``2 * dilate + 1``); for a ground-truth RGB frame it is usually the whole frame.
    """
    region = (reference.max(axis=2) > threshold).astype(np.uint8)
    if dilate > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1))
        region = cv2.dilate(region, kernel)
    return region.astype(bool)
