"""A run's inputs, built once (`build`; `count` gives its frame count without rendering): pose images
at the generation size, keypoints, per-frame prompts. Written to `inputs/` in the run folder (pose
PNGs + keypoints.npz + prompts.json) so that every stage's conditioning can be looked at and reread.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import InputConfig
from vidtune.errors import VidtuneError
from vidtune.method.prompts import per_frame_prompts, prompt_schedule

DEFAULT_FPS = 8.0


@dataclass(frozen=True)
class VideoInputs:
    """Conditioning of every frame: pose images (N, H, W, 3) uint8 RGB, keypoints (N, 18, 3) in
    the pose image's pixels (None for image/video pose sources), prompts (N,), fps, summary."""

    pose_images: np.ndarray
    keypoints: np.ndarray | None
    prompts: list[str]
    fps: float
    summary: str

    @property
    def num_frames(self) -> int:
        return int(self.pose_images.shape[0])


def check(cfg: InputConfig) -> None:
    """What every inputs builder checks before reading anything: a pose source and a size of multiples of 8."""
    if not cfg.poses:
        raise VidtuneError(
            "inputs.poses is empty: pass --poses PATH (OpenPose JSON folder, pose images, a pose video "
            "or an RGB video of a person)"
        )
    if cfg.height % 8 or cfg.width % 8:
        raise VidtuneError(f"inputs.height/width must be multiples of 8, got {cfg.height}x{cfg.width}")


def build(
    cfg: InputConfig, extracted: Path, windows_fn: Callable[[int], list[tuple[int, int]]] | None = None
) -> VideoInputs:
    """The run's inputs in memory: the pose source loaded, cleaned, resampled and rendered, and every
    frame's prompt (`windows_fn(n)`: stage 4's clips of n frames, for per-clip prompts). Footage of a
    person (`inputs.pose_source` = "rgb", or "auto" and it does not look like a pose render) has its
    poses extracted once into (or reused from) the cache folder `extracted` (OpenPose JSON, smoothed)."""
    from vidtune import pose_extract, poses

    check(cfg)
    source = pose_extract.prepare_pose_source(cfg.poses, cfg.pose_source, extracted)
    seq = poses.load_poses(source.path, canvas=source.canvas, fps=source.fps)
    if cfg.frames or cfg.fps:
        seq = poses.resample(seq, num_frames=cfg.frames or None, fps=cfg.fps or None)
    images = poses.render_sequence(seq, cfg.height, cfg.width, framing=cfg.framing)
    if not images.any():
        raise VidtuneError(
            f"{cfg.poses}: every pose image is blank (no usable pose in any frame); check the pose source"
        )
    keypoints = None if seq.keypoints is None else poses.frame_poses(seq, cfg.height, cfg.width, framing=cfg.framing)
    windows = windows_fn(len(images)) if windows_fn is not None and cfg.clip_prompts else None
    return VideoInputs(
        pose_images=images,
        keypoints=keypoints,
        prompts=per_frame_prompts(len(images), prompt_schedule(cfg), windows),
        fps=float(cfg.fps or seq.fps or DEFAULT_FPS),
        summary=seq.summary(),
    )


def prepare(
    cfg: InputConfig, out_dir: Path, windows_fn: Callable[[int], list[tuple[int, int]]] | None = None
) -> VideoInputs:
    """`build` with the cache folder `out_dir/extracted`, then written to `out_dir` (inputs/)."""
    result = build(cfg, out_dir / A.EXTRACTED, windows_fn)
    save(result, out_dir)
    return result


def count(cfg: InputConfig) -> tuple[int, float, str]:
    """(frames, fps, pose source summary) as `build` will resample them, without rendering (`vidtune
    plan`): OpenPose JSON is parsed (cheap); image folders and videos are only counted."""
    from vidtune import poses
    from vidtune.video import video_info

    check(cfg)
    path = Path(cfg.poses)
    is_json = path.is_file() and path.suffix.lower() == ".json" or path.is_dir() and any(path.glob(poses.JSON_PATTERN))
    if is_json or not path.exists():
        seq = poses.load_poses(cfg.poses)  # also raises the loader's own error for a missing path
    else:
        info = video_info(path)
        seq = poses.PoseSequence(
            keypoints=np.zeros((info.num_frames, poses.NUM_KEYPOINTS, 3), np.float32),
            images=None,
            width=info.width,
            height=info.height,
            fps=info.fps,
            source=cfg.poses,
            format="images",
            source_frames=info.num_frames,
        )
    num_frames, seq_fps = seq.num_frames, seq.fps
    if cfg.frames or cfg.fps:  # counted, not resampled: a million frames of keypoints are ~1 GB
        num_frames, seq_fps = poses.resampled_size(seq, cfg.frames or None, cfg.fps or None)
    fps = float(cfg.fps or seq_fps or DEFAULT_FPS)
    summary = (
        seq.summary(num_frames) if is_json else f"{path.name}: {num_frames} frames ({seq.source_frames} in the source)"
    )
    return num_frames, fps, summary


def save(inputs: VideoInputs, out_dir: Path) -> None:
    """Write pose PNGs, keypoints.npz and prompts.json atomically."""
    from vidtune.video import write_frames_png

    with atomic.atomic_dir(out_dir / A.INPUT_POSES) as tmp:
        write_frames_png(inputs.pose_images, tmp)
    with atomic.atomic_path(out_dir / A.INPUT_KEYPOINTS) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                keypoints=np.zeros((0,)) if inputs.keypoints is None else inputs.keypoints,
                has_keypoints=inputs.keypoints is not None,
                pose_images=inputs.pose_images,
            )
    atomic.write_json(
        out_dir / A.INPUT_PROMPTS, {"prompts": inputs.prompts, "fps": inputs.fps, "summary": inputs.summary}
    )


def load(out_dir: Path) -> VideoInputs:
    """Read back what `save` wrote."""
    data = np.load(out_dir / A.INPUT_KEYPOINTS)
    meta = json.loads((out_dir / A.INPUT_PROMPTS).read_text())
    kps = data["keypoints"] if bool(data["has_keypoints"]) else None
    return VideoInputs(
        pose_images=data["pose_images"],
        keypoints=kps,
        prompts=meta["prompts"],
        fps=float(meta["fps"]),
        summary=meta["summary"],
    )
