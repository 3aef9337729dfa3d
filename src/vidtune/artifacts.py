"""Every file and folder name of a run folder, in one place (docs/usage.md, the run folder).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.artifacts`.
"""

from __future__ import annotations

from pathlib import Path

CONFIG = "config.toml"
INPUTS = "inputs"
EXTRACTED = "extracted"  # under inputs/: poses extracted from footage (a cache)
INPUT_POSES = "poses"  # under inputs/: the pose images the stages were conditioned on
INPUT_KEYPOINTS = "keypoints.npz"
INPUT_PROMPTS = "prompts.json"
FINAL_VIDEO = "final.mp4"
DONE = "done.json"
LATENTS = "latents.safetensors"
FRAMES = "frames"
MASKS = "masks"
STAGE_MASKS = "masks.safetensors"  # stage 2: the foreground masks it fused with
FUSION_WEIGHTS = "weights.json"
TUNING_INFO = "tuning.json"
LOSS_CSV = "loss.csv"
LOSS_PLOT = "loss.png"
CHECKPOINTS = "checkpoints"
LORA_CONFIG = "unet_lora_config.json"
TUNED_WEIGHTS = {"full": "unet", "lora": "unet_lora.safetensors", "attention": "unet_attention.safetensors"}


def stage_dir(k: int) -> str:
    """The folder of stage k (`stage1` ...)."""
    return f"stage{k}"


def stage_of(folder_name: str) -> int | None:
    """The stage whose folder is `folder_name` (`stage_dir`'s inverse; None for another name)."""
    number = folder_name.removeprefix("stage")
    return int(number) if number != folder_name and number.isdigit() else None


def lossless_video(video: Path) -> Path:
    """The lossless twin of a video (`final.mp4` -> `final.mkv`, written with `output.lossless`)."""
    return video.with_suffix(".mkv")


def gif_preview(video: Path) -> Path:
    """The GIF preview of a short video (`final.mp4` -> `final.gif`, written up to `output.gif` frames)."""
    return video.with_suffix(".gif")


def video_record(video: Path) -> Path:
    """The record of how a video was encoded, beside it (`final.mp4` -> `final.video.json`)."""
    return video.with_name(video.stem + ".video.json")
