"""`vidtune.method.appearance`: body parts from the pose and the figure's look pulled to a reference."""

from __future__ import annotations

import torch

from vidtune.method import appearance as P


def _standing(n: int = 1, x: float = 32.0) -> torch.Tensor:
    """COCO-18 keypoints of an upright figure in a 64x64 image, centred at column ``x``."""
    kp = torch.zeros(n, 18, 3)
    pts = {0: (x, 8), 1: (x, 16), 2: (x - 6, 16), 5: (x + 6, 16), 3: (x - 8, 26), 6: (x + 8, 26), 4: (x - 8, 34),
           7: (x + 8, 34), 8: (x - 4, 36), 11: (x + 4, 36), 9: (x - 4, 46), 12: (x + 4, 46), 10: (x - 4, 58),
           13: (x + 4, 58), 14: (x - 2, 6), 15: (x + 2, 6), 16: (x - 4, 7), 17: (x + 4, 7)}  # fmt: skip
    for k, (px, py) in pts.items():
        kp[:, k] = torch.tensor([px, py, 1.0])
    return kp


def test_parts_split_the_figure_by_height_and_cover_it_exactly():
    fg = torch.zeros(1, 1, 16, 16)
    fg[0, 0, 1:15, 6:10] = 1.0
    parts = P.part_masks(_standing(), fg, (64, 64))
    assert parts.shape == (1, 3, 16, 16)
    torch.testing.assert_close(parts.sum(1, keepdim=True), fg)  # every figure pixel in one part, nothing outside
    head, upper, legs = (parts[0, i].nonzero()[:, 0].float().mean() for i in range(3))
    assert head < upper < legs  # rows: the head on top, the legs below


def test_a_frame_without_visible_joints_has_no_parts():
    fg = torch.ones(1, 1, 16, 16)
    kp = _standing()
    kp[..., 2] = 0
    assert P.part_masks(kp, fg, (64, 64)).sum() == 0


def _two_frames(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two frames' random latents (2, 4, 16, 16) and the parts (2, 3, 16, 16) of one standing figure."""
    fg = torch.zeros(2, 1, 16, 16)
    fg[:, 0, 1:15, 6:10] = 1.0
    return torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(seed)), P.part_masks(
        _standing(2), fg, (64, 64)
    )


def test_full_pull_gives_each_part_the_references_mean_and_spread():
    x0, parts = _two_frames(0)
    x0[1] = x0[0] * 0.8 + 2.0  # frame 1 looks different (its spread within SCALE_RANGE of frame 0's)
    ref = P.part_statistics(x0[:1], parts[:1])
    out = P.pull_to_reference(x0, parts, ref, 1.0)
    mean, std, ok = P.part_statistics(out, parts)
    assert ok.all()
    torch.testing.assert_close(mean[1], ref[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(std[1], ref[1][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, :, 0], x0[:, :, 0])  # outside the figure: unchanged
    torch.testing.assert_close(out[0], x0[0], atol=1e-5, rtol=0)  # the reference itself: unchanged


def test_zero_pull_changes_nothing_and_half_pull_goes_half_way():
    x0, parts = _two_frames(1)
    x0[1] += 1.0
    ref = P.part_statistics(x0[:1], parts[:1])
    assert torch.equal(P.pull_to_reference(x0, parts, ref, 0.0), x0)
    full, half = P.pull_to_reference(x0, parts, ref, 1.0), P.pull_to_reference(x0, parts, ref, 0.5)
    torch.testing.assert_close(half, (x0 + full) / 2)


def test_stage_4_pulls_to_the_medoid_figure_and_its_setting_is_checked():
    import numpy as np
    import pytest

    from vidtune import config as C
    from vidtune import validate
    from vidtune.errors import VidtuneError
    from vidtune.inputs import VideoInputs
    from vidtune.method.anchor import medoid_frame
    from vidtune.results import FusionResult
    from vidtune.stages.codenoise import figure_pull, needs_fusion

    g = torch.Generator().manual_seed(2)
    fg = torch.zeros(3, 1, 16, 16)
    fg[:, 0, 1:15, 6:10] = 1.0
    x0 = torch.randn(3, 4, 16, 16, generator=g)
    x0[2] += 3.0  # frame 2 is the odd one out: the medoid is frame 0 or 1
    s2 = FusionResult(x0=x0, z_fused=x0, fg=fg, weights={}, frames=np.zeros((0,)))
    inputs = VideoInputs(np.zeros((3, 64, 64, 3), np.uint8), _standing(3).numpy(), ["p"] * 3, 8.0, "test")
    cfg = C.apply_overrides(C.RunConfig(), ["codenoise.figure_pull=1.0"])
    pull = figure_pull(cfg.codenoise, inputs, s2, (64, 64))
    m = medoid_frame(x0, fg)
    assert m in (0, 1)
    want = P.part_statistics(x0[m : m + 1], pull.parts[m : m + 1])[0]
    torch.testing.assert_close(pull.reference[0], want.expand(3, -1, -1))  # one scene: every frame, one reference
    mean, _, _ = P.part_statistics(pull(x0), pull.parts)
    torch.testing.assert_close(mean[2], mean[m], atol=1e-5, rtol=0)  # the odd frame now looks like the medoid
    two_scenes = VideoInputs(inputs.pose_images, inputs.keypoints, ["p", "p", "q"], 8.0, "test")
    torch.testing.assert_close(figure_pull(cfg.codenoise, two_scenes, s2, (64, 64))(x0)[2], x0[2])  # its own scene's
    assert needs_fusion(C.apply_overrides(cfg, ["codenoise.init=noise", "codenoise.background=free"]).codenoise)
    no_pose = figure_pull(cfg.codenoise, VideoInputs(inputs.pose_images, None, ["p"] * 3, 8.0, "t"), s2, (64, 64))
    assert no_pose.parts.shape == (3, 1, 16, 16)  # without keypoints the figure is one part
    with pytest.raises(VidtuneError, match=r"codenoise\.figure_pull"):
        validate.check_config(C.apply_overrides(C.RunConfig(), ["codenoise.figure_pull=1.5"]))
