"""Properties of stage 4's pure math: windows, merge weights, merging, prompt schedules, plan."""

from __future__ import annotations

import pytest
import torch

from vidtune.errors import VidtuneError
from vidtune.method.prompts import assign_prompts, frame_prompts, majority_prompts
from vidtune.method.windows import (
    MERGE_WEIGHTS,
    MergeAccumulator,
    clip_position_weights,
    clip_windows,
    frame_merge_weights,
    merge_predictions,
    pixel_merge_weights,
    shift_offset,
    shifted_windows,
)
from vidtune.plan import plan_text

KINDS = sorted(MERGE_WEIGHTS)


# --- shifted windows (codenoise.mode = "shifted") ---------------------------------------------


def test_shifted_windows_tile_the_video_with_bounded_clips_exhaustive():
    for n in range(1, 90):
        for m in range(1, 20):
            for step in range(0, 24):
                windows = shifted_windows(n, m, step, shrink_clip=True)
                assert windows[0][0] == 0 and windows[-1][1] == n
                assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))  # every frame exactly once
                if n <= m:
                    assert windows == [(0, n)]
                    continue
                lengths = [e - s for s, e in windows]
                assert min(lengths) >= (m + 1) // 2 and max(lengths) <= 2 * m - 1
                if n >= 2 * m:  # only a short video's two end pieces can join the same clip
                    assert max(lengths) <= m + (m + 1) // 2 - 1
                # the inner boundaries sit at o_j + kM: they move with the step's offset
                off = shift_offset(step, m)
                assert all((s - off) % m == 0 for s, _ in windows[1:])


def test_shifted_boundaries_visit_every_offset_and_never_repeat_at_consecutive_steps():
    for m in (2, 4, 8, 16, 32):
        offsets = [shift_offset(j, m) for j in range(64)]
        for start in range(0, 64 - m + 1, m):
            assert sorted(offsets[start : start + m]) == list(range(m))  # M consecutive steps: each offset once
        assert all(a != b for a, b in zip(offsets, offsets[1:]))
    assert [shift_offset(j, 8) for j in range(8)] == [0, 4, 2, 6, 1, 5, 3, 7]


def test_shifted_windows_reject_short_videos_unless_shrunk():
    with pytest.raises(VidtuneError, match="shrink_clip"):
        shifted_windows(5, 8, 0)
    with pytest.raises(ValueError):
        shift_offset(-1, 8)


def test_majority_prompts_follow_most_frames_and_break_ties_by_order():
    prompts = ["a"] * 5 + ["b"] * 3 + ["c"] * 4
    assert majority_prompts([(0, 6), (5, 9), (8, 12), (4, 8)], prompts) == ["a", "b", "c", "b"]
    assert majority_prompts([(3, 7)], ["a", "a", "a", "a", "a", "b", "b", "a"]) == ["a"]
    assert majority_prompts([(4, 6)], ["x"] * 4 + ["a", "b"]) == ["a"]  # tie: the first in the clip


# --- clip_windows ------------------------------------------------------------------------------


def test_clip_windows_cover_every_frame_exhaustive():
    for n in range(1, 201):
        for m in range(1, 33):
            for s in range(1, m + 1):
                if n < m:
                    windows = clip_windows(n, m, s, shrink_clip=True)
                    assert windows == [(0, n)]
                    continue
                windows = clip_windows(n, m, s)
                assert windows[0][0] == 0
                assert windows[-1][1] == n
                prev_start, prev_end = -1, 0
                for start, end in windows:
                    assert end - start == m
                    assert start > prev_start  # strictly increasing
                    assert start <= prev_end  # overlap or touch: no gap
                    prev_start, prev_end = start, end


def test_clip_windows_regular_part_and_tail():
    assert clip_windows(32, 16, 8) == [(0, 16), (8, 24), (16, 32)]
    # Gen-L-Video would stop at (16, 32) and drop frames 32-36; the tail clip covers them
    assert clip_windows(37, 16, 8) == [(0, 16), (8, 24), (16, 32), (21, 37)]
    assert clip_windows(16, 16, 4) == [(0, 16)]
    assert clip_windows(10, 4, 4) == [(0, 4), (4, 8), (6, 10)]


@pytest.mark.parametrize(
    "args, field",
    [
        ((0, 4, 2), "num_frames"),
        ((-3, 4, 2), "num_frames"),
        ((10, 0, 1), "codenoise.clip_length"),
        ((10, -1, 1), "codenoise.clip_length"),
        ((10, 4, 0), "codenoise.stride"),
        ((10, 4, -2), "codenoise.stride"),
        ((10, 4, 5), "codenoise.stride"),
        ((3, 4, 2), "codenoise.clip_length"),
        ((10, 4.0, 2), "codenoise.clip_length"),
    ],
)
def test_clip_windows_errors_name_the_field(args, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        clip_windows(*args)


def test_clip_windows_short_video_suggests_shrink():
    with pytest.raises(VidtuneError, match="shrink_clip"):
        clip_windows(3, 16, 8)


# --- merge weights -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("length", [1, 2, 3, 8, 16, 17])
def test_position_weights_positive_and_symmetric(kind, length):
    w = clip_position_weights(length, kind)
    assert w.shape == (length,)
    assert (w > 0).all()
    assert torch.allclose(w, w.flip(0))


@pytest.mark.parametrize("kind", ["triangular", "gaussian"])
def test_position_weights_peak_in_the_middle(kind):
    w = clip_position_weights(17, kind)
    assert int(w.argmax()) == 8
    assert (w[1:9] > w[:8]).all()  # rising towards the centre


def test_unknown_weighting_names_the_field():
    with pytest.raises(VidtuneError, match=r"codenoise\.weighting"):
        clip_position_weights(8, "cosine")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, m, s", [(37, 16, 8), (16, 16, 4), (50, 8, 3), (9, 4, 4), (1, 1, 1)])
def test_frame_weights_columns_sum_to_one(kind, n, m, s):
    windows = clip_windows(n, m, s)
    w = frame_merge_weights(n, windows, kind)
    assert w.shape == (len(windows), n)
    assert torch.allclose(w.sum(dim=0), torch.ones(n))
    for k, (start, end) in enumerate(windows):
        assert (w[k, :start] == 0).all() and (w[k, end:] == 0).all()
        assert (w[k, start:end] > 0).all()


def test_uniform_weights_are_one_over_coverage():
    n = 37
    windows = clip_windows(n, 16, 8)
    w = frame_merge_weights(n, windows, "uniform")
    count = torch.zeros(n)
    for start, end in windows:
        count[start:end] += 1
    assert torch.allclose(w, (w > 0) / count)


def test_frame_weights_reject_uncovered_frames():
    with pytest.raises(ValueError, match="frames 4-5"):
        frame_merge_weights(8, [(0, 4), (6, 8)], "uniform")


def test_pixel_weights_zero_gain_or_background_equal_frame_weights():
    n = 20
    windows = clip_windows(n, 8, 3)
    fw = frame_merge_weights(n, windows, "triangular")
    fg = torch.rand(n, 1, 5, 6, generator=torch.Generator().manual_seed(0))
    pw = pixel_merge_weights(fw, windows, fg, fg_gain=0.0)
    assert pw.shape == (len(windows), n, 1, 5, 6)
    assert torch.allclose(pw, fw[:, :, None, None, None].expand_as(pw), atol=1e-6)
    pw_bg = pixel_merge_weights(fw, windows, torch.zeros(n, 1, 5, 6), fg_gain=5.0)
    assert torch.allclose(pw_bg, pw, atol=1e-6)


def test_pixel_weights_sharpen_towards_central_clip_in_foreground():
    n = 20
    windows = clip_windows(n, 8, 4)  # (0,8), (4,12), (8,16), (12,20)
    fw = frame_merge_weights(n, windows, "uniform")
    fg = torch.zeros(n, 1, 1, 2)
    fg[:, :, :, 1] = 1.0  # pixel 1 is foreground in every frame
    pw = pixel_merge_weights(fw, windows, fg, fg_gain=50.0)
    assert torch.allclose(pw.sum(dim=0), torch.ones(n, 1, 1, 2))
    assert ((pw == 0) == (fw == 0)[:, :, None, None, None]).all()  # support unchanged
    # frame 7: clip 0 (centre 3.5, d = 1) vs clip 1 (centre 7.5, d = 0.14): clip 1 dominates in the fg
    assert pw[1, 7, 0, 0, 1] > 0.99
    assert torch.allclose(pw[:, 7, 0, 0, 0], fw[:, 7])  # background keeps the plain weights
    huge = pixel_merge_weights(fw, windows, fg, fg_gain=1e6)  # no underflow / NaN
    assert torch.isfinite(huge).all() and torch.allclose(huge.sum(dim=0), torch.ones(n, 1, 1, 2))


def test_pixel_weights_reject_negative_gain():
    windows = clip_windows(8, 4, 2)
    with pytest.raises(VidtuneError, match=r"codenoise\.fg_gain"):
        pixel_merge_weights(frame_merge_weights(8, windows), windows, torch.zeros(8, 1, 2, 2), -1.0)


# --- merging -----------------------------------------------------------------------------------


def _clip_preds(video: torch.Tensor, windows, noise: float = 0.0, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [video[s:e] + noise * torch.randn(video[s:e].shape, generator=g) for s, e in windows]


@pytest.mark.parametrize("kind", KINDS)
def test_merge_of_identical_predictions_returns_them(kind):
    n = 23
    video = torch.randn(n, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    windows = clip_windows(n, 8, 5)
    weights = frame_merge_weights(n, windows, kind)
    merged = merge_predictions(_clip_preds(video, windows), windows, weights)
    assert merged.shape == video.shape
    assert torch.allclose(merged, video, atol=1e-6)
    fg = torch.rand(n, 1, 3, 5)
    merged_px = merge_predictions(_clip_preds(video, windows), windows, pixel_merge_weights(weights, windows, fg, 3.0))
    assert torch.allclose(merged_px, video, atol=1e-6)


def test_merge_is_the_weighted_average():
    windows = [(0, 2), (1, 3)]
    weights = torch.tensor([[1.0, 0.25, 0.0], [0.0, 0.75, 1.0]])
    a = torch.full((2, 1, 1, 1), 2.0)
    b = torch.full((2, 1, 1, 1), 6.0)
    merged = merge_predictions([a, b], windows, weights)
    assert merged.flatten().tolist() == [2.0, 0.25 * 2 + 0.75 * 6, 6.0]


def test_accumulator_in_batches_equals_one_shot_merge():
    n = 30
    video = torch.randn(n, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    windows = clip_windows(n, 8, 3)
    weights = frame_merge_weights(n, windows, "gaussian")
    preds = _clip_preds(video, windows, noise=0.5)
    expected = merge_predictions(preds, windows, weights)
    acc = MergeAccumulator(n)
    order = list(range(len(windows)))[::-1]  # any order, any batching
    for batch in (order[:3], order[3:4], order[4:]):
        for k in batch:
            s, e = windows[k]
            acc.add(windows[k], preds[k], weights[k, s:e] * 7.0)  # unnormalised weights are fine
    assert torch.allclose(acc.result(), expected, atol=1e-6)
    acc.reset()
    with pytest.raises(ValueError, match="no clip"):
        acc.result()


def test_accumulator_keeps_dtype_and_reports_uncovered_frames():
    acc = MergeAccumulator(6)
    pred = torch.ones(3, 2, 2, 2, dtype=torch.float16)
    acc.add((0, 3), pred, torch.ones(3))
    with pytest.raises(ValueError, match="frames 3-5"):
        acc.result()
    acc.add((3, 6), pred, torch.ones(3))
    out = acc.result()
    assert out.dtype == torch.float16 and torch.equal(out, torch.ones(6, 2, 2, 2, dtype=torch.float16))
    with pytest.raises(ValueError, match="pred"):
        acc.add((0, 2), pred, torch.ones(2))


# --- prompts -----------------------------------------------------------------------------------


def test_single_prompt_and_per_clip_list():
    windows = clip_windows(20, 8, 4)
    assert assign_prompts(windows, "a dancer") == ["a dancer"] * len(windows)
    per_clip = [f"p{k}" for k in range(len(windows))]
    assert assign_prompts(windows, per_clip) == per_clip


def test_per_clip_list_of_wrong_length_names_prompt_and_counts():
    windows = clip_windows(20, 8, 4)  # 4 clips
    with pytest.raises(VidtuneError, match=r"prompt.*3 prompts.*4 clips"):
        assign_prompts(windows, ["a", "b", "c"])


def test_ranges_majority_rule_and_ties_go_earlier():
    windows = [(0, 8), (4, 12), (8, 16), (12, 20)]
    schedule = {0: "walk", 10: "run"}
    # clip (4,12): 6 frames walk vs 2 run; (8,16): 2 vs 6; (0,8): all walk; (12,20): all run
    assert assign_prompts(windows, schedule) == ["walk", "walk", "run", "run"]
    # tie: clip (4, 12) has 4 frames in each range -> the earlier one
    assert assign_prompts([(0, 8), (4, 12), (12, 20)], {0: "walk", 8: "run"}) == ["walk", "walk", "run"]
    # keys as TOML writes them (strings), three ranges, middle one holding most of a clip
    assert assign_prompts([(0, 10), (5, 15), (10, 20)], {"0": "a", "6": "b", "14": "c"}) == ["a", "b", "c"]


def test_ranges_must_start_at_frame_zero():
    with pytest.raises(VidtuneError, match="frames 0-4"):
        assign_prompts([(0, 8), (4, 12)], {5: "late"})
    with pytest.raises(VidtuneError, match="frames 0-4"):
        frame_prompts(12, {5: "late", 8: "later"})


def test_range_beyond_the_video_is_an_error():
    with pytest.raises(VidtuneError, match="frame 30"):
        frame_prompts(12, {0: "a", 30: "b"})


def test_frame_prompts():
    assert frame_prompts(3, "x") == ["x", "x", "x"]
    assert frame_prompts(6, {0: "a", "2": "b", 5: "c"}) == ["a", "a", "b", "b", "b", "c"]
    with pytest.raises(VidtuneError, match="per-clip"):
        frame_prompts(6, ["a", "b"])


# --- plan ----------------------------------------------------------------------------------------


def test_plan_text_lists_clips_weights_and_cost():
    n = 37
    windows = clip_windows(n, 16, 8)
    weights = frame_merge_weights(n, windows, "triangular")
    prompts = assign_prompts(windows, {0: "a red figure walking", 20: "a blue figure dancing"})
    text = plan_text(n, windows, weights, prompts, guidance=True, num_steps=50, width=30)
    assert "21-36" in text and "a blue figure dancing" in text
    assert "128" in text  # 4 clips x 16 frames x 2 (CFG)
    assert "6400" in text  # x 50 steps
    plot_rows = [line for line in text.splitlines() if line.startswith("clip ")]
    assert len(plot_rows) == 4 + 2  # clips 2 and 3 also reach the second 30-frame block
    no_cfg = plan_text(n, windows, weights, prompts, guidance=False)
    assert "= 64 " in no_cfg


# --- 8. merge weights: memory linear in the frame count ------------------------------------------


@pytest.mark.parametrize("kind", ["uniform", "triangular", "gaussian"])
def test_per_clip_merge_weights_equal_the_dense_ones(kind):
    from vidtune.method.windows import clip_merge_weights, clip_windows, frame_merge_weights
    from vidtune.plan import plan_text

    n = 37
    windows = clip_windows(n, 16, 6)
    dense = frame_merge_weights(n, windows, kind)
    per_clip = clip_merge_weights(n, windows, kind)
    for k, (s, e) in enumerate(windows):
        assert torch.equal(per_clip[k], dense[k, s:e])
    prompts = ["a"] * len(windows)
    assert plan_text(n, windows, per_clip, prompts, num_steps=5, width=10) == plan_text(
        n, windows, dense, prompts, num_steps=5, width=10
    )
