"""Tests for vidtune.poses: rendering to the spec, parsing real OpenPose output, tracking, filling."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidtune import poses
from vidtune.errors import VidtuneError
from vidtune.poses import (
    PoseSequence,
    frame_images,
    frame_poses,
    interpolate_missing,
    load_poses,
    parse_openpose_json,
    render_pose,
    render_sequence,
    render_to_folder,
    resample,
    track_person,
)

# ---- the spec's numbers, typed in again from openpose_render_spec.md (not imported) ----------

SPEC_COLORS = [
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
]  # fmt: skip
# 1-based pairs as in the source; the first 17 are drawn
SPEC_LIMBS_1BASED = [
    [2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12],
    [12, 13], [13, 14], [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18],
]  # fmt: skip
SPEC_BODY25_TO_COCO = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]

OPENPOSE = Path("data") / "openpose"


def reference_draw(people: np.ndarray, h: int, w: int) -> np.ndarray:
    """The spec's procedure, literally: whole-canvas copy + addWeighted per limb."""
    canvas = np.zeros((h, w, 3), np.uint8)
    for i in range(18):
        for p in people:
            if p[i, 2] > 0:
                cv2.circle(canvas, (int(p[i, 0]), int(p[i, 1])), 4, SPEC_COLORS[i], thickness=-1)
    for j in range(17):
        a, b = SPEC_LIMBS_1BASED[j][0] - 1, SPEC_LIMBS_1BASED[j][1] - 1
        for p in people:
            if p[a, 2] <= 0 or p[b, 2] <= 0:
                continue
            cur = canvas.copy()
            mx, my = (p[a, 0] + p[b, 0]) / 2, (p[a, 1] + p[b, 1]) / 2
            length = math.sqrt((p[a, 0] - p[b, 0]) ** 2 + (p[a, 1] - p[b, 1]) ** 2)
            angle = math.degrees(math.atan2(p[a, 1] - p[b, 1], p[a, 0] - p[b, 0]))
            poly = cv2.ellipse2Poly((int(mx), int(my)), (int(length / 2), 4), int(angle), 0, 360, 1)
            cv2.fillConvexPoly(cur, poly, SPEC_COLORS[j])
            canvas = cv2.addWeighted(canvas, 0.4, cur, 0.6, 0)
    return canvas


def pose_with(joints: dict[int, tuple[float, float]], conf: float = 0.9) -> np.ndarray:
    kp = np.zeros((18, 3), np.float32)
    for j, (x, y) in joints.items():
        kp[j] = (x, y, conf)
    return kp


# ---- rendering -------------------------------------------------------------------------------


def test_constants_match_spec():
    assert list(poses.COLORS) == SPEC_COLORS
    assert [list(p) for p in poses.LIMBS] == [[a - 1, b - 1] for a, b in SPEC_LIMBS_1BASED[:17]]
    assert list(poses.BODY25_TO_COCO18) == SPEC_BODY25_TO_COCO
    assert len(poses.KEYPOINT_NAMES) == 18 and poses.KEYPOINT_NAMES[8] == "RHip" and poses.KEYPOINT_NAMES[17] == "LEar"


def test_limb0_midpoint_and_tips():
    # Neck (1) at (20, 32), RShoulder (2) at (60, 32): limb 0 in colour 0.
    img = render_pose(pose_with({1: (20, 32), 2: (60, 32)}), 64, 96)
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8
    assert tuple(img[32, 40]) == (153, 0, 0)  # 0.6 * (255, 0, 0) on black
    assert tuple(img[32, 63]) == (255, 170, 0)  # RShoulder tip outside the ellipse: full colour 2
    assert tuple(img[32, 17]) == (255, 85, 0)  # Neck tip: full colour 1
    # inside both the circle and the ellipse: 0.4 * joint + 0.6 * limb
    assert tuple(img[32, 58]) == (255, 68, 0)
    # thickness: semi-minor axis 4 -> rows 28..36 painted at the midpoint, 27 / 37 black
    column = img[:, 40, 0]
    assert column[28] == 153 and column[36] == 153 and column[27] == 0 and column[37] == 0
    assert img[:10].max() == 0 and img[:, 70:].max() == 0  # nothing else drawn


@pytest.mark.parametrize("j", range(17))
def test_each_limb_colour_at_midpoint(j):
    a, b = SPEC_LIMBS_1BASED[j][0] - 1, SPEC_LIMBS_1BASED[j][1] - 1
    img = render_pose(pose_with({a: (16.0, 20.0), b: (76.0, 50.0)}), 72, 96)
    expected = tuple(int(round(0.6 * c)) for c in SPEC_COLORS[j])
    assert tuple(img[35, 46]) == expected
    assert tuple(img[20, 12]) == SPEC_COLORS[a]  # tip beyond the ellipse end: full joint colour
    assert tuple(img[50, 80]) == SPEC_COLORS[b]


def test_missing_joint_and_its_limbs_not_drawn():
    full = pose_with({1: (20, 32), 2: (60, 32), 3: (60, 60)})
    missing = full.copy()
    missing[2, 2] = 0.0  # RShoulder missing: it and limbs 0 (Neck-RShoulder) and 2 (RShoulder-RElbow) vanish
    img = render_pose(missing, 72, 96)
    assert img[32, 40].max() == 0 and img[32, 60].max() == 0 and img[46, 60].max() == 0
    assert tuple(img[32, 20]) == SPEC_COLORS[1] and tuple(img[60, 60]) == SPEC_COLORS[3]
    assert render_pose(np.zeros((18, 3)), 16, 16).max() == 0


def test_matches_spec_procedure_on_random_people():
    rng = np.random.default_rng(0)
    for _ in range(40):
        p = int(rng.integers(1, 4))
        kp = np.zeros((p, 18, 3))
        kp[..., 0] = rng.uniform(-30, 130, (p, 18))
        kp[..., 1] = rng.uniform(-30, 100, (p, 18))
        kp[..., 2] = (rng.uniform(size=(p, 18)) > 0.25) * rng.uniform(0.1, 1, (p, 18))
        np.testing.assert_array_equal(render_pose(kp, 72, 100), reference_draw(kp, 72, 100))


def test_coordinates_truncate_like_int():
    a = render_pose(pose_with({4: (10.9, 12.99)}), 32, 32)
    b = render_pose(pose_with({4: (10.0, 12.0)}), 32, 32)
    np.testing.assert_array_equal(a, b)
    assert tuple(a[12, 10]) == SPEC_COLORS[4]


def test_render_rejects_bad_shape():
    with pytest.raises(ValueError, match="18, 3"):
        render_pose(np.zeros((17, 3)), 8, 8)


# ---- parsing, tracking, filling: synthetic -------------------------------------------------


def write_frames_json(folder: Path, frames: list[list[list[float]]], prefix: str = "clip_") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t, people in enumerate(frames):
        data = {
            "version": 1.3,
            "people": [{"person_id": [-1], "pose_keypoints_2d": list(map(float, p))} for p in people],
        }
        (folder / f"{prefix}{t:012d}_keypoints.json").write_text(json.dumps(data))
    return folder


def body25(x0: float, y0: float, size: float = 100.0, conf: float = 0.8) -> list[float]:
    """A plausible BODY_25 person whose joints spread over a size x size box at (x0, y0)."""
    rng = np.random.default_rng(int(x0 * 7 + y0))
    pts = np.stack([x0 + rng.uniform(0, size, 25), y0 + rng.uniform(0, size, 25), np.full(25, conf)], 1)
    return pts.reshape(-1).tolist()


def test_body25_conversion_order(tmp_path):
    flat = []
    for i in range(25):
        flat += [float(i), float(100 + i), 0.5]
    f = tmp_path / "x_000000000000_keypoints.json"
    f.write_text(json.dumps({"people": [{"pose_keypoints_2d": flat}]}))
    people, n = parse_openpose_json(f)
    assert n == 25 and people.shape == (1, 18, 3) and people.dtype == np.float32
    np.testing.assert_array_equal(people[0, :, 0], SPEC_BODY25_TO_COCO)
    np.testing.assert_array_equal(people[0, :, 1], np.array(SPEC_BODY25_TO_COCO) + 100)


def test_frames_sorted_by_number_not_text(tmp_path):
    # frame numbers without zero padding: text order would put 10 before 2
    for t in (0, 1, 2, 10):
        flat = [float(t), 5.0, 0.9] * 18
        (tmp_path / f"f_{t}_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": flat}]}))
    seq = load_poses(tmp_path)
    assert seq.format == "COCO-18"
    np.testing.assert_array_equal(seq.keypoints[:, 0, 0], [0, 1, 2, 10])


def test_track_ignores_list_order_and_starts_with_largest():
    big = np.array(body25(100, 100, 200)).reshape(25, 3)[SPEC_BODY25_TO_COCO]
    small = np.array(body25(600, 100, 60)).reshape(25, 3)[SPEC_BODY25_TO_COCO]
    frames = []
    for t in range(10):
        b, s = big.copy(), small.copy()
        b[:, 0] += 5 * t
        s[:, 0] -= 5 * t
        frames.append(np.stack([b, s] if t % 2 else [s, b]).astype(np.float32))
    track = track_person(frames)
    np.testing.assert_allclose(
        track[:, :, 0] - track[0, :, 0], np.arange(10)[:, None] * 5.0 * np.ones((1, 18)), atol=1e-3
    )


def test_interpolation_linear_hold_and_never():
    n = 8
    kp = np.zeros((n, 18, 3), np.float32)
    kp[:, 0] = np.stack([np.arange(n) * 10.0, np.arange(n) * -2.0, np.full(n, 0.8)], 1)
    kp[3:6, 0, 2] = 0.0  # missing in the middle (frames 3, 4, 5), positions garbage
    kp[3:6, 0, :2] = 999.0
    kp[:, 1] = (50.0, 60.0, 0.6)
    kp[:2, 1, 2] = 0.0  # missing at the start -> held
    kp[:2, 1, :2] = 0.0
    filled, mask = interpolate_missing(kp)
    np.testing.assert_allclose(filled[3:6, 0, 0], [30, 40, 50], atol=1e-4)
    np.testing.assert_allclose(filled[3:6, 0, 1], [-6, -8, -10], atol=1e-4)
    assert np.all(filled[3:6, 0, 2] > 0) and np.all(filled[3:6, 0, 2] < 0.8)  # reduced, not zero
    np.testing.assert_allclose(filled[:2, 1, :2], [[50, 60], [50, 60]])
    assert np.all(filled[:, 2] == 0)  # never confident: stays missing
    assert mask.sum() == 5 and mask[3:6, 0].all() and mask[:2, 1].all()
    np.testing.assert_array_equal(filled[~mask], kp[~mask])  # confident values untouched


def test_empty_frames_filled_and_counted(tmp_path):
    p0, p4 = body25(100, 100), body25(140, 100)
    frames = [[], [p0], [], [], [p4], []]
    seq = load_poses(write_frames_json(tmp_path / "seq", frames), canvas=(640, 480), fps=10)
    assert seq.filled_frames == (0, 2, 3, 5)
    assert seq.interpolated_joints == 0
    assert seq.people_counts == (0, 1, 0, 0, 1, 0)
    k = seq.keypoints
    assert np.all(k[..., 2] > 0)
    np.testing.assert_allclose(k[2, :, :2], k[1, :, :2] + (k[4, :, :2] - k[1, :, :2]) / 3, atol=1e-3)
    np.testing.assert_allclose(k[0, :, :2], k[1, :, :2])  # held at the start
    assert (seq.width, seq.height, seq.fps) == (640, 480, 10)
    s = seq.summary()
    assert "6 frames" in s and "BODY_25" in s and "4 frames filled" in s and "\n" not in s
    assert s.startswith("seq/: 6 frames")  # the source, a folder, named once ("vidtune: read seq/: ...")


def test_canvas_inferred_from_extent(tmp_path):
    seq = load_poses(write_frames_json(tmp_path / "a", [[body25(1000, 500)]]))
    assert (seq.width, seq.height) == (1280, 720) and seq.canvas_inferred and "inferred" in seq.summary()


# ---- resampling and framing ------------------------------------------------------------------


def make_seq(kp: np.ndarray, w: int = 640, h: int = 480, fps: float | None = 10.0) -> PoseSequence:
    return PoseSequence(
        keypoints=kp.astype(np.float32), images=None, width=w, height=h, fps=fps, source="mem", format="COCO-18"
    )


def test_resample_double_keeps_endpoints_and_is_linear():
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 500, (5, 18, 2)), np.full((5, 18, 1), 0.9)], 2)
    seq = make_seq(kp)
    up = resample(seq, num_frames=9)
    assert up.num_frames == 9 and up.fps == pytest.approx(20.0)
    np.testing.assert_allclose(up.keypoints[0], kp[0], atol=1e-4)
    np.testing.assert_allclose(up.keypoints[-1], kp[-1], atol=1e-4)
    np.testing.assert_allclose(up.keypoints[1], (kp[0] + kp[1]) / 2, atol=1e-3)
    np.testing.assert_allclose(up.keypoints[::2], kp, atol=1e-4)
    by_fps = resample(seq, fps=20.0)
    np.testing.assert_allclose(by_fps.keypoints, up.keypoints)
    assert resample(seq, num_frames=10).num_frames == 10
    with pytest.raises(VidtuneError, match="frame rate is unknown"):
        resample(make_seq(kp, fps=None), fps=12)


def test_resample_images_nearest():
    imgs = np.arange(4, dtype=np.uint8)[:, None, None, None] * np.ones((4, 2, 2, 3), np.uint8)
    seq = PoseSequence(keypoints=None, images=imgs, width=2, height=2, fps=None, source="mem", format="images")
    out = resample(seq, num_frames=7)
    assert out.images[:, 0, 0, 0].tolist() == [0, 1, 1, 2, 2, 3, 3]  # source times 0, .5, 1, ... halves up


def test_frame_fit_letterboxes():
    kp = np.array([[[0, 0, 1.0]] * 9 + [[1920, 1080, 1.0]] * 9], np.float32)
    out = frame_poses(make_seq(kp, 1920, 1080), 512, 512, "fit")
    np.testing.assert_allclose(out[0, 0, :2], [0, 112], atol=1e-3)
    np.testing.assert_allclose(out[0, 17, :2], [512, 400], atol=1e-3)
    assert out[0, 0, 2] == 1.0


def test_frame_person_crops_around_joints():
    rng = np.random.default_rng(2)
    kp = np.zeros((6, 18, 3), np.float32)
    kp[..., 0] = rng.uniform(900, 1000, (6, 18))  # a small person in a 1920x1080 frame
    kp[..., 1] = rng.uniform(400, 700, (6, 18))
    kp[..., 2] = 0.9
    kp[0, 3] = (5000.0, 5000.0, 0.0)  # missing joint: ignored by the box
    out = frame_poses(make_seq(kp, 1920, 1080), 512, 384, "person")
    present = out[..., 2] > 0
    xs, ys = out[..., 0][present], out[..., 1][present]
    assert xs.min() >= 0 and xs.max() <= 384 and ys.min() >= 0 and ys.max() <= 512
    # the tall person fills most of the height (margin 10% of its size on each side)
    assert ys.max() - ys.min() > 0.75 * 512
    # uniform scale: aspect of the joint cloud preserved
    src = kp[..., :2][kp[..., 2] > 0]
    s = (xs.max() - xs.min()) / np.ptp(src[:, 0])
    assert s == pytest.approx((ys.max() - ys.min()) / np.ptp(src[:, 1]), rel=1e-4)
    # the fit framing would make it tiny
    fit = frame_poses(make_seq(kp, 1920, 1080), 512, 384, "fit")
    assert np.ptp(fit[..., 1][present]) < 0.3 * 512


def test_frame_images_fit_and_person():
    imgs = np.zeros((2, 100, 200, 3), np.uint8)
    imgs[:, 40:60, 90:110] = 255  # a bright square in the middle
    seq = PoseSequence(keypoints=None, images=imgs, width=200, height=100, fps=None, source="mem", format="images")
    fit = frame_images(seq, 200, 200, "fit")  # 200x100 -> letterbox, rows 50..150
    assert fit.shape == (2, 200, 200, 3)
    assert fit[0, :45].max() == 0 and fit[0, 155:].max() == 0 and fit[0, 100, 100].min() == 255
    person = frame_images(seq, 100, 100, "person")
    lit = np.argwhere(person[0, :, :, 0] > 128)
    assert lit.min(0).tolist()[0] < 20 and lit.max(0).tolist()[0] > 80  # the square fills the view
    with pytest.raises(VidtuneError, match="framing"):
        frame_images(seq, 10, 10, "zoom")


def test_render_sequence_matches_render_pose():
    kp = np.zeros((3, 18, 3), np.float32)
    kp[:, 1] = (100, 100, 0.9)
    kp[:, 2] = (300, 100, 0.9)
    seq = make_seq(kp, 400, 200)
    out = render_sequence(seq, 100, 200, "fit")
    assert out.shape == (3, 100, 200, 3)
    np.testing.assert_array_equal(out[1], render_pose(frame_poses(seq, 100, 200)[1], 100, 200))
    assert tuple(out[0, 50, 100]) == (153, 0, 0)


def test_render_to_folder(tmp_path):
    src = write_frames_json(tmp_path / "json", [[body25(100, 100)], [body25(120, 100)], []])
    out = tmp_path / "render"
    summary = render_to_folder(str(src), str(out), height=64, width=96, num_frames=5)
    assert "3 frames" not in summary or "resampled" in summary
    pngs = sorted(out.glob("pose_*.png"))
    assert [p.name for p in pngs] == [f"pose_{i:05d}.png" for i in range(5)]
    data = np.load(out / "keypoints.npz")
    assert data["keypoints"].shape == (5, 18, 3) and bool(data["has_keypoints"])
    first = cv2.cvtColor(cv2.imread(str(pngs[0])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(first, render_pose(data["keypoints"][0], 64, 96))
    # rendering again replaces the folder; a folder with other files is refused
    render_to_folder(str(src), str(out), height=64, width=96)
    assert len(list(out.glob("pose_*.png"))) == 3
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(VidtuneError, match="mine"):
        render_to_folder(str(src), str(tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").exists()
    # the rendered folder loads back with its keypoints, on its own canvas
    again = load_poses(out)
    assert again.format == "COCO-18" and again.keypoints.shape == (3, 18, 3)
    assert (again.width, again.height) == (96, 64)


# ---- errors ----------------------------------------------------------------------------------


def test_error_malformed_json(tmp_path):
    (tmp_path / "a_000000000000_keypoints.json").write_text('{"people": [')
    with pytest.raises(VidtuneError, match="a_000000000000_keypoints.json.*not valid JSON"):
        load_poses(tmp_path)


def test_error_no_people_list(tmp_path):
    (tmp_path / "a_0_keypoints.json").write_text('{"version": 1.3}')
    with pytest.raises(VidtuneError, match=r'a_0_keypoints.json.*"people"'):
        load_poses(tmp_path)


def test_error_wrong_keypoint_length(tmp_path):
    (tmp_path / "a_0_keypoints.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": [1.0] * 60}]}))
    with pytest.raises(VidtuneError, match=r"a_0_keypoints.json.*length 60"):
        load_poses(tmp_path)


def test_error_empty_folder_names_patterns(tmp_path):
    with pytest.raises(VidtuneError, match=r"_keypoints\.json.*\.png.*\.jpg"):
        load_poses(tmp_path)


def test_error_image_sizes_differ(tmp_path):
    cv2.imwrite(str(tmp_path / "p1.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "p2.png"), np.zeros((8, 10, 3), np.uint8))
    with pytest.raises(VidtuneError, match=r"p2\.png.*10x8.*8x8"):
        load_poses(tmp_path)


def test_error_missing_path(tmp_path):
    with pytest.raises(VidtuneError, match="nope.*does not exist"):
        load_poses(tmp_path / "nope")


# ---- real OpenPose output (../shared) ----------------------------------------------------------


def raw_people(folder: Path) -> list[np.ndarray]:
    files = sorted(folder.glob("*_keypoints.json"))  # zero-padded names: text order = frame order
    return [parse_openpose_json(f)[0] for f in files]


def independent_score(p: np.ndarray) -> float:
    c = p[:, 2] > 0
    if c.sum() < 2:
        return 0.0
    return float((p[c, 0].max() - p[c, 0].min()) * (p[c, 1].max() - p[c, 1].min()) * p[:, 2].mean())


def test_real_kick7_empty_frames_filled(shared_dir):
    folder = shared_dir / OPENPOSE / "ttyaaron__cs229_soccer" / "Kick_7"
    seq = load_poses(folder)
    expected = "001111111111111111111111111111111111111111111111111111111111111111111111111111100000000000"
    assert "".join(map(str, seq.people_counts)) == expected
    assert seq.format == "BODY_25" and seq.num_frames == 90 and seq.keypoints.dtype == np.float32
    assert seq.filled_frames == (0, 1, *range(79, 90))
    assert "13 frames filled" in seq.summary()
    k = seq.keypoints
    raw = raw_people(folder)
    present = raw[2][0][:, 2] > 0
    np.testing.assert_allclose(k[0, present, :2], raw[2][0][present, :2])  # held from frame 2
    assert np.all(k[0, present, 2] < raw[2][0][present, 2])  # with reduced confidence
    assert np.all(k[85, present, 2] > 0)


def test_real_kick20_spurious_skeletons_do_not_steal(shared_dir):
    folder = shared_dir / OPENPOSE / "ttyaaron__cs229_soccer" / "Kick_20"
    seq = load_poses(folder)
    raw = raw_people(folder)
    assert len(seq.filled_frames) == 40
    for t in (46, 55, 60, 62):  # a 4-joint head fragment appears beside the player
        assert len(raw[t]) == 2
        full = max(raw[t], key=lambda p: (p[:, 2] > 0).sum())
        conf = full[:, 2] > 0
        np.testing.assert_allclose(seq.keypoints[t, conf], full[conf])


def test_real_kabeposter_swapping_order_keeps_track(shared_dir):
    folder = shared_dir / OPENPOSE / "yui-m0294__RJ_A" / "kabeposter"
    seq = load_poses(folder)
    raw = raw_people(folder)

    def centroid(p):
        return p[p[:, 2] > 0, :2].mean(0)

    list_first = np.array([centroid(r[0]) for r in raw])
    assert np.abs(np.diff(list_first[:, 0])).max() > 300  # the list order really swaps
    track = np.array([centroid(k) for k in seq.keypoints])
    assert np.abs(np.diff(track[:, 0])).max() < 50  # the track does not
    first = max(raw[0], key=independent_score)
    np.testing.assert_allclose(track[0], centroid(first), atol=1e-3)


def test_real_coco18_sequence(shared_dir):
    folder = shared_dir / OPENPOSE / "manishshambu__Non-Verbal-Expression-For-Robots" / "json"
    seq = load_poses(folder)
    assert seq.format == "COCO-18" and seq.num_frames == 90 and seq.filled_frames == ()
    flat = json.loads((folder / "000000000000_keypoints.json").read_text())["people"][0]["pose_keypoints_2d"]
    raw = np.array(flat, np.float32).reshape(18, 3)
    np.testing.assert_allclose(seq.keypoints[0], raw)  # no BODY_25 reindexing; frame 0 fully as detected
    assert (seq.width, seq.height) == (640, 480)
    assert "COCO-18" in seq.summary() and "BODY_25" not in seq.summary()


@pytest.mark.parametrize(
    "sub", ["DurhamARC__raga-pose-estimation/example_3people", "mithileshgau__Openpose-Analysis/output_json"]
)
def test_real_multi_person_starts_with_largest(shared_dir, sub):
    folder = shared_dir / OPENPOSE / sub
    seq = load_poses(folder)
    raw = raw_people(folder)
    first = max(raw[0], key=independent_score)
    np.testing.assert_allclose(seq.keypoints[0][first[:, 2] > 0], first[first[:, 2] > 0])
    # every frame's track is one of that frame's detections (people are never mixed)
    for t in range(0, seq.num_frames, 10):
        assert any(np.allclose(seq.keypoints[t][p[:, 2] > 0], p[p[:, 2] > 0]) for p in raw[t])


def test_rendered_folder_loads_back_with_its_keypoints(tmp_path):
    """A folder written by render_to_folder carries its keypoints: loading it keeps them (not just images)."""
    from vidtune.poses import load_poses, render_to_folder

    src = tmp_path / "src"
    src.mkdir()
    kps = np.zeros((3, 18, 3), np.float32)
    kps[:, :, :2] = np.random.default_rng(0).uniform(50, 400, (3, 18, 2))
    kps[:, :, 2] = 0.9
    for i in range(3):
        people = [{"pose_keypoints_2d": kps[i].flatten().tolist()}]
        (src / f"f_{i:04d}_keypoints.json").write_text(json.dumps({"people": people}))
    render_to_folder(src, tmp_path / "out", height=64, width=64)
    back = load_poses(tmp_path / "out")
    saved = np.load(tmp_path / "out" / "keypoints.npz")["keypoints"]
    assert back.format == "COCO-18" and (back.width, back.height) == (64, 64)
    np.testing.assert_allclose(back.keypoints, saved)


def test_json_files_not_named_keypoints_are_named_in_the_error(tmp_path):
    (tmp_path / "frame_000.json").write_text(json.dumps({"people": []}))
    with pytest.raises(VidtuneError) as info:
        poses.load_poses(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "frame_000.json" in message and "*_keypoints.json" in message
    assert "rename" in message
