"""How a run's frames become videos: the `[output]` section applied to a stage's PNG frames.

The frames are the result; the videos are views of them for people. Each video gets a record beside
it (``final.video.json``: the frames' size, the integer upscale factor and filter, codec, quality), so a
rerun whose `[output]` differs re-encodes the videos from the frames without rerunning a stage, and
``vidtune evaluate`` can score an upscaled video at the frames' size.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import OutputConfig
from vidtune.errors import VidtuneError
from vidtune.video import VideoWriter, read_frames

H264 = "libx264"
LOSSLESS_CODEC = "ffv1"  # in Matroska, RGB kept as bgr0: bit-exact frames


def upscale_factor(height: int, width: int, upscale: int = 0, min_side: int = 256) -> int:
    """The integer factor frames of ``height`` x ``width`` are enlarged by before H.264 encoding.

    ``upscale > 0`` is taken as it is. ``0`` (auto) is the smallest factor that brings the short side to
    ``min_side``, rounded up to an even factor when it is above 1: with an even factor and nearest
    interpolation every 2x2 block that yuv420p shares one colour sample over lies inside one source
    pixel, so no colour bleeds across the figure's edge. Frames already at ``min_side`` keep factor 1.
    """
    if upscale > 0:
        return int(upscale)
    short = min(height, width)
    if short <= 0 or short >= min_side:
        return 1
    k = -(-min_side // short)  # ceil
    return k + k % 2


def expected_record(output: OutputConfig, fps: float, height: int, width: int) -> dict[str, Any]:
    """What the record of a video of frames ``height`` x ``width`` written with ``output`` says."""
    k = upscale_factor(height, width, output.upscale, output.min_side)
    return {
        "frames_size": [int(width), int(height)],
        "upscale": k,
        "upscale_filter": output.upscale_filter if k > 1 else "none",
        "size": [width * k + (width * k) % 2, height * k + (height * k) % 2],
        "codec": H264,
        "pix_fmt": "yuv420p",
        "quality": float(output.quality),
        "fps": float(fps),
        "lossless": (LOSSLESS_CODEC if output.lossless else None),
        "gif": int(output.gif),
    }


def write_videos(frames: Iterable[np.ndarray], video: Path, output: OutputConfig, fps: float) -> dict[str, Any]:
    """Encode ``frames`` to ``video`` (H.264, upscaled as ``output`` says) and, with ``output.lossless``,
    to its FFV1 twin at the frames' own size; write the record last. Every file is written atomically.
    Returns the record."""
    video = Path(video)
    it = iter(frames)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError(f"{video}: no frames were written; the video was not created") from None
    record = expected_record(output, fps, first.shape[0], first.shape[1])
    writers = [
        VideoWriter(
            video,
            fps=fps,
            quality=output.quality,
            codec=H264,
            scale=record["upscale"],
            interpolation=output.upscale_filter,
        )
    ]
    if output.lossless:
        writers.append(
            VideoWriter(A.lossless_video(video), fps=fps, quality=None, codec=LOSSLESS_CODEC, pix_fmt="bgr0")
        )
    else:
        A.lossless_video(video).unlink(missing_ok=True)  # a twin from an earlier config no longer matches
    preview: list[np.ndarray] | None = [] if output.gif > 0 else None  # frames kept while the video is short
    with contextlib.ExitStack() as stack:  # an exception leaves every target untouched
        opened = [stack.enter_context(w) for w in writers]
        for frame in itertools.chain([first], it):
            for w in opened:
                w.write(frame)
            if preview is not None:
                preview = preview + [frame] if len(preview) < output.gif else None
    gif = A.gif_preview(video)
    if preview:
        write_gif(gif, preview, fps, record["upscale"])
    else:
        gif.unlink(missing_ok=True)  # a preview from an earlier, shorter run or config no longer matches
    atomic.write_json(A.video_record(video), record)
    return record


def write_gif(path: Path, frames: list[np.ndarray], fps: float, scale: int = 1) -> Path:
    """An endlessly looping GIF of ``frames`` at ``fps``, enlarged ``scale`` times (nearest); atomic.
    GIF keeps 256 colours per frame: a preview to share, the PNG frames stay the result."""
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    with atomic.atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path


def read_record(video: Path) -> dict[str, Any] | None:
    """The record beside ``video``, or None (no record, or an unreadable one)."""
    path = A.video_record(Path(video))
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def refresh_videos(frames_dir: Path, video: Path, output: OutputConfig, fps: float) -> bool:
    """Re-encode ``video`` from the PNG frames in ``frames_dir`` when it or its record does not match
    ``output`` (a rerun with another `[output]`, or a run folder from before the records). Returns
    True when it wrote."""
    frames_dir, video = Path(frames_dir), Path(video)
    if not frames_dir.is_dir():
        return False
    first = next(read_frames(frames_dir))
    want = expected_record(output, fps, first.shape[0], first.shape[1])
    have = read_record(video)
    twin_ok = (not output.lossless) or A.lossless_video(video).is_file()
    if video.is_file() and have == want and twin_ok:
        return False
    write_videos(read_frames(frames_dir), video, output, fps)
    return True


@functools.lru_cache(maxsize=1)
def _encoders() -> frozenset[str]:
    import imageio_ffmpeg

    done = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60
    )
    names = set()
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] in "VAS":
            names.add(parts[1])
    return frozenset(names)


def check_encoders(output: OutputConfig) -> None:
    """Every encoder ``output`` needs is in the installed ffmpeg (one line naming the key and the fix)."""
    names = _encoders()
    if H264 not in names:
        raise VidtuneError(
            f"the installed ffmpeg has no {H264} encoder, which the videos need; "
            "reinstall imageio-ffmpeg (pip install --force-reinstall imageio-ffmpeg)"
        )
    if output.lossless and LOSSLESS_CODEC not in names:
        raise VidtuneError(
            f"output.lossless = true needs ffmpeg's {LOSSLESS_CODEC} encoder, which the installed ffmpeg lacks; "
            "set output.lossless = false (the PNG frames are lossless) or install an ffmpeg with ffv1"
        )
