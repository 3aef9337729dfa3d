"""Read and write videos and frame folders, streamed (a whole video is never held in memory).

Frames are always ``(H, W, 3)`` uint8 RGB arrays. Videos (mp4, webm, avi, mov, mkv) go through
imageio-ffmpeg; GIFs through Pillow; a folder of ``*.png`` / ``*.jpg`` frames is read in natural
order of the file names (``frame_2`` before ``frame_10``).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from vidtune.atomic import atomic_path
from vidtune.errors import VidtuneError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
GIF_SUFFIXES: tuple[str, ...] = (".gif",)
IMAGE_PATTERNS: tuple[str, ...] = ("*.png", "*.jpg", "*.jpeg")
INTERPOLATIONS: dict[str, int] = {"nearest": cv2.INTER_NEAREST, "lanczos": cv2.INTER_LANCZOS4}


@dataclass(frozen=True)
class VideoInfo:
    """What a video or frame folder holds. ``fps`` is None for a frame folder."""

    num_frames: int
    fps: float | None
    width: int
    height: int


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers numerically: ``f2`` < ``f10``."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def list_image_files(folder: str | Path) -> list[Path]:
    """The ``*.png`` / ``*.jpg`` / ``*.jpeg`` files of ``folder`` (not recursive), naturally sorted."""
    folder = Path(folder)
    files = {p for pattern in IMAGE_PATTERNS for p in folder.glob(pattern) if p.is_file()}
    files |= {p for pattern in IMAGE_PATTERNS for p in folder.glob(pattern.upper()) if p.is_file()}
    return sorted(files, key=lambda p: natural_key(p.name))


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise VidtuneError(
            f"{path}: does not exist; give a video file (mp4/gif/webm/avi) or a folder of png/jpg frames"
        )


def _read_image(path: Path) -> np.ndarray:
    """One image file as ``(H, W, 3)`` uint8 RGB (alpha dropped, grey expanded)."""
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise VidtuneError(f"{path}: cannot be decoded as an image; replace or remove the file")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _folder_files(folder: Path) -> list[Path]:
    files = list_image_files(folder)
    if not files:
        raise VidtuneError(
            f"{folder}: no frames found (looked for {', '.join(IMAGE_PATTERNS)}); put the frames in this folder"
        )
    return files


def _iter_folder(files: list[Path]) -> Iterator[np.ndarray]:
    first_size: tuple[int, int] | None = None
    for f in files:
        img = _read_image(f)
        size = (img.shape[1], img.shape[0])
        if first_size is None:
            first_size = size
        elif size != first_size:
            raise VidtuneError(
                f"{f}: frame is {size[0]}x{size[1]} but {files[0].name} is {first_size[0]}x{first_size[1]};"
                " all frames in a folder must have the same size (resize them)"
            )
        yield img


def _iter_gif(path: Path) -> Iterator[np.ndarray]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                yield np.asarray(frame.convert("RGB"), dtype=np.uint8).copy()
    except OSError as e:
        raise VidtuneError(f"{path}: cannot be read as a GIF ({e}); re-export it") from e


def _iter_ffmpeg(path: Path) -> Iterator[np.ndarray]:
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            meta = gen.__next__()
        except (OSError, RuntimeError, StopIteration) as e:
            raise VidtuneError(f"{path}: cannot be read as a video; re-encode it as H.264 mp4") from e
        width, height = meta["size"]
        for buf in gen:
            yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3).copy()
    finally:
        gen.close()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the frames of a video file, GIF or frame folder one at a time.

    Args:
        path: mp4/webm/avi/mov/mkv (ffmpeg), gif (Pillow) or a folder of png/jpg frames (natural
            file-name order; all frames must have the same size).

    Yields:
        ``(H, W, 3)`` uint8 RGB frames.

    Raises:
        VidtuneError: missing path, unsupported suffix, undecodable file, empty folder, or frames of
            different sizes in a folder (naming the first mismatching file).
    """
    p = Path(path)
    _check_exists(p)
    if p.is_dir():
        return _iter_folder(_folder_files(p))
    suffix = p.suffix.lower()
    if suffix in GIF_SUFFIXES:
        return _iter_gif(p)
    if suffix in VIDEO_SUFFIXES:
        return _iter_ffmpeg(p)
    raise VidtuneError(
        f"{p}: unsupported video type {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES)} or a folder of png/jpg frames"
    )


def video_info(path: str | Path) -> VideoInfo:
    """Frame count, frame rate and size of a video, GIF or frame folder (fps None for a folder).

    For ffmpeg videos the frame count is exact (ffmpeg decodes the stream once, without keeping it).
    A GIF's fps is 1000 / mean frame duration in ms (None if the GIF stores no durations).
    """
    p = Path(path)
    _check_exists(p)
    if p.is_dir():
        files = _folder_files(p)
        first = _read_image(files[0])
        return VideoInfo(num_frames=len(files), fps=None, width=first.shape[1], height=first.shape[0])
    suffix = p.suffix.lower()
    if suffix in GIF_SUFFIXES:
        from PIL import Image, ImageSequence

        try:
            with Image.open(p) as im:
                durations = [frame.info.get("duration", 0) for frame in ImageSequence.Iterator(im)]
                width, height = im.size
        except OSError as e:
            raise VidtuneError(f"{p}: cannot be read as a GIF ({e}); re-export it") from e
        mean_ms = float(np.mean(durations)) if durations else 0.0
        return VideoInfo(len(durations), 1000.0 / mean_ms if mean_ms > 0 else None, width, height)
    if suffix in VIDEO_SUFFIXES:
        import imageio_ffmpeg

        gen = imageio_ffmpeg.read_frames(str(p))
        try:
            meta = gen.__next__()
        except (OSError, RuntimeError, StopIteration) as e:
            raise VidtuneError(f"{p}: cannot be read as a video; re-encode it as H.264 mp4") from e
        finally:
            gen.close()
        num_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(p))
        width, height = meta["size"]
        fps = float(meta["fps"]) if meta.get("fps") else None
        return VideoInfo(num_frames=int(num_frames), fps=fps, width=int(width), height=int(height))
    raise VidtuneError(
        f"{p}: unsupported video type {suffix!r}; use one of {', '.join(VIDEO_SUFFIXES + GIF_SUFFIXES)} or a folder of png/jpg frames"
    )


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 RGB arrays, got {frame.dtype} {frame.shape}")
    return frame


class VideoWriter:
    """Stream frames into an H.264 / yuv420p mp4 through imageio-ffmpeg.

    The video is written under a temporary name beside ``path`` and renamed to ``path`` only when
    the ``with`` block ends without an exception (and at least one frame was written); otherwise
    the temporary file is removed and ``path`` is left untouched.

    yuv420p needs even sizes: a frame with an odd width or height is padded by one pixel at the
    right / bottom, repeating the edge pixels (the video is then up to 1 px larger).

    Args:
        path: output file (``.mp4`` recommended; the suffix picks the container).
        fps: frames per second (> 0).
        quality: imageio-ffmpeg quality 1..10 (10 best; H.264's crf is 51 * (1 - quality / 10));
            None passes no quality option (lossless codecs).
        codec: ffmpeg video codec.
        scale: every frame is enlarged by this integer factor before encoding (``interpolation``:
            "nearest" keeps each pixel a solid block, "lanczos" smooths).
        pix_fmt: the encoded pixel format (``yuv420p`` plays everywhere; ``bgr0`` keeps RGB for FFV1).

    Example::

        with VideoWriter("out.mp4", fps=8) as w:
            for frame in frames:
                w.write(frame)
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        quality: float | None = 8,
        codec: str = "libx264",
        scale: int = 1,
        interpolation: str = "nearest",
        pix_fmt: str = "yuv420p",
    ) -> None:
        if not fps or fps <= 0:
            raise ValueError(f"VideoWriter needs fps > 0, got {fps}")
        if quality is not None and not 1 <= quality <= 10:
            raise ValueError(f"VideoWriter quality must be in [1, 10], got {quality}")
        if scale < 1:
            raise ValueError(f"VideoWriter scale must be an integer >= 1, got {scale}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"VideoWriter interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}"
            )
        self.path = Path(path)
        self.fps = float(fps)
        self.quality = quality
        self.codec = codec
        self.scale = int(scale)
        self.interpolation = interpolation
        self.pix_fmt = pix_fmt
        self.num_frames = 0
        self._size: tuple[int, int] | None = None  # (width, height) of the input frames
        self._gen = None
        self._tmp: Path | None = None

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp" + self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(name)
        from vidtune.atomic import apply_umask

        apply_umask(self._tmp)  # mkstemp makes it 0600; the finished video gets the umask's mode like every output
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame; every frame must have the first frame's size."""
        if self._tmp is None:
            raise RuntimeError("VideoWriter.write called outside its `with` block")
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        if self._size is None:
            import imageio_ffmpeg

            self._size = (w, h)
            sw, sh = w * self.scale, h * self.scale
            out_size = (sw + sw % 2, sh + sh % 2)
            self._gen = imageio_ffmpeg.write_frames(
                str(self._tmp), out_size, fps=self.fps, codec=self.codec, pix_fmt_out=self.pix_fmt,
                quality=self.quality, macro_block_size=1, ffmpeg_log_level="error",
            )  # fmt: skip
            self._gen.send(None)
        elif (w, h) != self._size:
            raise ValueError(
                f"{self.path}: frame {self.num_frames} is {w}x{h}, the first frame was {self._size[0]}x{self._size[1]}"
            )
        if self.scale > 1:
            frame = cv2.resize(
                frame, (w * self.scale, h * self.scale), interpolation=INTERPOLATIONS[self.interpolation]
            )
            h, w = frame.shape[:2]
        if w % 2 or h % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._gen.send(np.ascontiguousarray(frame))
        self.num_frames += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tmp, self._tmp = self._tmp, None
        gen, self._gen = self._gen, None
        try:
            if gen is not None:
                gen.close()
            if exc_type is None:
                if self.num_frames == 0:
                    raise ValueError(f"{self.path}: no frames were written; the video was not created")
                os.replace(tmp, self.path)
        finally:
            if tmp is not None and tmp.exists():
                tmp.unlink()


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float, quality: float = 8) -> Path:
    """Write ``frames`` (``(H, W, 3)`` uint8 RGB) to an H.264 mp4 at ``path`` atomically; return the path."""
    with VideoWriter(path, fps=fps, quality=quality) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def write_frames_png(
    frames: Iterable[np.ndarray], out_dir: str | Path, start_index: int = 0, prefix: str = "frame_", digits: int = 5
) -> list[Path]:
    """Write each frame as ``out_dir/{prefix}{index:0{digits}d}.png`` (each file atomically).

    Args:
        frames: ``(H, W, 3)`` uint8 RGB frames.
        out_dir: created if missing.
        start_index: index of the first frame's file name.

    Returns:
        The written paths, in order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames, start=start_index):
        frame = _check_frame(frame)
        target = out / f"{prefix}{i:0{digits}d}.png"
        with atomic_path(target) as tmp:
            ok, buf = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            if not ok:
                raise OSError(f"{target}: PNG encoding failed")
            tmp.write_bytes(buf.tobytes())
        paths.append(target)
    return paths


def label_panel(panel: np.ndarray, text: str, bar: int) -> np.ndarray:
    """A white label bar with `text` above an RGB panel."""
    top = np.full((bar, panel.shape[1], 3), 255, np.uint8)
    scale = max(0.3, min(0.5, panel.shape[1] / 420))
    cv2.putText(top, text, (3, bar - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([top, panel], axis=0)


def grid_video(out_path: Path, panels: list[tuple[str, Path]], fps: float, scale: int = 4, cols: int = 5) -> Path:
    """Frame folders ``panels`` ((label, folder)) played side by side: tiled in rows of ``cols``, each
    upscaled (nearest) and labelled above; mp4. The benchmark's grid of variants, the demo's side by side."""
    streams = [read_frames(p) for _, p in panels]
    rows = math.ceil(len(panels) / cols)
    with VideoWriter(out_path, fps=fps) as writer:
        for frames in zip(*streams):
            tiles = [
                label_panel(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), name, 20)
                for (name, _), f in zip(panels, frames)
            ]
            blank = np.zeros_like(tiles[0])
            tiles += [blank] * (rows * cols - len(tiles))
            grid = np.concatenate(
                [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0
            )
            writer.write(grid)
    return out_path
