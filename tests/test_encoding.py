"""Tests for vidtune.encoding: the upscale factor, upscaled H.264 that keeps a small figure's colour,
the lossless twin, the record, re-encoding on a changed [output], and the encoder check."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from vidtune import encoding
from vidtune.config import OutputConfig
from vidtune.errors import VidtuneError
from vidtune.evaluation.evaluate import at_size
from vidtune.video import VideoWriter, read_frames, video_info, write_frames_png


@pytest.mark.parametrize(
    ("size", "upscale", "factor"),
    [((64, 64), 0, 4), ((96, 128), 0, 4), ((128, 128), 0, 2), ((200, 300), 0, 2), ((256, 512), 0, 1),
     ((512, 512), 0, 1), ((64, 64), 1, 1), ((64, 64), 3, 3), ((40, 64), 0, 8)],
)  # fmt: skip
def test_upscale_factor(size, upscale, factor):
    assert encoding.upscale_factor(*size, upscale=upscale, min_side=256) == factor


def figure_frames(n: int = 6, size: int = 64) -> np.ndarray:
    """A small saturated red figure moving over a still grey-green field (what 4:2:0 chroma bleeds)."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    frames[...] = (120, 140, 110)
    for t in range(n):
        frames[t, 20:44, 24 + t : 30 + t] = (220, 30, 40)  # a 6-px wide torso
    return frames


def red_iou(frames, truth) -> float:
    keyed = [(f[..., 0].astype(int) - f[..., 1] > 80) for f in frames]
    gt = [(g[..., 0].astype(int) - g[..., 1] > 80) for g in truth]
    inter = sum((a & b).sum() for a, b in zip(keyed, gt))
    union = sum((a | b).sum() for a, b in zip(keyed, gt))
    return inter / union


def test_upscaled_mp4_keeps_a_small_figures_colour(tmp_path):
    frames = figure_frames()
    plain = tmp_path / "plain.mp4"
    with VideoWriter(plain, fps=8, quality=8) as w:  # the frames' own size, as before [output]
        for f in frames:
            w.write(f)
    record = encoding.write_videos(frames, tmp_path / "up.mp4", OutputConfig(), fps=8)
    assert record["upscale"] == 4 and record["size"] == [256, 256]
    assert video_info(tmp_path / "up.mp4").width == 256
    up, k = at_size(read_frames(tmp_path / "up.mp4"), (64, 64))
    up = list(up)
    assert k == 4
    near = np.stack([cv2.dilate((f[..., 0] > 200).astype(np.uint8), np.ones((5, 5))) > 0 for f in frames])

    def edge_error(video_frames) -> float:  # worst channel's error on and around the figure, 0-255
        return float(np.abs(np.stack(video_frames).astype(int) - frames).max(-1)[near].mean())

    plain_frames = list(read_frames(plain))
    assert edge_error(up) < 4 < 10 < edge_error(plain_frames)  # measured 1.7 against 14.8
    assert red_iou(up, frames) > 0.97 > 0.9 > red_iou(plain_frames, frames)  # 1.0 against 0.85


def test_lossless_twin_is_bit_exact_and_removed_when_turned_off(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (4, 30, 34, 3), dtype=np.uint8)
    video = tmp_path / "final.mp4"
    record = encoding.write_videos(frames, video, OutputConfig(lossless=True), fps=8)
    twin = tmp_path / "final.mkv"
    assert record["lossless"] == "ffv1" and twin.is_file()
    back = np.stack(list(read_frames(twin)))
    assert back.shape == frames.shape and np.array_equal(back, frames)
    assert json.loads((tmp_path / "final.video.json").read_text()) == record
    encoding.write_videos(frames, video, OutputConfig(lossless=False), fps=8)
    assert not twin.exists()


def test_refresh_reencodes_only_when_the_output_changes(tmp_path):
    folder = tmp_path / "frames"
    write_frames_png(figure_frames(3), folder)
    video = tmp_path / "stage1.mp4"
    assert encoding.refresh_videos(folder, video, OutputConfig(), 8)  # no video yet
    assert not encoding.refresh_videos(folder, video, OutputConfig(), 8)  # it matches
    assert encoding.refresh_videos(folder, video, OutputConfig(upscale=1), 8)
    assert video_info(video).width == 64
    assert encoding.refresh_videos(folder, video, OutputConfig(upscale=1, lossless=True), 8)
    assert (tmp_path / "stage1.mkv").is_file()


def test_a_missing_encoder_is_one_line_naming_the_key(monkeypatch):
    monkeypatch.setattr(encoding, "_encoders", lambda: frozenset({"libx264"}))
    encoding.check_encoders(OutputConfig())
    with pytest.raises(VidtuneError, match=r"^output\.lossless = true needs ffmpeg's ffv1") as e:
        encoding.check_encoders(OutputConfig(lossless=True))
    assert "\n" not in str(e.value)
    monkeypatch.setattr(encoding, "_encoders", lambda: frozenset())
    with pytest.raises(VidtuneError, match="no libx264 encoder"):
        encoding.check_encoders(OutputConfig())


def test_the_installed_ffmpeg_has_both_encoders():
    encoding.check_encoders(OutputConfig(lossless=True))


def test_a_run_with_an_encoder_missing_stops_before_the_model_loads(tmp_path, monkeypatch):
    from vidtune import pipeline
    from vidtune.config import RunConfig, apply_overrides

    monkeypatch.setattr(encoding, "_encoders", lambda: frozenset({"libx264"}))
    cfg = apply_overrides(RunConfig(), ["output.lossless=true", f"inputs.poses={tmp_path / 'missing'}"])
    with pytest.raises(VidtuneError, match="output.lossless"):
        pipeline.run(cfg, tmp_path / "run", components=lambda: pytest.fail("the model loaded"))
    assert not (tmp_path / "run").exists()


def test_a_short_video_gets_a_looping_gif_preview_a_long_one_none(tmp_path):
    from PIL import Image

    frames = figure_frames(5)
    video = tmp_path / "final.mp4"
    record = encoding.write_videos(frames, video, OutputConfig(), fps=8)
    gif = tmp_path / "final.gif"
    with Image.open(gif) as im:
        assert im.n_frames == 5 and im.size == tuple(record["size"]) and im.info["loop"] == 0
        assert abs(im.info["duration"] - 125) <= 10  # 8 fps (GIF stores centiseconds)
        first = np.asarray(im.convert("RGB"))
    k = record["upscale"]
    assert np.abs(first[::k, ::k].astype(int) - frames[0]).mean() < 8  # the first frame, enlarged (256 colours)
    encoding.write_videos(frames, video, OutputConfig(gif=4), fps=8)  # longer than output.gif: no preview
    assert not gif.exists()
    encoding.write_videos(frames, video, OutputConfig(gif=0), fps=8)
    assert not gif.exists()


def test_side_by_side_panels_are_labelled(tmp_path):
    from vidtune.demo.command import side_by_side

    a, b = tmp_path / "a", tmp_path / "b"
    write_frames_png(figure_frames(2), a)
    write_frames_png(figure_frames(2)[:, ::-1], b)
    out = side_by_side(tmp_path / "side.mp4", [("stage 1", a), ("final", b)], fps=8, scale=2)
    first = next(read_frames(out))
    assert first.shape[:2] == (20 + 2 * 64, 2 * 2 * 64)  # a label bar above two panels
    bar = first[:20].astype(int)
    assert (bar > 200).mean() > 0.8 and (bar < 100).any(axis=-1).sum() > 20  # white, with dark text in it
