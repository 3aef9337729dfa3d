"""Poses from an RGB video, offline: MediaPipe's pose landmarker -> OpenPose BODY_25 / COCO-18 JSON.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.pose_extract`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vidtune import atomic
from vidtune.errors import VidtuneError
from vidtune.poses import BODY25_TO_COCO18, JSON_PATTERN
from vidtune.smoothing import OneEuroParams, one_euro

BODY25_NAMES: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)  # fmt: skip

# BODY_25 joint k takes MediaPipe landmark MP_FOR_BODY25[k]: an int, a pair (midpoint) or None
# (MediaPipe has no small toes). MediaPipe's LEFT_* / RIGHT_* are the person's left / right, as
# OpenPose's L* / R* are: a person facing the camera has the left shoulder on the image's right.
MP_FOR_BODY25: tuple[int | tuple[int, int] | None, ...] = (
    0, (11, 12), 12, 14, 16, 11, 13, 15, (23, 24),
    24, 26, 28, 23, 25, 27, 5, 2, 8, 7,
    31, None, 29, 32, None, 30,
)  # fmt: skip
NUM_LANDMARKS = 33
LAYOUTS = ("body25", "coco18")
DEFAULT_MIN_VISIBILITY = 0.5  # a landmark less visible than this is written as missing (0, 0, 0)

# A pose render is mostly black with a few saturated limb colours; a photo is neither.
RENDER_BLACK_LEVEL = 24  # a pixel whose channels are all below this counts as black
RENDER_MIN_BLACK_FRACTION = 0.6
RENDER_MIN_SATURATION = 0.6  # median HSV saturation of the non-black pixels of a render


# --- pure mapping ----------------------------------------------------------------------------


def landmarks_to_body25(
    landmarks: np.ndarray, width: int, height: int, min_visibility: float = DEFAULT_MIN_VISIBILITY
) -> np.ndarray:
    """Map MediaPipe's 33 landmarks of one person to OpenPose BODY_25.

    Args:
        landmarks: ``(33, 3)`` ``(x, y, visibility)``, x and y in pixels of the frame.
        width, height: the frame size; landmarks outside it are missing (OpenPose finds none there).
        min_visibility: landmarks less visible than this are missing.

    Returns:
        ``(25, 3)`` float32 ``(x, y, conf)``, conf = visibility, ``(0, 0, 0)`` for missing joints;
        a midpoint (neck, mid-hip) is missing unless both ends are present, and its conf is the
        lower of the two.
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.shape != (NUM_LANDMARKS, 3):
        raise ValueError(f"landmarks_to_body25 expects (33, 3) landmarks, got {lm.shape}")
    inside = (lm[:, 0] >= 0) & (lm[:, 0] < width) & (lm[:, 1] >= 0) & (lm[:, 1] < height)
    ok = inside & (lm[:, 2] >= min_visibility) & np.isfinite(lm).all(axis=1)
    out = np.zeros((len(MP_FOR_BODY25), 3), np.float32)
    for k, src in enumerate(MP_FOR_BODY25):
        if src is None:
            continue
        if isinstance(src, tuple):
            a, b = src
            if ok[a] and ok[b]:
                out[k, :2] = (lm[a, :2] + lm[b, :2]) / 2
                out[k, 2] = min(lm[a, 2], lm[b, 2])
        elif ok[src]:
            out[k] = lm[src]
    return out


def to_layout(body25: np.ndarray, layout: str) -> np.ndarray:
    """``(..., 25, 3)`` BODY_25 -> the same (``body25``) or ``(..., 18, 3)`` COCO-18 (``coco18``)."""
    if layout == "body25":
        return body25
    if layout == "coco18":
        return body25[..., list(BODY25_TO_COCO18), :]
    raise VidtuneError(f"pose layout {layout!r}: use one of {', '.join(LAYOUTS)}")


def looks_like_pose_render(frames: np.ndarray) -> bool:
    """Whether ``(N, H, W, 3)`` uint8 frames look like rendered pose maps rather than photos.

    A render is mostly black (>= 60 % of pixels with every channel < 24) and what is not black is
    saturated limb colour (median HSV saturation >= 0.6); a photo of a person is neither.
    """
    x = np.asarray(frames, dtype=np.float32)
    black = x.max(axis=-1) < RENDER_BLACK_LEVEL
    if black.mean() < RENDER_MIN_BLACK_FRACTION:
        return False
    lit = x[~black]
    if lit.size == 0:
        return True
    saturation = (lit.max(axis=-1) - lit.min(axis=-1)) / np.maximum(lit.max(axis=-1), 1.0)
    return bool(np.median(saturation) >= RENDER_MIN_SATURATION)


def smooth_people(people: list[np.ndarray], fps: float, params: OneEuroParams) -> list[np.ndarray]:
    """One-Euro filter the first person of every frame through time (frames with nobody stay empty).

    ``people`` is per frame a ``(P, J, 3)`` array; the detector gives P <= 1, so the first person
    is the tracked one. Returns new arrays; joints missing stay missing.
    """
    joints = next((p.shape[1] for p in people if len(p)), 0)
    if not joints:
        return [p.copy() for p in people]
    track = np.stack([p[0] if len(p) else np.zeros((joints, 3), np.float32) for p in people])
    smoothed = one_euro(track, fps, params)
    out = []
    for t, p in enumerate(people):
        q = p.copy()
        if len(q):
            q[0] = smoothed[t]
        out.append(q)
    return out


# --- the detector ----------------------------------------------------------------------------


def _import_mediapipe():
    """Import MediaPipe quietly, or say how to install it."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # no C++ INFO lines from the graph
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mediapipe as mp
            from mediapipe.python.solutions import pose as mp_pose
    except ImportError as exc:
        raise VidtuneError(
            f'pose extraction needs MediaPipe ({exc}); install it with: pip install "vidtune[pose]"'
        ) from None
    return mp, mp_pose


def mediapipe_available() -> bool:
    """Whether MediaPipe's pose solution can be imported."""
    try:
        _import_mediapipe()
    except VidtuneError:
        return False
    return True


class PoseDetector:
    """MediaPipe's pose graph (detector + full landmark model, shipped in the wheel) on a frame stream.

    In video mode the graph follows the person from frame to frame (the detector runs again only
    when the person is lost); ``reset`` starts a new stream. MediaPipe's own landmark smoothing
    stays on in video mode: it also steadies the region the landmark model looks at, and on the
    translated astronaut test video it lowers the worst shoulder error from 29 to 21 px (per frame
    detection: 50 px). :func:`smooth_people` (One-Euro, configurable) comes on top when asked.
    """

    def __init__(
        self, video: bool = True, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5
    ) -> None:
        _, self._mp_pose = _import_mediapipe()
        self._kwargs = dict(
            static_image_mode=not video,
            model_complexity=1,
            smooth_landmarks=video,
            enable_segmentation=False,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )
        self._graph = None
        self.reset()

    def reset(self) -> None:
        """Forget the tracked person (a new video starts)."""
        self.close()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._graph = self._mp_pose.Pose(**self._kwargs)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """Landmarks of the person in one ``(H, W, 3)`` uint8 RGB frame.

        Returns:
            ``(P, 33, 3)`` float32 ``(x, y, visibility)`` in pixels, P = 0 or 1.
        """
        h, w = frame.shape[:2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = self._graph.process(np.ascontiguousarray(frame))
        if result.pose_landmarks is None:
            return np.zeros((0, NUM_LANDMARKS, 3), np.float32)
        lm = result.pose_landmarks.landmark
        return np.array([[[p.x * w, p.y * h, p.visibility] for p in lm]], dtype=np.float32)

    def close(self) -> None:
        """Free the graph."""
        if self._graph is not None:
            self._graph.close()
            self._graph = None


# --- extraction ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExtractOptions:
    """How to extract: the output layout, the visibility threshold and the optional smoothing."""

    layout: str = "body25"
    min_visibility: float = DEFAULT_MIN_VISIBILITY
    smooth: bool = False
    one_euro: OneEuroParams = OneEuroParams()

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise VidtuneError(f"pose layout {self.layout!r}: use one of {', '.join(LAYOUTS)}")
        if not 0.0 <= self.min_visibility <= 1.0:
            raise VidtuneError(f"min visibility must be in [0, 1], got {self.min_visibility}")


@dataclass(frozen=True)
class ExtractedPoses:
    """Per frame the people found, ``(P, J, 3)`` in the chosen layout (P <= 1), and the source's facts."""

    people: list[np.ndarray]
    width: int
    height: int
    fps: float | None
    source: str

    def summary(self) -> str:
        """One line: frames, frames with a person, canvas, fps."""
        found = sum(1 for p in self.people if len(p))
        fps = f"{self.fps:g} fps" if self.fps else "fps unknown"
        return (
            f"{Path(self.source).name}: {len(self.people)} frames, a person in {found}, "
            f"canvas {self.width}x{self.height}, {fps}"
        )


def detect_frames(
    frames: Iterable[np.ndarray], options: ExtractOptions, fps: float | None, detector: PoseDetector | None = None
) -> Iterator[np.ndarray]:
    """Yield the people of each frame, ``(P, J, 3)`` in the chosen layout (unsmoothed)."""
    own = detector is None
    detector = detector or PoseDetector(video=True)
    try:
        for frame in frames:
            h, w = frame.shape[:2]
            found = [landmarks_to_body25(lm, w, h, options.min_visibility) for lm in detector.detect(frame)]
            found = [p for p in found if (p[:, 2] > 0).any()]
            body25 = np.stack(found) if found else np.zeros((0, len(BODY25_NAMES), 3), np.float32)
            yield to_layout(body25, options.layout)
    finally:
        if own:
            detector.close()


def extract(src: str | Path, options: ExtractOptions = ExtractOptions()) -> ExtractedPoses:
    """Run the detector over a video file or frame folder; smooth when asked."""
    from vidtune.video import read_frames, video_info

    info = video_info(src)
    people = list(detect_frames(read_frames(src), options, info.fps))
    if not people:
        raise VidtuneError(f"{src}: has no frames; give a video or a folder of png/jpg frames")
    if options.smooth:
        people = smooth_people(people, info.fps or 8.0, options.one_euro)
    return ExtractedPoses(people=people, width=info.width, height=info.height, fps=info.fps, source=str(src))


def openpose_record(people: np.ndarray) -> dict:
    """One frame as OpenPose's ``--write_json`` writes it (version 1.3, flat pose_keypoints_2d)."""
    return {
        "version": 1.3,
        "people": [
            {
                "person_id": [-1],
                "pose_keypoints_2d": [round(float(v), 3) for v in person.reshape(-1)],
                "face_keypoints_2d": [],
                "hand_left_keypoints_2d": [],
                "hand_right_keypoints_2d": [],
                "pose_keypoints_3d": [],
                "face_keypoints_3d": [],
                "hand_left_keypoints_3d": [],
                "hand_right_keypoints_3d": [],
            }
            for person in people
        ],
    }


def _looks_like_extraction(folder: Path) -> bool:
    return all(f.name.endswith("_keypoints.json") or f.name == SOURCE_FILE for f in folder.iterdir())


SOURCE_FILE = "source.json"


def write_openpose_folder(poses: ExtractedPoses, out: str | Path, options: ExtractOptions) -> Path:
    """Write ``<name>_000000000000_keypoints.json``, ... (OpenPose's names) and ``source.json``
    (canvas, fps, options: what OpenPose's JSON does not store). The folder is replaced atomically;
    an existing folder holding other files is refused."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or not _looks_like_extraction(out)):
        raise VidtuneError(
            f"{out}: exists and holds files other than *_keypoints.json; choose a new or empty output folder"
        )
    stem = Path(poses.source).stem or "frame"
    with atomic.atomic_dir(out) as tmp:
        for i, people in enumerate(poses.people):
            (tmp / f"{stem}_{i:012d}_keypoints.json").write_text(json.dumps(openpose_record(people)))
        meta = {
            "source": poses.source,
            "width": poses.width,
            "height": poses.height,
            "fps": poses.fps,
            "options": asdict(options),
        }
        (tmp / SOURCE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out


def extract_to_folder(src: str | Path, out: str | Path, options: ExtractOptions = ExtractOptions()) -> str:
    """`vidtune poses extract`: detect, smooth when asked, write OpenPose JSON; return a summary line."""
    poses = extract(src, options)
    write_openpose_folder(poses, out, options)
    return poses.summary() + f" -> {out} ({options.layout}{', smoothed' if options.smooth else ''})"


# --- RGB video as a run's pose source --------------------------------------------------------

RUN_OPTIONS = ExtractOptions(layout="body25", smooth=True)  # what `vidtune run` extracts with


@dataclass(frozen=True)
class PoseSource:
    """What `poses.load_poses` should read: a path, and the canvas / fps when the JSON lacks them."""

    path: str
    canvas: tuple[int, int] | None = None
    fps: float | None = None


def is_rgb_source(path: str | Path, pose_source: str = "auto", sample: int = 3) -> bool:
    """Whether ``path`` is footage to extract poses from (``rgb``) or a pose source (``pose``).

    ``auto``: OpenPose JSON and rendered folders are poses; a video or image folder is sampled
    (first ``sample`` frames) and judged with :func:`looks_like_pose_render`.
    """
    from vidtune.video import read_frames

    if pose_source == "pose":
        return False
    p = Path(path)
    is_json = p.suffix.lower() == ".json" or (
        p.is_dir() and (any(p.glob(JSON_PATTERN)) or (p / "keypoints.npz").is_file())
    )
    if pose_source == "rgb":
        if is_json:
            raise VidtuneError(
                f"{p}: inputs.pose_source = 'rgb' but this holds OpenPose keypoints; "
                "set inputs.pose_source = 'auto' or 'pose'"
            )
        return True
    if is_json or not p.exists():
        return False
    frames = []
    for frame in read_frames(p):
        frames.append(frame)
        if len(frames) >= sample:
            break
    return bool(frames) and not looks_like_pose_render(np.stack(frames))


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"source": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def prepare_pose_source(path: str, pose_source: str, cache: Path, log=print) -> PoseSource:
    """The pose source a run reads: ``path`` itself, or its poses extracted once into ``cache``.

    Footage (see :func:`is_rgb_source`) is extracted with :data:`RUN_OPTIONS` into ``cache`` and
    reused while the video's path, size and modification time are unchanged.
    """
    if not is_rgb_source(path, pose_source):
        return PoseSource(path)
    stamp = {**_fingerprint(Path(path)), "options": asdict(RUN_OPTIONS)}
    meta_path = cache / SOURCE_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("stamp") != json.loads(json.dumps(stamp)):
        poses = extract(path, RUN_OPTIONS)
        if not any(len(p) for p in poses.people):
            raise VidtuneError(
                f"{path}: no person found in any frame; give footage of a person "
                "(or set inputs.pose_source = 'pose' if it is a pose render)"
            )
        write_openpose_folder(poses, cache, RUN_OPTIONS)
        meta = json.loads(meta_path.read_text())
        meta["stamp"] = stamp
        atomic.write_json(meta_path, meta)
        log(f"vidtune: poses extracted from {poses.summary()} -> {cache}")
    return PoseSource(str(cache), canvas=(int(meta["width"]), int(meta["height"])), fps=meta.get("fps"))
