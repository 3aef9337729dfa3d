"""Loading a pose source: OpenPose JSON, rendered pose images (and their keypoints.npz), or a pose video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidtune.errors import VidtuneError
from vidtune.poses.layout import (
    NUM_KEYPOINTS,
)
from vidtune.poses.parse import (
    parse_openpose_json,
)
from vidtune.poses.sequence import (
    JSON_PATTERN,
    POSE_VIDEO_SUFFIXES,
    PoseSequence,
)
from vidtune.poses.track import (
    clean_track,
    drop_implausible,
    has_usable_pose,
    infer_canvas,
)
from vidtune.video import IMAGE_PATTERNS, list_image_files, natural_key, read_frames, video_info

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
