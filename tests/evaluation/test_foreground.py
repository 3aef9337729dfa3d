"""Known answers of the figure metrics (``vidtune.evaluation.foreground``) on synthetic videos.

The video: a textured background and a figure (head, a shirt with horizontal stripes, trousers, a
little cloth shading) that walks back and forth 2 px per frame; its mask is its box. Variants flip
the shirt's pattern every other frame, drift its colour, or brighten the background.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from vidtune.evaluation import foreground as F
from vidtune.evaluation import metrics as M
from vidtune.evaluation.evaluate import evaluate_video
from vidtune.video import write_frames_png

H = W = 64
FIG_H, FIG_W, FIG_Y = 36, 16, 14
SHIRT = (200, 60, 50)
STRIPES = {"stripes": (240, 230, 220), "other": (40, 80, 200), "plain": None}


def texture(seed: int, size: int) -> np.ndarray:
    """A smooth random colour texture, uint8 (size, size, 3)."""
    base = np.random.default_rng(seed).integers(0, 256, (size // 4, size // 4, 3)).astype(np.uint8)
    return cv2.GaussianBlur(cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC), (0, 0), 1.5)


SHADE = (texture(7, 4 * FIG_H)[:FIG_H, :FIG_W].astype(np.int16) - 128) // 8  # about +-16 levels


def figure(pattern: str, shift: tuple[int, int, int]) -> np.ndarray:
    """uint8 (FIG_H, FIG_W, 3): head, shirt (rows 8-23, stripes 4 rows high, RGB ``shift`` added), trousers."""
    fig = np.empty((FIG_H, FIG_W, 3), np.int16)
    fig[:8] = (230, 180, 150)
    fig[8:24] = SHIRT
    if STRIPES[pattern] is not None:
        rows = np.arange(8, 24)
        fig[rows[(rows // 4) % 2 == 1]] = STRIPES[pattern]
    fig[8:24] += np.asarray(shift, np.int16)
    fig[24:] = (40, 40, 90)
    return np.clip(fig + SHADE, 0, 255).astype(np.uint8)


def video(
    n: int,
    pattern: Callable[[int], str] = lambda i: "stripes",
    shift: Callable[[int], tuple[int, int, int]] = lambda i: (0, 0, 0),
    bg_offset: Callable[[int], int] = lambda i: 0,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(frames, 0/255 masks) of frame i: the figure at x = 4 + a triangle wave of 2 px per frame."""
    bg = texture(0, H).astype(np.int16)
    span = W - FIG_W - 8
    frames, masks = [], []
    for i in range(n):
        x = (2 * i) % (2 * span)
        x = 4 + (x if x < span else 2 * span - x)
        frame = np.clip(bg + bg_offset(i), 0, 255).astype(np.uint8)
        frame[FIG_Y : FIG_Y + FIG_H, x : x + FIG_W] = figure(pattern(i), shift(i))
        mask = np.zeros((H, W), np.uint8)
        mask[FIG_Y : FIG_Y + FIG_H, x : x + FIG_W] = 255
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def flipping(other: str) -> Callable[[int], str]:
    return lambda i: "stripes" if i % 2 == 0 else other


def noisy(frames: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


# ------------------------------------------------------------------------------------------
# Pure functions
# ------------------------------------------------------------------------------------------


def test_gradient_histogram_bins_orientation_and_magnitude() -> None:
    y, x = np.mgrid[0:12, 0:12].astype(np.float32)
    region = np.ones((12, 12), bool)
    lab = lambda ch0: np.dstack([ch0, np.zeros_like(ch0), np.zeros_like(ch0)])  # noqa: E731
    flat = F.gradient_histogram(lab(np.full_like(x, 50.0)), region)
    assert flat[0] == 1.0 and flat.sum() == pytest.approx(1.0)
    # a ramp of slope 4 Lab units / px along x: magnitude level [2, 6), orientation 0 degrees -> bin 1
    along_x = F.gradient_histogram(lab(4.0 * x), region)
    assert along_x[1] == pytest.approx(1.0)
    # slope 10 along y: level [6, 18), orientation 90 degrees (bin 4 of 8) -> bin 1 + 8 + 4
    along_y = F.gradient_histogram(lab(10.0 * y), region)
    assert along_y[1 + F.ORIENTATIONS + 4] == pytest.approx(1.0)
    # the strongest channel counts (here b, channel 2), and the outline does not: only the eroded region
    b_ramp = np.dstack([np.full_like(x, 50.0), np.zeros_like(x), 4.0 * x])
    assert F.gradient_histogram(b_ramp, region)[1] == pytest.approx(1.0)
    step = lab(np.where(x < 6, 0.0, 100.0))
    assert F.gradient_histogram(step, x < 6)[0] == 1.0  # the edge at x = 6 lies outside the eroded region
    assert F.gradient_histogram(lab(x), np.eye(12, dtype=bool)) is None  # 1 px wide: nothing inside


def test_colour_distance_is_the_gaussian_wasserstein_distance() -> None:
    a = F.Appearance(np.array([50.0, 0.0, 0.0]), np.array([1.0, 2.0, 3.0]), None, 10)
    b = F.Appearance(np.array([53.0, 4.0, 0.0]), np.array([1.0, 2.0, 3.0]), None, 10)
    c = F.Appearance(np.array([50.0, 0.0, 0.0]), np.array([1.0, 2.0, 15.0]), None, 10)
    assert F.color_distance(a, b) == pytest.approx(5.0)  # equal stds: the CIE76 difference of the means
    assert F.color_distance(a, c) == pytest.approx(12.0)
    assert math.isnan(F.texture_distance(a, b))  # no texture: nan, never a guess
    frames, masks = video(1)
    same = F.figure_appearance(frames[0], masks[0] > 0)
    assert same.pixels == FIG_H * FIG_W and F.color_distance(same, same) == 0.0
    assert F.texture_distance(same, same) == 0.0 and same.texture.sum() == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------
# fg_appearance: steady, flipping, drifting
# ------------------------------------------------------------------------------------------


def test_a_figure_that_only_moves_scores_zero() -> None:
    frames, masks = video(24)
    out = M.compute(F.FgAppearance(), frames, masks)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in out["metrics"].values()), out["metrics"]
    assert out["notes"] == []
    grainy = M.compute(F.FgAppearance(), noisy(frames, 2.0), masks)["metrics"]  # sensor-like noise: still small
    assert grainy["color"] < 0.5 and grainy["texture"] < 0.1


@pytest.mark.parametrize("other", ["plain", "other"])
def test_a_shirt_pattern_that_flips_scores_worse(other: str) -> None:
    frames, masks = video(24)
    flipped, _ = video(24, pattern=flipping(other))
    steady = M.compute(F.FgAppearance(), noisy(frames, 2.0), masks)["metrics"]
    flip = M.compute(F.FgAppearance(), noisy(flipped, 2.0), masks)["metrics"]
    # measured: colour 0.16 steady, 19 (stripes <-> plain) and 26 (stripes of another colour) flipped
    assert flip["color"] > 10.0 > 20 * steady["color"]
    assert flip["color_vs_first"] > 5.0  # half the frames differ from frame 0
    if other == "plain":  # stripes <-> plain changes the texture too (0.19 against 0.05)
        assert flip["texture"] > 2 * steady["texture"]
    # the flow-warped error inside the mask is WarpErrorDIS's fg: 0.0033 steady, 0.05-0.07 flipped
    warp_steady = M.compute(M.WarpErrorDIS(), frames, masks)["metrics"]
    warp_flip = M.compute(M.WarpErrorDIS(), flipped, masks)["metrics"]
    assert warp_flip["fg"] > 10 * warp_steady["fg"]
    assert warp_flip["bg"] < 0.2 * warp_flip["fg"]  # the background did not change


def test_a_slow_colour_drift_has_a_slope_against_frame_0() -> None:
    frames, masks = video(48, shift=lambda i: (-i, i // 2, i))  # the shirt turns from red to purple
    out = M.compute(F.FgAppearance(), frames, masks)["metrics"]
    # measured: frame to frame 0.36 Lab units, against frame 0 8.6 on average, slope 34 per 100 frames
    assert out["color"] < 1.0
    assert out["color_vs_first"] > 10 * out["color"]
    assert out["color_slope"] > 20.0
    buckets = M.compute(F.FgAppearance(), frames, masks)["buckets"]
    assert buckets[0]["metrics"]["color_vs_first"] < buckets[-1]["metrics"]["color_vs_first"]


# ------------------------------------------------------------------------------------------
# drift_long: 480 frames, clip to clip
# ------------------------------------------------------------------------------------------


def test_long_drift_is_zero_for_a_steady_480_frame_video() -> None:
    frames, masks = video(480)
    out = M.compute(F.DriftLong(), frames, masks)
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in out["metrics"].values()), out["metrics"]
    assert out["notes"] == [] and len(out["buckets"]) == M.num_buckets(480, 16)


def test_long_drift_of_the_figure_leaves_the_background_at_zero() -> None:
    frames, masks = video(480, shift=lambda i: (-(i // 4), i // 8, i // 4))
    out = M.compute(F.DriftLong(), frames, masks)
    m = out["metrics"]
    # measured: figure 17 Lab units on average, 28 at most, slope 5.7 per 100 frames; background 0
    assert m["fg_color_slope"] > 3.0 and m["fg_color_max"] > m["fg_color_mean"] > 5.0
    assert m["bg_mean"] == m["bg_max"] == m["bg_slope"] == 0.0
    # a clip's distance goes to the bucket of its last frame: clip k (frames 16k..16k+15) -> bucket k
    per_bucket = [b["metrics"]["fg_color_mean"] for b in out["buckets"]]
    assert math.isnan(per_bucket[0]) and per_bucket[1] < per_bucket[10] < per_bucket[-1]


def test_long_drift_of_the_background_has_the_slope_it_was_given() -> None:
    frames, masks = video(480, bg_offset=lambda i: i // 10)  # +0.1 level per frame: 10 per 100 frames
    m = M.compute(F.DriftLong(), frames, masks)["metrics"]
    assert m["bg_slope"] == pytest.approx(10.0, rel=0.05)
    assert m["fg_color_mean"] == m["fg_texture_mean"] == 0.0


def test_reading_the_result_mid_stream_changes_nothing() -> None:
    frames, masks = video(56, shift=lambda i: (i, 0, -i))
    whole = F.DriftLong(bucket=8, clip=8)
    M.run([whole], frames, masks)
    peeked = F.DriftLong(bucket=8, clip=8)
    for step in M.iter_steps(frames, masks):
        peeked.update(step)
        if step.index in (3, 20, 21):  # inside the first clip, inside a later one
            peeked.result()
            peeked.bucket_results()
    assert peeked.result() == whole.result() and peeked.bucket_results() == whole.bucket_results()
    with pytest.raises(ValueError, match="clip must be"):
        F.DriftLong(clip=0)


# ------------------------------------------------------------------------------------------
# Missing input: None and a note, never an error
# ------------------------------------------------------------------------------------------


def test_no_masks_or_empty_masks_give_nan_and_a_note() -> None:
    frames, masks = video(40)
    out = M.compute(F.FgAppearance(), frames)
    assert all(math.isnan(v) for v in out["metrics"].values()) and "--masks" in out["notes"][0]
    long = M.compute(F.DriftLong(), frames)
    assert math.isnan(long["metrics"]["fg_color_mean"]) and math.isfinite(long["metrics"]["bg_mean"])
    assert any("whole frame" in n for n in long["notes"])
    empty = [np.zeros_like(m) for m in masks]
    out = M.compute(F.FgAppearance(), frames, empty)
    assert all(math.isnan(v) for v in out["metrics"].values()) and "40 of 40 frames" in out["notes"][0]
    assert math.isnan(M.compute(F.DriftLong(), frames, empty)["metrics"]["fg_color_max"])
    # a few empty frames are skipped: the rest still scores 0 (the figure only moves)
    gaps = [np.zeros_like(m) if i in (5, 6, 30) else m for i, m in enumerate(masks)]
    out = M.compute(F.FgAppearance(), frames, gaps)
    assert out["metrics"]["color"] == 0.0 and "3 of 40 frames" in out["notes"][0]
    short = M.compute(F.DriftLong(), frames[:20], masks[:20])
    assert math.isnan(short["metrics"]["bg_slope"]) and "slope needs 3" in short["notes"][0]


def test_evaluate_video_reports_the_figure_metrics(tmp_path: Path) -> None:
    frames, masks = video(20, pattern=flipping("plain"))
    write_frames_png(frames, tmp_path / "frames")
    (tmp_path / "masks").mkdir()
    for i, m in enumerate(masks):
        cv2.imwrite(str(tmp_path / "masks" / f"mask_{i:03d}.png"), m)
    result = evaluate_video(str(tmp_path / "frames"), masks=str(tmp_path / "masks"))
    assert {"fg_appearance", "drift_long"} <= set(result["metrics"]) and set(M.WEIGHT_FREE) <= set(result["metrics"])
    assert result["metrics"]["fg_appearance"] == pytest.approx(M.compute(F.FgAppearance(), frames, masks)["metrics"])
    assert result["metrics"]["fg_appearance"]["color"] > 10.0
    assert result["metrics"]["drift_long"]["fg_color_slope"] is None  # 2 clips: no slope (null in JSON)
    json.dumps(result, allow_nan=False)
    assert F.METRICS["fg_appearance"] is F.FgAppearance


def test_evaluate_video_says_why_the_figure_metrics_are_null(tmp_path: Path) -> None:
    frames, _ = video(6, pattern=flipping("plain"))
    write_frames_png(frames, tmp_path / "frames")
    result = evaluate_video(str(tmp_path / "frames"))  # no masks: no figure to look at
    assert result["metrics"]["fg_appearance"]["color"] is None
    assert any("mask" in n for n in result["notes"]), result["notes"]
