"""The global anchor chosen by the fused result (`vidtune.method.anchor`) and its wiring into stage 4."""

from __future__ import annotations

import pytest
import torch

from vidtune import config as C
from vidtune.method.anchor import figure_descriptors, medoid_frame, typical_frames
from vidtune.method.appearance import part_descriptors
from vidtune.method.clips import clip_schedule
from vidtune.stages.codenoise import needs_fusion


def _video(figure_values: list[float], n_channels: int = 4, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents whose figure (a square, placed differently in every frame) has one value per frame, on a
    background that differs too; and its masks."""
    n = len(figure_values)
    x0 = torch.randn(n, n_channels, size, size, generator=torch.Generator().manual_seed(0)) * 3
    fg = torch.zeros(n, 1, size, size)
    for i, v in enumerate(figure_values):
        r = i % (size - 3)
        fg[i, :, r : r + 3, 2:5] = 1
        x0[i, :, r : r + 3, 2:5] = v
    return x0, fg


def test_descriptors_read_the_figure_only_and_the_whole_frame_without_one():
    x0, fg = _video([1.0, -2.0])
    d = figure_descriptors(x0, fg)
    assert d.shape == (2, 8)
    torch.testing.assert_close(d[:, :4], torch.tensor([[1.0] * 4, [-2.0] * 4]))  # the figure's mean
    torch.testing.assert_close(d[:, 4:], torch.zeros(2, 4), atol=1e-6, rtol=0)  # a flat figure
    empty = torch.zeros_like(fg)
    torch.testing.assert_close(figure_descriptors(x0, empty)[:, :4], x0.mean((2, 3)))


def test_the_medoid_is_the_figure_most_frames_look_like_not_the_middle_frame():
    # frames 0, 1, 3, 4 draw the figure alike (1.0 +- 0.1), frame 2 (the middle one) draws another look
    x0, fg = _video([1.0, 1.1, -3.0, 0.9, 1.0])
    assert medoid_frame(x0, fg) in (0, 4)
    assert medoid_frame(x0, fg) == 0  # the earliest on a tie
    x0, fg = _video([0.0, 5.0, 5.1, 5.2, 9.0])
    assert medoid_frame(x0, fg) == 2


def test_typical_frames_are_the_look_most_frames_share_per_segment():
    # segment 0-6: four frames draw one look (about (1, 0)), two others (-3, 0) and (4, 0); segment 6-10:
    # three alike, one (7, 10) apart. Summed distances: frame 5 is segment 0's medoid, then 0, 2; 7 then 6.
    rows = [[1.0, 0], [-3.0, 0], [1.1, 0.1], [0.9, 0.2], [4.0, 0], [1.0, 0.05], [7.0, 0], [7.1, 0], [7.0, 10], [7.3, 0]]
    d = torch.tensor(rows)
    assert typical_frames(d, [(0, 6), (6, 10)], 0.5).tolist() == [0, 2, 5, 6, 7]  # 3 of 6, 2 of 4
    assert typical_frames(d, [(0, 10)], 1.0).tolist() == list(range(10))
    assert typical_frames(d, [(0, 6), (6, 10)], 0.01).tolist() == [5, 7]  # at least one: each segment's medoid
    with pytest.raises(ValueError, match="fraction"):
        typical_frames(d, [(0, 10)], 0.0)


def test_part_descriptors_compare_parts_and_zero_a_part_a_frame_lacks():
    x0, fg = _video([1.0, -2.0])
    parts = torch.cat([fg, torch.zeros_like(fg)], 1)  # the figure as part 0, part 1 shown by no frame
    parts[0, 1, 0, 0] = 1  # part 1: one latent pixel in frame 0 (the min_area of part_statistics)
    d = part_descriptors(x0, parts)
    assert d.shape == (2, 2 * 2 * 4)  # per part: its channel means, then their spreads
    torch.testing.assert_close(d[:, :4], torch.tensor([[1.0] * 4, [-2.0] * 4]))  # part 0's means
    torch.testing.assert_close(d[:, 4:8], torch.zeros(2, 4), atol=1e-6, rtol=0)  # part 0: a flat figure
    assert d[1, 8:].abs().sum() == 0 and d[0, 8:12].abs().sum() > 0  # part 1 (means, spreads): frame 1 lacks it


def test_the_schedule_carries_the_anchor_it_is_given_and_stage_4_then_needs_stage_2():
    cfg = C.apply_overrides(C.RunConfig(), ["codenoise.attention=global", "codenoise.anchor=medoid"]).codenoise
    for mode in ("shifted", "overlap"):
        c = C.apply_overrides(C.RunConfig(), [f"codenoise.mode={mode}"]).codenoise
        assert clip_schedule(c, 40, "a person").at(3).anchor == 20  # the middle frame
        assert clip_schedule(c, 40, "a person", anchor=7).at(3).anchor == 7
    free = C.apply_overrides(C.RunConfig(), ["codenoise.init=noise", "codenoise.background=free"]).codenoise
    assert not needs_fusion(free)
    assert needs_fusion(C.CodenoiseConfig(**{**vars(free), "attention": "global", "anchor": "medoid"}))
    assert cfg.anchor == "medoid"
