"""A pose sequence (`PoseSequence`): keypoints or pose images, with where they came from and how they were
cleaned; the limits a pose source must respect."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtune.poses.layout import (
    KEYPOINT_NAMES,
    NUM_KEYPOINTS,
)

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
