"""Foreground masks of generated frames, prompted by the frame's pose.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.segment`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vidtune.errors import VidtuneError
from vidtune.poses import LIMBS, NUM_KEYPOINTS

# COCO-18 torso corners in polygon order: RShoulder, RHip, LHip, LShoulder.
_TORSO = (2, 8, 11, 5)


@runtime_checkable
class Segmenter(Protocol):
    """``segment(image, keypoints, pose_image=...) -> mask``; ``name`` says which one ran."""

    name: str

    def segment(
        self, image: np.ndarray, keypoints: np.ndarray | None = None, *, pose_image: np.ndarray | None = None
    ) -> np.ndarray:
        """Foreground mask of one frame.

        Args:
            image: (H, W, 3) uint8 RGB frame.
            keypoints: (18, 3) COCO-18 ``(x, y, conf)`` in pixels of ``image``; conf <= 0 = missing.
                None when the poses came as images.
            pose_image: (H, W, 3) uint8 rendered pose (skeleton on black), used when ``keypoints`` is None.

        Returns:
            (H, W) float32 in [0, 1], 1 = foreground. All zeros when the frame has no pose (no person).
        """
        ...


# --------------------------------------------------------------------------------------------
# Pose geometry
# --------------------------------------------------------------------------------------------


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return image


def confident_joints(keypoints: np.ndarray, height: int, width: int, threshold: float = 0.0) -> np.ndarray:
    """Boolean (18,): joints with conf > ``threshold``, finite and inside the ``width x height`` image."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"expected keypoints of shape (18, 3), got {kp.shape}")
    finite = np.isfinite(kp).all(axis=1)
    x, y, c = np.nan_to_num(kp).T
    return finite & (c > threshold) & (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)


def skeleton_mask(keypoints: np.ndarray, height: int, width: int, thickness: int, threshold: float = 0.0) -> np.ndarray:
    """(H, W) bool: the limbs drawn ``thickness`` px wide, the joints as discs, the torso filled
    (shrunk to 70% around its centre, so it stays inside the body)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    ok = confident_joints(kp, height, width, threshold)
    canvas = np.zeros((height, width), np.uint8)
    pts = np.round(np.nan_to_num(kp[:, :2])).astype(np.int32)
    for a, b in LIMBS:
        if ok[a] and ok[b]:
            cv2.line(canvas, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, thickness=thickness)
    for i in np.nonzero(ok)[0]:
        cv2.circle(canvas, tuple(map(int, pts[i])), max(1, thickness // 2), 1, thickness=-1)
    if all(ok[i] for i in _TORSO):
        corners = kp[list(_TORSO), :2]
        centre = corners.mean(axis=0)
        shrunk = np.round(centre + 0.7 * (corners - centre)).astype(np.int32)
        cv2.fillPoly(canvas, [shrunk], 1)
    return canvas.astype(bool)


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) inclusive around the true pixels of ``mask``."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if len(rows) == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def _grow(box: tuple[float, float, float, float], margin: float, height: int, width: int) -> tuple[int, int, int, int]:
    """The box grown by ``margin`` x its larger side (at least 2 px) on every side, clipped to the image."""
    x0, y0, x1, y1 = box
    pad = max(2.0, margin * max(x1 - x0, y1 - y0))
    return (
        int(max(0, np.floor(x0 - pad))),
        int(max(0, np.floor(y0 - pad))),
        int(min(width - 1, np.ceil(x1 + pad))),
        int(min(height - 1, np.ceil(y1 + pad))),
    )


def pose_seed(
    image_shape: tuple[int, int], keypoints: np.ndarray | None, pose_image: np.ndarray | None, threshold: float = 0.0
) -> np.ndarray | None:
    """(H, W) bool sure-foreground seed: the thick skeleton from keypoints, else the lit pixels of the
    pose image eroded by 3 px; None if there is no pose. Limb thickness is 4% of the skeleton's
    larger side (>= 2 px)."""
    height, width = image_shape
    if keypoints is not None:
        ok = confident_joints(keypoints, height, width, threshold)
        if not ok.any():
            return None
        xy = np.asarray(keypoints, dtype=np.float64)[ok, :2]
        extent = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1]), 1.0))
        return skeleton_mask(keypoints, height, width, max(2, int(round(0.04 * extent))), threshold)
    if pose_image is not None:
        pose = np.asarray(pose_image)
        if pose.shape[:2] != (height, width):
            pose = cv2.resize(pose, (width, height), interpolation=cv2.INTER_NEAREST)
        lit = ((pose.max(axis=-1) if pose.ndim == 3 else pose) > 32).astype(np.uint8)
        if not lit.any():
            return None
        # draw_bodypose sticks are ~9 px wide whatever the figure's size: keep their centre lines.
        core = cv2.erode(lit, np.ones((3, 3), np.uint8), iterations=3)
        return (core if core.any() else lit).astype(bool)
    return None


# --------------------------------------------------------------------------------------------
# GrabCut (weight-free)
# --------------------------------------------------------------------------------------------


class GrabCutSegmenter:
    """OpenCV GrabCut seeded by the pose (weight-free fallback).

    Initial labels: sure background = an image border ``border`` x the shorter side wide; probable
    foreground = the seed's box grown by ``box_margin``; probable background elsewhere; sure
    foreground = the seed (the skeleton drawn thick, or the lit pixels of a pose image), which wins
    over the border. After GrabCut only the connected parts touching the seed are kept. Frames
    larger than ``max_side`` are segmented downscaled (GrabCut is O(pixels x iterations)) and the
    mask resized back. Returns a 0/1 mask.
    """

    name: ClassVar[str] = "grabcut"

    def __init__(
        self,
        iterations: int = 5,
        box_margin: float = 0.15,
        border: float = 0.02,
        max_side: int = 384,
        threshold: float = 0.0,
    ) -> None:
        self.iterations = iterations
        self.box_margin = box_margin
        self.border = border
        self.max_side = max_side
        self.threshold = threshold
        # GrabCut's GMM initialisation (k-means) draws from OpenCV's process-wide RNG: start every
        # segmenter from its default state, so a run's masks do not depend on what ran before it in
        # the process (a second run in a notebook, the app or a test gave other masks).
        cv2.setRNGSeed(0)

    @classmethod
    def from_components(cls, components: Any | None = None) -> GrabCutSegmenter:
        return cls()

    def segment(
        self, image: np.ndarray, keypoints: np.ndarray | None = None, *, pose_image: np.ndarray | None = None
    ) -> np.ndarray:
        image = _check_image(image)
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        kp = None
        if keypoints is not None:
            kp = np.array(keypoints, dtype=np.float64)
            kp[:, :2] *= scale
        small = image
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        seed = pose_seed(small.shape[:2], kp, pose_image, self.threshold)
        if seed is None:
            return np.zeros((height, width), np.float32)
        mask = self._grabcut(small, seed)
        if scale < 1.0:
            mask = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
        return mask.astype(np.float32)

    def _grabcut(self, image: np.ndarray, seed: np.ndarray) -> np.ndarray:
        height, width = seed.shape
        labels = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
        x0, y0, x1, y1 = _grow(_box(seed), self.box_margin, height, width)
        labels[y0 : y1 + 1, x0 : x1 + 1] = cv2.GC_PR_FGD
        b = max(1, int(round(self.border * min(height, width))))
        labels[:b], labels[-b:], labels[:, :b], labels[:, -b:] = (cv2.GC_BGD,) * 4
        labels[seed] = cv2.GC_FGD
        if not np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).any():
            return seed  # the seed fills the frame: nothing to separate
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(image[..., ::-1])
        cv2.grabCut(bgr, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        return _keep_touching(fg, seed)


def _keep_touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The connected components (8-connectivity) of ``mask`` that overlap ``seed``."""
    n, comp = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    keep = np.unique(comp[seed & mask])
    keep = keep[keep > 0]
    return np.isin(comp, keep)


# --------------------------------------------------------------------------------------------
# SAM
# --------------------------------------------------------------------------------------------


class SamSegmenter:
    """Segment Anything prompted by the pose: the confident joints as positive points and the
    skeleton's box grown by ``box_margin`` (from a pose image: its lit pixels' box only). Of SAM's
    multimask outputs the one with the highest predicted IoU is taken, upsampled to the image size
    by the processor's ``post_process_masks`` and thresholded at SAM's logit 0. Returns a 0/1 mask."""

    name: ClassVar[str] = "sam"

    def __init__(
        self,
        model: Any,
        processor: Any,
        device: str | torch.device | None = None,
        box_margin: float = 0.1,
        threshold: float = 0.0,
    ) -> None:
        self.model = model
        self.processor = processor
        param = next(model.parameters())
        self.device = torch.device(device) if device is not None else param.device
        self.dtype = param.dtype
        self.box_margin = box_margin
        self.threshold = threshold

    @classmethod
    def from_components(cls, components: Any | None) -> SamSegmenter:
        if components is None or getattr(components, "sam_model", None) is None:
            from vidtune.models import download_command

            raise VidtuneError(
                "segmenter 'sam' needs a SAM model: set model.sam = \"facebook/sam-vit-base\" "
                f"(download: `{download_command('facebook/sam-vit-base')}`) "
                'or use segmenter = "grabcut"'
            )
        return cls(components.sam_model, components.sam_processor, components.device)

    def prompts(
        self, height: int, width: int, keypoints: np.ndarray | None, pose_image: np.ndarray | None
    ) -> tuple[list[list[float]], list[float]] | None:
        """(positive points [[x, y], ...], box [x0, y0, x1, y1]) in image pixels, or None without a pose."""
        if keypoints is not None:
            ok = confident_joints(keypoints, height, width, self.threshold)
            if not ok.any():
                return None
            xy = np.asarray(keypoints, dtype=np.float64)[ok, :2]
            box = (xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max())
            return xy.tolist(), list(map(float, _grow(box, self.box_margin, height, width)))
        seed = pose_seed((height, width), None, pose_image)
        if seed is None:
            return None
        return [], list(map(float, _grow(_box(seed), self.box_margin, height, width)))

    @torch.no_grad()
    def segment(
        self, image: np.ndarray, keypoints: np.ndarray | None = None, *, pose_image: np.ndarray | None = None
    ) -> np.ndarray:
        image = _check_image(image)
        height, width = image.shape[:2]
        prompt = self.prompts(height, width, keypoints, pose_image)
        if prompt is None:
            return np.zeros((height, width), np.float32)
        points, box = prompt
        kwargs: dict[str, Any] = {"input_boxes": [[box]]}
        if points:
            kwargs.update(input_points=[[points]], input_labels=[[[1] * len(points)]])
        inputs = self.processor(images=image, return_tensors="pt", **kwargs)
        model_inputs = {
            k: inputs[k].to(self.device, self.dtype if inputs[k].is_floating_point() else inputs[k].dtype)
            for k in ("pixel_values", "input_points", "input_labels", "input_boxes")
            if k in inputs
        }
        out = self.model(**model_inputs, multimask_output=True)
        best = int(out.iou_scores[0, 0].float().argmax())
        logits = out.pred_masks[:, :, best : best + 1].float().cpu()  # (1, 1, 1, h, w)
        masks = self.processor.post_process_masks(
            logits, inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False
        )
        return (masks[0][0, 0] > 0).numpy().astype(np.float32)


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

SEGMENTERS: dict[str, type] = {"sam": SamSegmenter, "grabcut": GrabCutSegmenter}
"""Segmenter classes by config name; each has ``from_components(components) -> Segmenter``."""


def make_segmenter(name: str, components: Any | None = None) -> Segmenter:
    """The segmenter ``name`` ("sam", "grabcut", or "auto" = sam when a SAM model is loaded, else grabcut)."""
    key = name.lower()
    if key == "auto":
        key = "sam" if components is not None and getattr(components, "sam_model", None) is not None else "grabcut"
    if key not in SEGMENTERS:
        raise VidtuneError(f"unknown segmenter {name!r}: choose one of auto, {', '.join(SEGMENTERS)}")
    return SEGMENTERS[key].from_components(components)


def latent_masks(masks: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-pool pixel masks to the latent grid: (N, H, W) -> (N, 1, H/f, W/f), soft at edges.

    Each latent pixel is the mean of its f x f pixel block, so the mean over the image is kept.
    """
    if masks.ndim != 3:
        raise ValueError(f"expected masks of shape (N, H, W), got {tuple(masks.shape)}")
    height, width = masks.shape[-2:]
    if factor < 1 or height % factor or width % factor:
        raise ValueError(f"mask size {height}x{width} is not divisible by the latent factor {factor}")
    return F.avg_pool2d(masks[:, None].float(), kernel_size=factor)
