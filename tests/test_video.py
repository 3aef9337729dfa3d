"""Tests for vidtune.video: streamed reading, atomic mp4 writing, png frame folders, GIFs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from vidtune.errors import VidtuneError
from vidtune.video import VideoInfo, VideoWriter, read_frames, video_info, write_frames_png, write_video


def smooth_frames(n: int, h: int, w: int) -> list[np.ndarray]:
    """Smooth gradients that move over time (H.264 keeps these close to the original)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = []
    for t in range(n):
        r = 128 + 100 * np.sin((xx + 3 * t) / w * 2 * np.pi)
        g = 128 + 100 * np.cos((yy - 2 * t) / h * 2 * np.pi)
        b = np.full_like(r, 40 + 15 * t)
        out.append(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    return out


def test_mp4_round_trip(tmp_path):
    frames = smooth_frames(12, 48, 64)
    path = write_video(tmp_path / "clip.mp4", frames, fps=8)
    assert path.exists()
    info = video_info(path)
    assert info == VideoInfo(num_frames=12, fps=8.0, width=64, height=48)
    back = list(read_frames(path))
    assert len(back) == 12
    for a, b in zip(frames, back):
        assert b.shape == (48, 64, 3) and b.dtype == np.uint8
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
    # frames stay in order: the blue channel ramps with t
    blues = [int(np.median(f[..., 2])) for f in back]
    assert blues == sorted(blues) and blues[-1] - blues[0] > 100


def test_odd_size_is_padded_not_scaled(tmp_path):
    frames = smooth_frames(3, 33, 47)
    write_video(tmp_path / "odd.mp4", frames, fps=5)
    back = list(read_frames(tmp_path / "odd.mp4"))
    assert back[0].shape == (34, 48, 3)
    assert np.abs(back[1][:33, :47].astype(int) - frames[1].astype(int)).mean() < 4


def test_writer_leaves_nothing_on_exception(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, fps=4) as w:
            for f in smooth_frames(3, 16, 16):
                w.write(f)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_writer_keeps_old_file_until_success(tmp_path):
    target = tmp_path / "out.mp4"
    write_video(target, smooth_frames(2, 16, 16), fps=4)
    before = target.read_bytes()
    with pytest.raises(ValueError, match="first frame was 16x16"):
        with VideoWriter(target, fps=4) as w:
            w.write(smooth_frames(1, 16, 16)[0])
            w.write(np.zeros((8, 8, 3), np.uint8))
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_writer_with_no_frames_creates_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", fps=4):
            pass
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4", fps=4) as w:
            w.write(np.zeros((8, 8, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_png_folder_round_trip_exact_and_natural_order(tmp_path):
    frames = smooth_frames(3, 10, 12)
    paths = write_frames_png(frames, tmp_path / "f", start_index=8)
    assert [p.name for p in paths] == ["frame_00008.png", "frame_00009.png", "frame_00010.png"]
    back = list(read_frames(tmp_path / "f"))
    for a, b in zip(frames, back):
        np.testing.assert_array_equal(a, b)
    # unpadded numbers: natural order puts 2 before 10
    d = tmp_path / "g"
    d.mkdir()
    for i in (10, 2, 1):
        cv2.imwrite(str(d / f"im{i}.png"), np.full((4, 4, 3), i, np.uint8))
    assert [int(f[0, 0, 0]) for f in read_frames(d)] == [1, 2, 10]
    assert video_info(d) == VideoInfo(num_frames=3, fps=None, width=4, height=4)
    assert not [p for p in (tmp_path / "f").iterdir() if p.name.startswith(".")]  # no temp files left


def test_read_frames_is_lazy(tmp_path):
    write_video(tmp_path / "a.mp4", smooth_frames(20, 16, 16), fps=10)
    it = read_frames(tmp_path / "a.mp4")
    first = next(it)
    assert first.shape == (16, 16, 3)
    it.close()  # stopping early ends the decoder without reading the rest


def test_gif_read(tmp_path):
    frames = smooth_frames(4, 20, 24)
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(tmp_path / "a.gif", save_all=True, append_images=ims[1:], duration=100, loop=0)
    back = list(read_frames(tmp_path / "a.gif"))
    assert len(back) == 4 and back[0].shape == (20, 24, 3)
    info = video_info(tmp_path / "a.gif")
    assert info.num_frames == 4 and info.fps == pytest.approx(10.0) and (info.width, info.height) == (24, 20)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(VidtuneError, match="missing.mp4.*does not exist"):
        read_frames(tmp_path / "missing.mp4")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(VidtuneError, match=r"notes.txt.*unsupported"):
        read_frames(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VidtuneError, match=r"empty.*\*\.png"):
        read_frames(empty)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VidtuneError, match="bad.mp4"):
        list(read_frames(bad))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a1.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(mixed / "a2.png"), np.zeros((6, 4, 3), np.uint8))
    with pytest.raises(VidtuneError, match=r"a2.png.*4x6.*4x4"):
        list(read_frames(mixed))


def test_pose_video_loads_as_images(tmp_path):
    from vidtune.poses import load_poses, resample

    write_video(tmp_path / "poses.mp4", smooth_frames(6, 32, 48), fps=12)
    seq = load_poses(tmp_path / "poses.mp4")
    assert seq.format == "images" and seq.images.shape == (6, 32, 48, 3) and seq.fps == pytest.approx(12.0)
    assert resample(seq, fps=24).num_frames == 11
    assert "6 frames" in seq.summary()


def test_video_file_paths_are_str_or_path(tmp_path):
    write_video(str(tmp_path / "s.mp4"), smooth_frames(2, 16, 16), fps=4)
    assert video_info(str(tmp_path / "s.mp4")).num_frames == 2


def test_written_video_follows_the_umask(tmp_path):
    import os

    from vidtune.video import write_video

    old = os.umask(0o022)
    try:
        path = write_video(tmp_path / "v.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2, fps=8)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
