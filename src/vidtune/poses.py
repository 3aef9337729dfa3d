"""OpenPose keypoints: COCO-18 layout, skeleton rendering, loading, cleaning and framing.

The rendering follows ``shared/data/openpose_render_spec.md`` (lllyasviel's ``draw_bodypose``,
which T2I-Adapter's openpose adapter was trained on). Keypoints are always ``(x, y, conf)`` in
pixel coordinates of the canvas they refer to; ``conf == 0`` means "not detected".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vidtune.atomic import atomic_dir
from vidtune.errors import VidtuneError
from vidtune.video import IMAGE_PATTERNS, list_image_files, natural_key, read_frames, video_info, write_frames_png

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


# --------------------------------------------------------------------------------------------
# Pose sequences
# --------------------------------------------------------------------------------------------

# Interpolated / held joints get this fraction of the (interpolated) confidence of the confident
# frames they were filled from, so they stay drawable (conf > 0) but are marked as guessed.
INTERPOLATED_CONFIDENCE_SCALE = 0.5

# Plausible source canvases (width, height), tried smallest area first when the size is inferred.
STANDARD_CANVASES: tuple[tuple[int, int], ...] = (
    (640, 480), (480, 640), (768, 576), (1280, 720), (720, 1280),
    (1920, 1080), (1080, 1920), (2560, 1440), (1440, 2560), (3840, 2160), (2160, 3840),
)  # fmt: skip

JSON_PATTERN = "*_keypoints.json"
# No camera gives keypoints beyond this (16K); a larger or a negative coordinate is a broken file.
MAX_COORDINATE = 16384.0
POSE_VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv", ".m4v")
FRAMINGS = ("fit", "person")


@dataclass(frozen=True)
class PoseSequence:
    """A pose sequence: one tracked person's COCO-18 keypoints, or ready-made pose images.

    Exactly one of ``keypoints`` / ``images`` is set.

    Attributes:
        keypoints: ``(N, 18, 3)`` float32 ``(x, y, conf)`` in source pixel coordinates, after
            tracking and filling (see :func:`clean_track`); conf 0 = never detected.
        images: ``(N, H, W, 3)`` uint8 RGB pose images (when the source was images or a video;
            held in memory, so prefer short or small pose videos, or JSON keypoints).
        width, height: the source canvas in pixels.
        fps: frame rate, None when unknown (OpenPose JSON and image folders carry none).
        source: the path it was loaded from.
        format: ``"BODY_25"``, ``"COCO-18"`` or ``"images"``.
        people_counts: detections per source frame before tracking (empty for images).
        filled_frames: source frame indices where the tracked person was absent and whose joints
            were all filled from neighbouring frames.
        interpolated_joints: number of (frame, joint) entries filled in frames where the person
            was present (joint missing in that frame), not counting ``filled_frames``.
        canvas_inferred: True when ``width``/``height`` were guessed from the keypoint extent.
        source_frames: the number of frames as loaded (differs from ``num_frames`` after resample).
        dropped_joints: detected joints dropped as implausible (see :func:`drop_implausible`).
    """

    keypoints: np.ndarray | None
    images: np.ndarray | None
    width: int
    height: int
    fps: float | None
    source: str
    format: str
    people_counts: tuple[int, ...] = ()
    filled_frames: tuple[int, ...] = ()
    interpolated_joints: int = 0
    canvas_inferred: bool = False
    source_frames: int = 0
    dropped_joints: int = 0

    def __post_init__(self) -> None:
        if (self.keypoints is None) == (self.images is None):
            raise ValueError("PoseSequence needs exactly one of keypoints or images")
        if self.keypoints is not None and (self.keypoints.ndim != 3 or self.keypoints.shape[1:] != (NUM_KEYPOINTS, 3)):
            raise ValueError(f"PoseSequence keypoints must be (N, 18, 3), got {self.keypoints.shape}")
        if self.images is not None and (
            self.images.ndim != 4 or self.images.shape[3] != 3 or self.images.dtype != np.uint8
        ):
            raise ValueError(
                f"PoseSequence images must be (N, H, W, 3) uint8, got {self.images.dtype} {self.images.shape}"
            )

    @property
    def num_frames(self) -> int:
        """Number of frames N."""
        data = self.keypoints if self.keypoints is not None else self.images
        return int(data.shape[0])

    def summary(self, num_frames: int | None = None) -> str:
        """One line: frames, format, people tracked, frames filled, joints interpolated, canvas, fps.

        ``num_frames`` states the count it will be resampled to (`vidtune plan` does not resample).
        """
        name = (Path(self.source).name or self.source) + ("/" if Path(self.source).is_dir() else "")
        count = self.num_frames if num_frames is None else num_frames
        frames = f"{count} frames"
        if self.source_frames and self.source_frames != count:
            frames += f" (resampled from {self.source_frames})"
        fps = f"{self.fps:g} fps" if self.fps else "fps unknown"
        if self.format == "images":
            return f"{name}: {frames}, pose images {self.width}x{self.height}, {fps}"
        most = max(self.people_counts, default=0)
        never = [KEYPOINT_NAMES[j] for j in range(NUM_KEYPOINTS) if not (self.keypoints[:, j, 2] > 0).any()]
        canvas = f"canvas {self.width}x{self.height}" + (" (inferred)" if self.canvas_inferred else "")
        parts = [
            f"{frames}",
            f"{self.format}" + (" -> COCO-18" if self.format != "COCO-18" else ""),
            f"1 person tracked (up to {most} per frame)",
            f"{len(self.filled_frames)} frames filled from neighbours",
            f"{self.interpolated_joints} joints interpolated",
        ]
        if never:
            parts.append(f"never detected: {', '.join(never)}")
        if self.dropped_joints:
            parts.append(
                f"WARNING: {self.dropped_joints} implausible keypoints dropped (negative, or beyond "
                f"{MAX_COORDINATE:g} px or the canvas)"
            )
        parts += [canvas, fps]
        return f"{name}: " + ", ".join(parts)


# --- parsing ---------------------------------------------------------------------------------


def parse_openpose_json(path: str | Path) -> tuple[np.ndarray, int]:
    """Read one OpenPose ``--write_json`` file.

    Returns:
        ``(people, n)``: ``people`` is ``(P, 18, 3)`` float32 COCO-18 ``(x, y, conf)`` (BODY_25
        converted with :data:`BODY25_TO_COCO18`), ``n`` the keypoints per person in the file
        (25 or 18; 0 when the file has nobody).

    Raises:
        VidtuneError: malformed JSON, no ``people`` list, or a keypoint list whose length is not
            75 (BODY_25) or 54 (COCO-18).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VidtuneError(f"{path}: not valid JSON ({e}); re-export it with OpenPose --write_json") from e
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise VidtuneError(f'{path}: no "people" list; this is not an OpenPose --write_json keypoint file')
    out, n_kp = [], 0
    for k, person in enumerate(people):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(flat, list):
            raise VidtuneError(
                f'{path}: person {k} has no "pose_keypoints_2d" list; re-export with OpenPose --write_json'
            )
        if len(flat) == 75:
            n = 25
        elif len(flat) == 54:
            n = 18
        else:
            raise VidtuneError(
                f"{path}: person {k} has a pose_keypoints_2d list of length {len(flat)};"
                " expected 75 (BODY_25) or 54 (COCO-18) numbers"
            )
        if n_kp and n != n_kp:
            raise VidtuneError(
                f"{path}: people with both BODY_25 and COCO-18 keypoints in one file; re-export with one model"
            )
        n_kp = n
        try:
            arr = np.asarray(flat, dtype=np.float32).reshape(n, 3)
        except (TypeError, ValueError) as e:
            raise VidtuneError(
                f"{path}: person {k} has non-numeric keypoints; re-export with OpenPose --write_json"
            ) from e
        if n == 25:
            arr = arr[list(BODY25_TO_COCO18)]
        arr[~np.isfinite(arr).all(axis=1)] = 0.0
        out.append(arr)
    people_arr = np.stack(out) if out else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
    return people_arr, n_kp


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


# --- loading ---------------------------------------------------------------------------------


def _frame_number_key(path: Path) -> tuple[object, ...]:
    return natural_key(path.name)


def load_poses(path: str | Path, canvas: tuple[int, int] | None = None, fps: float | None = None) -> PoseSequence:
    """Load a pose sequence from OpenPose JSON, pose images or a pose video.

    Args:
        path: a folder of OpenPose ``*_keypoints.json`` files (BODY_25 or COCO-18, detected from
            the list length, sorted naturally by file name, i.e. by frame number), a single such
            JSON file, a folder of pose images (``*.png`` / ``*.jpg``, all the same size), or a pose
            video (mp4/gif/webm/avi/mov/mkv).
        canvas: ``(width, height)`` of the images the JSON keypoints were detected on. OpenPose
            JSON does not store it; when None it is guessed with :func:`infer_canvas` (and the
            summary says so). Ignored for images and videos, whose size is known.
        fps: frame rate, for sources that carry none (JSON, image folders); a video's own rate
            wins when this is None.

    With several people per frame one person is followed (:func:`track_person`): the largest
    confident person of the first frame with anyone, then the nearest to it frame by frame.
    Frames with nobody and missing joints are filled by temporal interpolation
    (:func:`interpolate_missing`); filled joints get conf x :data:`INTERPOLATED_CONFIDENCE_SCALE`.

    Raises:
        VidtuneError: the path does not exist, a folder has no frames, a JSON file is malformed
            or has keypoint lists of the wrong length, pose images differ in size.
    """
    p = Path(path)
    if not p.exists():
        raise VidtuneError(
            f"{p}: does not exist; give a folder of OpenPose *_keypoints.json files, a folder of pose images or a pose video"
        )
    if p.is_dir():
        rendered = _load_rendered(p, fps)
        if rendered is not None:
            return rendered
        json_files = sorted((f for f in p.glob(JSON_PATTERN) if f.is_file()), key=_frame_number_key)
        if json_files:
            return _load_json(json_files, str(p), canvas, fps)
        if list_image_files(p):
            return _load_images(p, fps)
        other_json = sorted(f.name for f in p.glob("*.json") if f.is_file())
        if other_json:
            raise VidtuneError(
                f"{p}: {len(other_json)} .json files (e.g. {other_json[0]}) but none named {JSON_PATTERN}, "
                "OpenPose's name for its per-frame output; rename them (frame_000_keypoints.json, ...) or point "
                "to the folder OpenPose wrote"
            )
        raise VidtuneError(
            f"{p}: no pose frames found (looked for {JSON_PATTERN}, {', '.join(IMAGE_PATTERNS)});"
            " point to the folder that holds them"
        )
    suffix = p.suffix.lower()
    if suffix == ".json":
        return _load_json([p], str(p), canvas, fps)
    if suffix in POSE_VIDEO_SUFFIXES:
        return _load_images(p, fps)
    if suffix in (".png", ".jpg", ".jpeg"):
        raise VidtuneError(f"{p}: a single image; give the folder that holds the pose images")
    raise VidtuneError(
        f"{p}: unsupported pose source {suffix!r}; give a folder of *_keypoints.json, a folder of png/jpg or a video"
    )


def _load_rendered(folder: Path, fps: float | None) -> PoseSequence | None:
    """A folder written by :func:`render_to_folder` (or the synthetic world): its keypoints.npz
    carries COCO-18 keypoints in the pose images' pixels, so they are used instead of the images."""
    npz = folder / "keypoints.npz"
    if not npz.is_file():
        return None
    try:
        data = np.load(npz)
        if not bool(data["has_keypoints"]):
            return None
        keypoints = np.asarray(data["keypoints"], dtype=np.float32)
        width, height = int(data["width"]), int(data["height"])
        saved_fps = float(data["fps"]) if "fps" in data.files else float("nan")
    except (OSError, KeyError, ValueError) as exc:
        raise VidtuneError(
            f"{npz}: unreadable keypoints file ({exc}); re-render it with `vidtune poses render`"
        ) from None
    if keypoints.ndim != 3 or keypoints.shape[1:] != (NUM_KEYPOINTS, 3):
        raise VidtuneError(f"{npz}: keypoints must be (N, 18, 3), got {keypoints.shape}; re-render the folder")
    keypoints[~np.isfinite(keypoints).all(axis=-1)] = 0.0
    if not has_usable_pose(keypoints):
        raise VidtuneError(
            f"{npz}: no usable pose: no frame has two keypoints with confidence > 0; re-render the folder"
        )
    if fps is None and np.isfinite(saved_fps):
        fps = saved_fps
    n = keypoints.shape[0]
    return PoseSequence(
        keypoints=keypoints, images=None, width=width, height=height, fps=fps, source=str(folder),
        format="COCO-18", people_counts=(1,) * n, source_frames=n,
    )  # fmt: skip


def _load_json(files: list[Path], source: str, canvas: tuple[int, int] | None, fps: float | None) -> PoseSequence:
    frames, n_kp, first_file, dropped = [], 0, None, 0
    for f in files:
        people, n = parse_openpose_json(f)
        people, bad = drop_implausible(people, canvas)
        dropped += bad
        if n and n_kp and n != n_kp:
            raise VidtuneError(
                f"{f}: has {'BODY_25' if n == 25 else 'COCO-18'} keypoints but {first_file.name} has"
                f" {'BODY_25' if n_kp == 25 else 'COCO-18'}; keep one OpenPose model per folder"
            )
        if n and not n_kp:
            n_kp, first_file = n, f
        frames.append(people)
    if not n_kp:
        raise VidtuneError(
            f"{source}: nobody was detected in any of the {len(files)} JSON files; check the OpenPose run"
        )
    keypoints, filled, interpolated = clean_track(frames)
    if not has_usable_pose(keypoints):
        why = f" ({dropped} implausible keypoints dropped)" if dropped else ""
        raise VidtuneError(
            f"{source}: no usable pose: no frame has two keypoints with confidence > 0{why}; check the OpenPose output"
        )
    inferred = canvas is None
    if canvas is None:
        canvas = infer_canvas(np.concatenate(frames))
    width, height = int(canvas[0]), int(canvas[1])
    if width <= 0 or height <= 0:
        raise VidtuneError(f"{source}: canvas must be a positive (width, height), got {canvas}")
    return PoseSequence(
        keypoints=keypoints, images=None, width=width, height=height, fps=fps, source=source,
        format="BODY_25" if n_kp == 25 else "COCO-18", people_counts=tuple(len(x) for x in frames),
        filled_frames=filled, interpolated_joints=interpolated, canvas_inferred=inferred,
        source_frames=len(frames), dropped_joints=dropped,
    )  # fmt: skip


def _load_images(path: Path, fps: float | None) -> PoseSequence:
    images = np.stack(list(read_frames(path)))
    if fps is None and not path.is_dir():
        fps = video_info(path).fps
    return PoseSequence(
        keypoints=None, images=images, width=int(images.shape[2]), height=int(images.shape[1]), fps=fps,
        source=str(path), format="images", source_frames=int(images.shape[0]),
    )  # fmt: skip


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


def render_sequence(
    seq: PoseSequence, height: int, width: int, framing: str = "fit", margin: float = 0.1
) -> np.ndarray:
    """Pose images for every frame: ``(N, height, width, 3)`` uint8 RGB.

    Keypoint sequences are framed (:func:`frame_poses`) and drawn at the target size
    (:func:`render_pose`), so the strokes have the standard 4 px widths the adapter was trained
    on; image sequences are resized (:func:`frame_images`).
    """
    if seq.keypoints is None:
        return frame_images(seq, height, width, framing, margin)
    kp = frame_poses(seq, height, width, framing, margin)
    return np.stack([render_pose(k, height, width) for k in kp])


def _looks_like_render(folder: Path) -> bool:
    return all(
        (f.name == "keypoints.npz" or (f.name.startswith("pose_") and f.suffix == ".png")) for f in folder.iterdir()
    )


def render_to_folder(
    src: str | Path,
    out_dir: str | Path,
    height: int = 512,
    width: int = 512,
    num_frames: int | None = None,
    fps: float | None = None,
    framing: str = "fit",
    canvas: tuple[int, int] | None = None,
) -> str:
    """Load ``src`` (:func:`load_poses`), resample, frame and render it into ``out_dir``.

    Writes ``pose_00000.png``, ... and ``keypoints.npz`` with ``keypoints`` ``(N, 18, 3)`` float32
    in output pixels (all zeros, i.e. conf 0, for image sources; ``has_keypoints`` says which),
    ``width``, ``height``, ``fps`` (NaN if unknown) and ``source``. The folder is replaced as a
    whole, atomically; an existing folder holding anything but such files is refused.

    Returns:
        The summary line of the loaded sequence.
    """
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or not _looks_like_render(out)):
        raise VidtuneError(
            f"{out}: exists and holds files other than pose_*.png / keypoints.npz; choose a new or empty output folder"
        )
    seq = resample(load_poses(src, canvas=canvas), num_frames=num_frames, fps=fps)
    images = render_sequence(seq, height, width, framing)
    if seq.keypoints is not None:
        keypoints, has_kp = frame_poses(seq, height, width, framing), True
    else:
        keypoints, has_kp = np.zeros((seq.num_frames, NUM_KEYPOINTS, 3), np.float32), False
    with atomic_dir(out) as tmp:
        write_frames_png(images, tmp, prefix="pose_")
        np.savez(
            tmp / "keypoints.npz", keypoints=keypoints, has_keypoints=has_kp, width=width, height=height,
            fps=np.nan if seq.fps is None else seq.fps, source=str(src),
        )  # fmt: skip
    return seq.summary()
