"""segment.py: GrabCut finds a known figure, SAM runs end to end, the registry, latent pooling."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from vidtune import testing
from vidtune.errors import VidtuneError
from vidtune.poses import LIMBS, render_pose
from vidtune.segment import (
    SEGMENTERS,
    GrabCutSegmenter,
    SamSegmenter,
    Segmenter,
    latent_masks,
    make_segmenter,
    pose_seed,
)

# A standing person, COCO-18, on a 128 x 128 canvas (x, y, conf).
SKELETON = np.array(
    [
        (64, 22, 1),
        (64, 34, 1),
        (52, 36, 1),
        (46, 54, 1),
        (42, 70, 1),
        (76, 36, 1),
        (84, 52, 1),
        (92, 66, 1),
        (56, 72, 1),
        (54, 92, 1),
        (52, 112, 1),
        (72, 72, 1),
        (76, 92, 1),
        (80, 112, 1),
        (61, 20, 1),
        (67, 20, 1),
        (58, 22, 1),
        (70, 22, 1),
    ],
    dtype=np.float32,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, busy CPU they spin (50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_frame(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red-orange figure (capsules along SKELETON, filled torso, head disc) on a textured green/blue
    background. Returns (image, true mask, keypoints) at ``size`` px."""
    s = size / 128
    kp = SKELETON.copy()
    kp[:, :2] *= s
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    bg = np.stack(
        [30 + 20 * np.sin(xx / (5 * s)), 110 + 40 * np.sin((xx + yy) / (9 * s)), 90 + 50 * (yy / size)], axis=-1
    )
    bg += rng.normal(0, 12, bg.shape)
    mask = np.zeros((size, size), np.uint8)
    pts = np.round(kp[:, :2]).astype(np.int32)
    for a, b in LIMBS[:12]:  # body limbs (the head is a disc)
        cv2.line(mask, tuple(map(int, pts[a])), tuple(map(int, pts[b])), 1, thickness=max(2, round(9 * s)))
    cv2.fillPoly(mask, [pts[[2, 8, 11, 5]]], 1)
    cv2.circle(mask, tuple(map(int, pts[0])), round(9 * s), 1, thickness=-1)
    fg = np.stack([200 + 30 * np.sin(yy / (4 * s)), 70 + 30 * np.cos(xx / (6 * s)), 40 + 0 * xx], axis=-1)
    fg += rng.normal(0, 10, fg.shape)
    image = np.where(mask[..., None] > 0, fg, bg).clip(0, 255).astype(np.uint8)
    return image, mask.astype(bool), kp


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))


# ------------------------------------------------------------------ GrabCut


def test_grabcut_finds_the_figure_from_keypoints() -> None:
    image, truth, kp = synthetic_frame()
    mask = GrabCutSegmenter().segment(image, kp)
    assert mask.shape == truth.shape and mask.dtype == np.float32
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert iou(mask, truth) > 0.7
    # GrabCut does the work: the skeleton seed alone covers the figure much worse, the box much too much.
    assert iou(mask, truth) > iou(pose_seed(truth.shape, kp, None), truth) + 0.2
    assert mask.mean() < 1.5 * truth.mean()


def test_grabcut_downscaled_path_on_a_large_frame() -> None:
    image, truth, kp = synthetic_frame(512, seed=1)
    mask = GrabCutSegmenter(max_side=256).segment(image, kp)
    assert mask.shape == (512, 512)
    assert iou(mask, truth) > 0.7


def test_grabcut_from_pose_image_without_keypoints() -> None:
    image, truth, kp = synthetic_frame(seed=2)
    pose = render_pose(kp, 128, 128)
    mask = GrabCutSegmenter().segment(image, None, pose_image=pose)
    assert iou(mask, truth) > 0.7


def test_no_pose_means_no_foreground() -> None:
    image, _, kp = synthetic_frame()
    missing = kp.copy()
    missing[:, 2] = 0
    seg = GrabCutSegmenter()
    assert not seg.segment(image, missing).any()
    assert not seg.segment(image, None).any()
    assert not seg.segment(image, None, pose_image=np.zeros_like(image)).any()


def test_grabcut_rejects_bad_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        GrabCutSegmenter().segment(np.zeros((8, 8, 3), np.float32), SKELETON)


# ------------------------------------------------------------------ SAM (tiny random model)


@pytest.fixture(scope="module")
def tiny_sam() -> SimpleNamespace:
    model, processor = testing.tiny_sam(seed=0)
    return SimpleNamespace(sam_model=model, sam_processor=processor, device=torch.device("cpu"))


def test_sam_runs_end_to_end_on_tiny_model(tiny_sam: SimpleNamespace) -> None:
    seg = make_segmenter("auto", tiny_sam)
    assert isinstance(seg, SamSegmenter) and seg.name == "sam" and isinstance(seg, Segmenter)
    image, _, kp = synthetic_frame(96)
    image = image[:, :80]  # not square: post-processing must undo the resize and the padding
    mask = seg.segment(image, kp)
    assert mask.shape == (96, 80) and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() <= 1
    pose_mask = seg.segment(image, None, pose_image=render_pose(kp, 96, 80))
    assert pose_mask.shape == (96, 80)
    assert not seg.segment(image, None).any()


def test_sam_prompts_are_the_confident_joints_and_their_box(tiny_sam: SimpleNamespace) -> None:
    seg = SamSegmenter(tiny_sam.sam_model, tiny_sam.sam_processor, box_margin=0.1)
    kp = SKELETON.copy()
    kp[4, 2] = 0  # right wrist missing
    points, box = seg.prompts(128, 128, kp, None)
    assert len(points) == 17 and [42.0, 70.0] not in points
    xs, ys = kp[kp[:, 2] > 0, 0], kp[kp[:, 2] > 0, 1]
    assert box[0] < xs.min() and box[1] < ys.min() and box[2] > xs.max() and box[3] > ys.max()
    assert 0 <= box[0] and box[2] <= 127 and box[3] <= 127


# ------------------------------------------------------------------ registry


def test_make_segmenter_registry() -> None:
    assert set(SEGMENTERS) == {"sam", "grabcut"}
    assert make_segmenter("auto", None).name == "grabcut"
    no_sam = SimpleNamespace(sam_model=None, sam_processor=None, device=torch.device("cpu"))
    assert make_segmenter("auto", no_sam).name == "grabcut"
    assert make_segmenter("GrabCut", no_sam).name == "grabcut"
    with pytest.raises(VidtuneError, match="facebook/sam-vit-base"):
        make_segmenter("sam", no_sam)
    with pytest.raises(VidtuneError, match="grabcut"):
        make_segmenter("deeplab", no_sam)


# ------------------------------------------------------------------ latent masks


def test_latent_masks_all_ones_and_shape() -> None:
    out = latent_masks(torch.ones(3, 32, 48), 8)
    assert out.shape == (3, 1, 4, 6)
    assert torch.equal(out, torch.ones_like(out))


def test_latent_masks_preserve_mean_and_are_soft_at_edges() -> None:
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(2, 16, 24, generator=g) > 0.5).float()
    out = latent_masks(masks, 4)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), masks.mean(dim=(1, 2)))
    half = torch.zeros(1, 8, 8)
    half[:, :, :2] = 1  # covers half of the first 4x4 block column
    pooled = latent_masks(half, 4)
    assert torch.equal(pooled[0, 0], torch.tensor([[0.5, 0.0], [0.5, 0.0]]))


def test_latent_masks_reject_indivisible_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        latent_masks(torch.ones(1, 30, 32), 8)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        latent_masks(torch.ones(30, 32), 8)
