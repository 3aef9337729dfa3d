"""OpenPose keypoints: the COCO-18 layout and skeleton rendering (`layout`), pose sequences (`sequence`),
parsing (`parse`), tracking and cleaning (`track`), loading (`load`), resampling and framing (`framing`),
and rendering a sequence to a folder (here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidtune.atomic import atomic_dir
from vidtune.errors import VidtuneError
from vidtune.poses.framing import (
    Framing,
    _warp_image,
    box_framing,
    fit_framing,
    frame_images,
    frame_poses,
    image_box,
    person_box,
    resample,
    resample_keypoints,
    resampled_size,
    sequence_framing,
)
from vidtune.poses.layout import (
    BODY25_TO_COCO18,
    COLORS,
    JOINT_RADIUS,
    KEYPOINT_NAMES,
    LIMB_ALPHA,
    LIMBS,
    NUM_KEYPOINTS,
    STICK_WIDTH,
    _blend_polygon,
    _trunc,
    render_pose,
)
from vidtune.poses.load import (
    _frame_number_key,
    _load_images,
    _load_json,
    _load_rendered,
    load_poses,
)
from vidtune.poses.parse import (
    parse_openpose_json,
)
from vidtune.poses.sequence import (
    FRAMINGS,
    INTERPOLATED_CONFIDENCE_SCALE,
    JSON_PATTERN,
    MAX_COORDINATE,
    POSE_VIDEO_SUFFIXES,
    STANDARD_CANVASES,
    PoseSequence,
)
from vidtune.poses.track import (
    clean_track,
    drop_implausible,
    has_usable_pose,
    infer_canvas,
    interpolate_missing,
    person_distance,
    person_score,
    track_person,
)
from vidtune.video import write_frames_png


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


__all__ = [
    "BODY25_TO_COCO18",
    "COLORS",
    "FRAMINGS",
    "Framing",
    "INTERPOLATED_CONFIDENCE_SCALE",
    "JOINT_RADIUS",
    "JSON_PATTERN",
    "KEYPOINT_NAMES",
    "LIMBS",
    "LIMB_ALPHA",
    "MAX_COORDINATE",
    "NUM_KEYPOINTS",
    "POSE_VIDEO_SUFFIXES",
    "PoseSequence",
    "STANDARD_CANVASES",
    "STICK_WIDTH",
    "_blend_polygon",
    "_frame_number_key",
    "_load_images",
    "_load_json",
    "_load_rendered",
    "_looks_like_render",
    "_trunc",
    "_warp_image",
    "box_framing",
    "clean_track",
    "drop_implausible",
    "fit_framing",
    "frame_images",
    "frame_poses",
    "has_usable_pose",
    "image_box",
    "infer_canvas",
    "interpolate_missing",
    "load_poses",
    "parse_openpose_json",
    "person_box",
    "person_distance",
    "person_score",
    "render_pose",
    "render_sequence",
    "render_to_folder",
    "resample",
    "resample_keypoints",
    "resampled_size",
    "sequence_framing",
    "track_person",
]
