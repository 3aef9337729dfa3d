"""Pose extraction from RGB footage (MediaPipe, offline), the BODY_25 / COCO-18 mapping, One-Euro smoothing.

The footage is a real photograph that ships in a registry package (scikit-image's astronaut, Eileen
Collins), translated frame by frame on a larger black canvas, then two frames without anyone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="mediapipe not installed: pip install 'vidtune[pose]' to test pose extraction")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image not installed (it ships the test photograph)")

from vidtune import cli, pose_extract, poses  # noqa: E402
from vidtune.config import InputConfig  # noqa: E402
from vidtune.errors import VidtuneError  # noqa: E402
from vidtune.smoothing import OneEuroParams, one_euro  # noqa: E402

# In the 512x512 photograph: nose, right shoulder (image left), left shoulder.
NOSE, R_SHOULDER, L_SHOULDER = (223.0, 128.0), (113.0, 240.0), (306.0, 257.0)
SHIFTS = [(4 * i, 2 * i) for i in range(10)]  # (dx, dy) per frame: the person moves right and down
EMPTY_FRAMES = 2
TOLERANCE_PX = 25.0


def translate(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The image moved by (dx, dy) >= 0 inside its own frame, black where it moved away."""
    out = np.zeros_like(image)
    out[dy:, dx:] = image[: image.shape[0] - dy, : image.shape[1] - dx]
    return out


def astronaut_frames() -> np.ndarray:
    """(N, 512, 512, 3): the photograph translated a little more each frame, then frames with nobody.

    The translation stays inside the 512x512 frame: the positions above are MediaPipe's on that
    frame, and the landmark model's answer depends on the frame's geometry (pasted at the corner of
    a 576x544 black canvas, its shoulders move by up to 52 px).
    """
    photo = skimage_data.astronaut()
    frames = [translate(photo, dx, dy) for dx, dy in SHIFTS]
    frames += [np.full_like(photo, 40)] * EMPTY_FRAMES
    return np.stack(frames)


@pytest.fixture(scope="module")
def astronaut_video(tmp_path_factory) -> Path:
    from vidtune.video import write_video

    return write_video(tmp_path_factory.mktemp("astro") / "astronaut.mp4", astronaut_frames(), fps=8.0, quality=9)


@pytest.fixture(scope="module")
def extracted(astronaut_video, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extract") / "json"
    assert cli.main(["poses", "extract", str(astronaut_video), str(out), "--format", "body25"]) == 0
    return out


def _frames(folder: Path) -> list[dict]:
    files = sorted(folder.glob("*_keypoints.json"))
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.slow
def test_extract_writes_openpose_body25_that_follows_the_translation(extracted):
    records = _frames(extracted)
    assert len(records) == len(SHIFTS) + EMPTY_FRAMES
    errors = []
    for record, (dx, dy) in zip(records, SHIFTS):
        assert len(record["people"]) == 1
        kp = np.asarray(record["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
        for joint, (x, y) in ((0, NOSE), (2, R_SHOULDER), (5, L_SHOULDER)):
            assert kp[joint, 2] > 0.5
            errors.append(float(np.hypot(kp[joint, 0] - (x + dx), kp[joint, 1] - (y + dy))))
        neck = kp[1, :2]
        assert np.allclose(neck, (kp[2, :2] + kp[5, :2]) / 2, atol=0.01)  # neck = shoulders' midpoint
    assert max(errors) < TOLERANCE_PX, f"keypoint errors {np.round(errors, 1)} px"
    for record in records[len(SHIFTS) :]:
        assert record["people"] == []  # as OpenPose writes a frame with nobody


def test_extracted_json_loads_as_a_pose_source(extracted):
    seq = poses.load_poses(extracted, canvas=(512, 512))
    assert seq.format == "BODY_25" and seq.num_frames == len(SHIFTS) + EMPTY_FRAMES
    assert seq.filled_frames == tuple(range(len(SHIFTS), len(SHIFTS) + EMPTY_FRAMES))
    meta = json.loads((extracted / "source.json").read_text())
    assert (meta["width"], meta["height"]) == (512, 512)


@pytest.mark.slow
def test_coco18_and_smoothing_from_the_command_line(astronaut_video, extracted, tmp_path):
    out = tmp_path / "coco"
    assert cli.main(["poses", "extract", str(astronaut_video), str(out), "--format", "coco18", "--smooth"]) == 0
    smooth = _frames(out)
    raw = _frames(extracted)
    kp = np.asarray(smooth[0]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    body = np.asarray(raw[0]["people"][0]["pose_keypoints_2d"]).reshape(25, 3)
    assert np.allclose(kp[:, :2], body[list(poses.BODY25_TO_COCO18), :2], atol=0.01)  # first frame: the filter's start
    last = np.asarray(smooth[len(SHIFTS) - 1]["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    dx, dy = SHIFTS[-1]
    assert np.hypot(last[0, 0] - NOSE[0] - dx, last[0, 1] - NOSE[1] - dy) < TOLERANCE_PX


@pytest.mark.slow
def test_run_inputs_accept_the_video_directly(astronaut_video, tmp_path):
    from vidtune import inputs

    cfg = InputConfig(poses=str(astronaut_video), prompt="an astronaut", height=64, width=64)
    result = inputs.prepare(cfg, tmp_path / "inputs")
    assert result.num_frames == len(SHIFTS) + EMPTY_FRAMES
    assert (tmp_path / "inputs" / "extracted" / "source.json").is_file()
    assert result.keypoints is not None and (result.keypoints[:, 0, 2] > 0).all()  # nose everywhere (gaps filled)
    stamp = (tmp_path / "inputs" / "extracted" / "source.json").stat().st_mtime_ns
    inputs.prepare(cfg, tmp_path / "inputs")  # a rerun reuses the extraction
    assert (tmp_path / "inputs" / "extracted" / "source.json").stat().st_mtime_ns == stamp


def test_pose_source_detection(astronaut_video, tmp_path):
    rendered = np.stack(
        [
            poses.render_pose(
                np.array([[100, 100, 1]] * 18, np.float32) + np.array([[i * 5, 0, 0] for i in range(18)], np.float32),
                256,
                256,
            )
        ]
        * 2
    )
    assert pose_extract.looks_like_pose_render(rendered)
    assert not pose_extract.looks_like_pose_render(astronaut_frames()[:2])
    assert pose_extract.is_rgb_source(astronaut_video, "auto")
    assert not pose_extract.is_rgb_source(astronaut_video, "pose")
    (tmp_path / "a_keypoints.json").write_text('{"people": []}')
    with pytest.raises(VidtuneError, match="pose_source = 'rgb'"):
        pose_extract.is_rgb_source(tmp_path, "rgb")


def test_mapping_midpoints_missing_joints_and_sides():
    lm = np.zeros((33, 3), np.float32)
    lm[:, 2] = 0.9
    lm[:, 0] = np.arange(33) * 10.0
    lm[:, 1] = 50.0
    lm[24, 2] = 0.1  # right hip barely visible -> RHip and MidHip missing
    lm[28, 0] = 999.0  # right ankle outside the frame -> missing
    out = pose_extract.landmarks_to_body25(lm, width=400, height=300)
    assert out.shape == (25, 3)
    assert np.allclose(out[1], [(110 + 120) / 2, 50, 0.9])  # neck = mid-shoulders
    assert np.allclose(out[2, :2], [120, 50]) and np.allclose(out[5, :2], [110, 50])  # RShoulder = MP right (12)
    assert out[8, 2] == 0 and out[9, 2] == 0 and out[12, 2] > 0  # MidHip, RHip missing; LHip present
    assert out[11, 2] == 0  # RAnkle outside
    assert out[20, 2] == 0 and out[23, 2] == 0  # no small toes in MediaPipe
    assert pose_extract.to_layout(out, "coco18").shape == (18, 3)


def test_one_euro_keeps_still_points_and_removes_jitter_and_restarts_after_gaps():
    rng = np.random.default_rng(0)
    n = 60
    still = np.tile(np.array([[100.0, 50.0, 1.0]], np.float32), (n, 1, 1))
    assert np.allclose(one_euro(still, 30.0), still)
    noisy = still.copy()
    noisy[:, 0, :2] += rng.normal(0, 3.0, (n, 2))
    smoothed = one_euro(noisy, 30.0, OneEuroParams(min_cutoff=1.0, beta=0.0))
    assert np.std(np.diff(smoothed[:, 0, 0])) < 0.5 * np.std(np.diff(noisy[:, 0, 0]))
    gap = noisy.copy()
    gap[30, 0] = 0
    gap[31:, 0, :2] += 200  # the joint reappears far away
    out = one_euro(gap, 30.0)
    assert out[30, 0, 2] == 0 and np.allclose(out[31, 0, :2], gap[31, 0, :2])  # no drag across the gap


def test_one_cv2_serves_vidtune_and_mediapipe():
    """opencv-python-headless (vidtune) and opencv-contrib-python (MediaPipe) share the `cv2` package."""
    import cv2
    from mediapipe.python.solutions import drawing_utils

    assert drawing_utils.cv2 is cv2
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = 200
    mask = np.full((32, 32), cv2.GC_PR_BGD, np.uint8)
    mask[10:22, 10:22] = cv2.GC_PR_FGD
    cv2.grabCut(
        image, mask, None, np.zeros((1, 65)), np.zeros((1, 65)), 1, cv2.GC_INIT_WITH_MASK
    )  # segment.py's fallback
