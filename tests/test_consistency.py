"""The consistency mechanisms: prompt segments and transitions, per-segment fusion,
repeated fusion and stage 4's kept background (step guides), FreeNoise's noise rescheduling,
and the benchmark's statistics (bootstrap intervals, transition ratio)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtune.benchmark.scoring import bootstrap_interval, segment_cores, transition_ratio
from vidtune.errors import VidtuneError
from vidtune.method import fusion as F
from vidtune.method.clips import reschedule_noise
from vidtune.method.prompts import frame_prompts
from vidtune.method.segments import prompt_segments, transition_frames, transition_weights
from vidtune.stages.common import vp_eps, vp_x0, x0_guide

# --------------------------------------------------------------------------------------------
# Segments and transitions


def test_prompt_segments_are_the_runs_of_equal_prompts():
    assert prompt_segments(["a", "a", "b", "b", "b", "a"]) == [(0, 2), (2, 5), (5, 6)]
    assert prompt_segments(["x"] * 4) == [(0, 4)]


def test_transition_weights_are_one_hot_inside_segments_and_ramp_across_the_boundary():
    segments = [(0, 24), (24, 48)]
    w = transition_weights(48, segments, width=8)
    assert torch.allclose(w.sum(dim=1), torch.ones(48))
    assert torch.equal(w[:20], torch.tensor([[1.0, 0.0]] * 20))  # far from the boundary: its own segment only
    assert torch.equal(w[28:], torch.tensor([[0.0, 1.0]] * 20))
    ramp = w[19:29, 1]
    assert (ramp[1:] > ramp[:-1]).all()  # monotone across the boundary
    assert float(w[24, 1] - w[23, 1]) == pytest.approx(1 / 8)  # the two frames beside it: 1/width apart, not a cut
    assert torch.equal(transition_weights(48, segments, width=0), transition_weights(48, segments, 1))
    assert int(transition_frames(48, segments, 8).sum()) == 8


def test_transition_weights_reach_full_weight_inside_a_short_segment():
    w = transition_weights(30, [(0, 10), (10, 14), (14, 30)], width=16)
    assert torch.allclose(w.sum(dim=1), torch.ones(30))
    assert float(w[11:13, 1].max()) > 0.45  # the 4-frame middle segment still dominates its middle
    assert float(w[0, 0]) == 1.0 and float(w[29, 2]) == 1.0


@pytest.mark.parametrize(
    "schedule, fragment",
    [
        ({"3": "a red figure"}, "starts at frame 3"),
        ({"0": "a red figure", "40": "a blue figure"}, "starts at frame 40"),
        ({"0": "  "}, "is empty"),
    ],
)
def test_bad_schedules_name_inputs_prompts(schedule, fragment):
    with pytest.raises(VidtuneError) as err:
        frame_prompts(24, schedule)
    assert str(err.value).startswith("inputs.prompts:") and fragment in str(err.value)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------
# Fusion within segments, dilation, background targets


def test_dilate_grows_a_mask_by_the_radius():
    m = torch.zeros(1, 1, 7, 7)
    m[0, 0, 3, 3] = 1.0
    assert int(F.dilate(m, 1).sum()) == 9 and int(F.dilate(m, 2).sum()) == 25
    assert torch.equal(F.dilate(m, 0), m)


def test_average_mask_keeps_the_figure_out_of_the_other_frames_background():
    x = torch.zeros(2, 1, 1, 3)
    x[0, 0, 0, 1] = 10.0  # frame 0: a figure edge at pixel 1 that its mask missed
    fg = torch.zeros(2, 1, 1, 3)
    fg[0, 0, 0, 0] = 1.0
    idx = F.sample_frames(2)
    ghost = F.fuse(x, fg, 1 - fg, idx)
    assert float(ghost[1, 0, 0, 1]) == 5.0  # the plain average puts half of the figure into frame 1
    clean = F.fuse(x, fg, 1 - fg, idx, average_bg=1 - F.dilate(fg, 1))
    assert float(clean[1, 0, 0, 1]) == 0.0


def test_segment_backgrounds_average_within_each_segment_only():
    x = torch.cat([torch.full((3, 2, 2, 2), 1.0), torch.full((2, 2, 2, 2), 5.0)])
    bg = torch.ones(5, 1, 2, 2)
    seg = F.segment_backgrounds(x, bg, [(0, 3), (3, 5)])
    assert torch.equal(seg.mean[0], torch.ones(2, 2, 2)) and torch.equal(seg.mean[1], torch.full((2, 2, 2), 5.0))
    w = transition_weights(5, [(0, 3), (3, 5)], width=0)
    assert torch.equal(F.background_targets(x, seg, w), x)  # hard cut: each frame its own segment's background
    half = torch.tensor([[0.5, 0.5]] * 5)
    assert torch.allclose(F.background_targets(x, seg, half), torch.full_like(x, 3.0))


def test_background_targets_fall_back_to_the_frame_where_no_segment_sees_background():
    x = torch.arange(8.0).view(2, 1, 2, 2)
    bg = torch.zeros(2, 1, 2, 2)
    seg = F.segment_backgrounds(x, bg, [(0, 2)])
    assert torch.equal(F.background_targets(x, seg, torch.ones(2, 1)), x)


def test_stage4_targets_keep_every_frame_in_its_own_segments_scene():
    """Under a schedule, stage 4 pulls a frame next to the boundary to its own segment's background,
    never to a blend of the two scenes' latents (which decodes to smears); the dissolve is the plate's.
    The ring around the figure keeps the frame's own stage-2 latent."""
    from vidtune.method.clips import background_targets

    x = torch.cat([torch.full((4, 1, 6, 6), 1.0), torch.full((4, 1, 6, 6), 5.0)])
    fg = torch.zeros(8, 1, 6, 6)
    fg[:, :, 2:4, 2:4] = 1.0
    x[fg.bool()] = 9.0
    targets, bg = background_targets(x, fg, [(0, 4), (4, 8)], dilate=1)
    far = torch.ones(6, 6, dtype=torch.bool)
    far[1:5, 1:5] = False
    assert (targets[:4, 0][:, far] == 1.0).all() and (targets[4:, 0][:, far] == 5.0).all()
    assert (targets[:, 0, 1:5, 1:5] == x[:, 0, 1:5, 1:5]).all()  # mask + ring: the frame's own latent
    assert torch.equal(bg, 1.0 - fg)


def test_stage4_keep_margin_leaves_a_ring_around_the_figure_to_stage_4():
    """`codenoise.background_margin = m`: the keep weight is 0 on the mask and on m pixels around it (stage 4
    draws them), 1 beyond; the targets are the same as without a margin."""
    from vidtune.method.clips import background_targets

    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    fg = torch.zeros(2, 1, 8, 8)
    fg[:, :, 3:5, 3:5] = 1.0
    t0, bg0 = background_targets(x, fg, [(0, 2)], dilate=1)
    for m in (1, 2):
        t, bg = background_targets(x, fg, [(0, 2)], dilate=1, margin=m)
        assert torch.equal(t, t0)
        ring = torch.zeros(8, 8, dtype=torch.bool)
        ring[3 - m : 5 + m, 3 - m : 5 + m] = True
        assert (bg[:, 0][:, ring] == 0).all() and (bg[:, 0][:, ~ring] == 1).all()
        assert (bg <= bg0).all() and bg.sum() < bg0.sum()


# --------------------------------------------------------------------------------------------
# Step guides


class _DDIMLike:
    """The two scheduler calls a guide makes: VP scaling (identity) and alphas_cumprod."""

    alphas_cumprod = torch.linspace(0.99, 0.1, 1000)

    @staticmethod
    def scale_model_input(x, t):
        return x


def test_an_identity_guide_leaves_the_latents_unchanged():
    z, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    guide = x0_guide(_DDIMLike(), lambda x0: x0)
    assert torch.allclose(guide(0, torch.tensor(500), z, eps), z, atol=1e-5)


def test_a_guide_sets_the_predicted_x0_and_keeps_each_frames_noise():
    z, eps = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    target = torch.randn(1, 4, 8, 8)
    t = torch.tensor(700)
    out = x0_guide(_DDIMLike(), lambda x0: target.expand_as(x0))(0, t, z, eps)
    ab = _DDIMLike.alphas_cumprod[700]
    assert torch.allclose(F.x0_from_eps(out, eps, ab), target.expand_as(out), atol=1e-4)
    assert torch.allclose(F.eps_from_x0(out, target.expand_as(out), ab), eps, atol=1e-4)


def test_a_guide_acts_only_in_its_step_range():
    z, eps = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    guide = x0_guide(_DDIMLike(), lambda x0: x0 * 0, first_step=3, last_step=5)
    assert torch.equal(guide(2, torch.tensor(400), z, eps), z)
    assert not torch.equal(guide(3, torch.tensor(400), z, eps), z)
    assert torch.equal(guide(6, torch.tensor(400), z, eps), z)


@pytest.mark.parametrize("sampler", ["ddim", "euler"])
def test_vp_eps_gives_back_the_eps_vp_x0_turned_into_x0(sampler):
    """Stage 2 takes the eps at the fusion step back from stage 1's x0 prediction (no second UNet pass): the
    inverse must hold whatever the sampler's scaling (Euler's latents are sigma-scaled, c != 1)."""
    from vidtune.models import make_scheduler, sd_schedule_config

    scheduler = make_scheduler(sampler, sd_schedule_config(0.00085, 0.012, "scaled_linear", 1000))
    scheduler.set_timesteps(16)
    t = scheduler.timesteps[8]
    z = torch.randn(3, 4, 8, 8) * (scheduler.init_noise_sigma if sampler == "euler" else 1.0)
    eps = torch.randn(3, 4, 8, 8)
    x0 = vp_x0(scheduler, t, z, eps)[0]
    assert torch.allclose(vp_eps(scheduler, t, z, x0), eps, atol=1e-4)
    assert not torch.allclose(vp_eps(scheduler, t, z, x0 + 0.1), eps, atol=1e-2)


# --------------------------------------------------------------------------------------------
# FreeNoise's noise rescheduling


def test_rescheduled_noise_is_a_shuffle_of_the_previous_window():
    noise = torch.arange(20.0).view(20, 1, 1, 1)
    out = reschedule_noise(noise, window=8, stride=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[:8], noise[:8])  # the first window keeps its own noise
    for i in range(8, 20, 4):
        assert sorted(out[i : i + 4].flatten().tolist()) == sorted(out[i - 8 : i - 4].flatten().tolist())
    assert set(out.flatten().tolist()) <= set(range(8))  # every later frame reuses the first window's noises


# --------------------------------------------------------------------------------------------
# Benchmark statistics


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_agreement():
    lo, hi = bootstrap_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert lo < 3.0 < hi
    lo2, hi2 = bootstrap_interval([2.9, 3.0, 3.1, 3.0, 3.0])
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_interval([]) == (None, None)


def test_transition_ratio_flags_a_cut_and_not_a_ramp():
    calm = [1.0] * 47
    cut = list(calm)
    cut[23] = 20.0  # frames 23 -> 24 jump
    assert transition_ratio(cut, [24], width=8) == pytest.approx(20.0)
    ramp = list(calm)
    for p in range(20, 28):
        ramp[p] = 2.5  # the same change spread over 8 pairs
    assert transition_ratio(ramp, [24], width=8) == pytest.approx(2.5)
    assert np.isnan(transition_ratio(calm, [], width=8))


def test_segment_cores_leave_out_the_transitions():
    assert segment_cores([0, 24], 48, transition=8) == [(0, 20), (28, 48)]
    assert segment_cores([0, 24], 48, transition=0) == [(0, 24), (24, 48)]
    assert segment_cores([0, 8, 16], 24, transition=8) == [(0, 6), (10, 14), (18, 24)]
