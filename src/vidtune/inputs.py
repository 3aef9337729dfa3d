"""Prepare a run's inputs once: pose images at the generation size, keypoints, per-frame prompts.

Written to `inputs/` in the run folder (pose PNGs + keypoints.npz + prompts.json) and read back
on a rerun, so every stage sees exactly the same conditioning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import InputConfig
from vidtune.errors import VidtuneError

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


def prompt_schedule(cfg: InputConfig) -> str | list[str] | dict[int, str]:
    """The prompt schedule the config describes: ranges > per-clip list > one prompt."""
    if cfg.prompts:
        try:
            return {int(k): v for k, v in cfg.prompts.items()}
        except ValueError:
            raise VidtuneError(f"inputs.prompts: keys must be first-frame numbers, got {list(cfg.prompts)}") from None
    if cfg.clip_prompts:
        return list(cfg.clip_prompts)
    if not cfg.prompt:
        raise VidtuneError("inputs.prompt is empty: pass --prompt TEXT or set [inputs] prompt in the config")
    return cfg.prompt


def per_frame_prompts(
    num_frames: int, schedule: str | list[str] | dict[int, str], windows: list[tuple[int, int]] | None = None
) -> list[str]:
    """Each frame's prompt for the per-frame stages; a per-clip list maps a frame to the clip
    whose centre is nearest (the windows must be given for that)."""
    from vidtune.windows import frame_prompts

    if isinstance(schedule, list):
        if windows is None or len(windows) != len(schedule):
            count = "?" if windows is None else len(windows)
            raise VidtuneError(
                f"inputs.clip_prompts has {len(schedule)} prompts but stage 4 makes {count} clips; "
                "give one prompt per clip or use inputs.prompts ranges"
            )
        centres = np.array([(s + e - 1) / 2 for s, e in windows])
        return [schedule[int(np.argmin(np.abs(centres - f)))] for f in range(num_frames)]
    return frame_prompts(num_frames, schedule)


def prepare(cfg: InputConfig, out_dir: Path, windows_fn=None) -> VideoInputs:
    """Load, clean, resample and render the pose source; write `out_dir` (inputs/); return it.

    Footage of a person (`inputs.pose_source` = "rgb", or "auto" and it does not look like a pose
    render) has its poses extracted once into `out_dir/extracted/` (OpenPose JSON, smoothed).
    """
    from vidtune import pose_extract, poses

    if not cfg.poses:
        raise VidtuneError(
            "inputs.poses is empty: pass --poses PATH (OpenPose JSON folder, pose images, a pose video "
            "or an RGB video of a person)"
        )
    if cfg.height % 8 or cfg.width % 8:
        raise VidtuneError(f"inputs.height/width must be multiples of 8, got {cfg.height}x{cfg.width}")
    source = pose_extract.prepare_pose_source(cfg.poses, cfg.pose_source, out_dir / "extracted")
    seq = poses.load_poses(source.path, canvas=source.canvas, fps=source.fps)
    if cfg.frames or cfg.fps:
        seq = poses.resample(seq, num_frames=cfg.frames or None, fps=cfg.fps or None)
    images = poses.render_sequence(seq, cfg.height, cfg.width, framing=cfg.framing)
    keypoints = None if seq.keypoints is None else poses.frame_poses(seq, cfg.height, cfg.width, framing=cfg.framing)
    fps = float(cfg.fps or seq.fps or DEFAULT_FPS)
    windows = windows_fn(len(images)) if windows_fn is not None else None
    prompts = per_frame_prompts(len(images), prompt_schedule(cfg), windows)
    result = VideoInputs(pose_images=images, keypoints=keypoints, prompts=prompts, fps=fps, summary=seq.summary())
    save(result, out_dir)
    return result


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
