"""Properties of stage 2's average fusion (eq. 10-11), its noise handling and the weight fit."""

from __future__ import annotations

import math

import pytest
import torch

from vidtune.errors import VidtuneError
from vidtune.method.fusion import (
    background_average,
    eps_from_x0,
    fuse,
    fuse_latent_space,
    fuse_x0_space,
    learn_fusion_weights,
    renoise,
    sample_frames,
    x0_from_eps,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _data(n=6, c=4, h=8, w=8, seed=0):
    g = _gen(seed)
    x = torch.randn(n, c, h, w, generator=g)
    fg = (torch.rand(n, 1, h, w, generator=g) > 0.6).float()
    return x, fg, 1.0 - fg


# --- sampling ------------------------------------------------------------------------------------


def test_sample_frames_all_and_k():
    assert torch.equal(sample_frames(4, 0), torch.arange(4).expand(4, 4))
    assert torch.equal(sample_frames(4, 9), torch.arange(4).expand(4, 4))
    idx = sample_frames(10, 3, _gen(1))
    assert idx.shape == (10, 3) and idx.dtype == torch.long
    assert torch.equal(idx[:, 0], torch.arange(10))  # the frame itself is always sampled
    assert all(len(set(row)) == 3 for row in idx.tolist())
    assert torch.equal(idx, sample_frames(10, 3, _gen(1)))  # seeded


def test_sample_frames_errors():
    with pytest.raises(VidtuneError, match=r"fusion\.num_samples"):
        sample_frames(5, -1)
    with pytest.raises(VidtuneError, match="num_frames"):
        sample_frames(0, 2)


# --- eq. 10-11 -----------------------------------------------------------------------------------


def test_zero_background_weight_and_unit_foreground_weight_is_identity():
    x, fg, bg = _data()
    idx = sample_frames(6, 3, _gen(2))
    assert torch.equal(fuse(x, fg, bg, idx, w_f=1.0, w_b=0.0), x)


def test_all_background_with_k_all_gives_the_plain_mean():
    x, _, _ = _data()
    bg = torch.ones(6, 1, 8, 8)
    out = fuse(x, 1 - bg, bg, sample_frames(6, 0))
    assert torch.allclose(out, x.mean(dim=0, keepdim=True).expand_as(x), atol=1e-6)


def test_background_average_matches_eq_10_by_hand():
    x, _, _ = _data(n=5)
    bg = torch.rand(5, 1, 8, 8, generator=_gen(3))
    idx = sample_frames(5, 3, _gen(4))
    mean, coverage = background_average(x, bg, idx)
    for i in range(5):
        js = idx[i]
        expected = (bg[js] * x[js]).sum(0) / bg[js].sum(0)
        assert torch.allclose(mean[i], expected, atol=1e-5)
        assert torch.allclose(coverage[i], bg[js].sum(0))


def test_foreground_untouched_with_unit_foreground_weight():
    x, fg, bg = _data()
    out = fuse(x, fg, bg, sample_frames(6, 0), w_f=1.0, w_b=1.0)
    fg_px = (fg == 1).expand_as(x)
    assert torch.equal(out[fg_px], x[fg_px])
    assert not torch.allclose(out[~fg_px], x[~fg_px])


def test_pixel_no_sampled_frame_sees_keeps_its_own_value():
    x, _, _ = _data(n=3)
    bg = torch.ones(3, 1, 8, 8)
    bg[1:, :, 2, 5] = 0.0  # only frame 0 sees background at pixel (2, 5)
    idx = torch.tensor([[1, 2], [0, 2], [0, 1]])  # each frame averages only the OTHER frames
    mean, coverage = background_average(x, bg, idx)
    assert coverage[0, 0, 2, 5] == 0
    assert torch.equal(mean[0, :, 2, 5], x[0, :, 2, 5])
    out = fuse(x, 1 - bg, bg, idx)
    assert torch.equal(out[0, :, 2, 5], x[0, :, 2, 5])
    assert torch.allclose(out[0, :, 0, 0], (x[1, :, 0, 0] + x[2, :, 0, 0]) / 2)


def test_per_channel_weights_broadcast():
    x, fg, bg = _data()
    idx = sample_frames(6, 0)
    w_b = torch.tensor([0.0, 1.0, 0.0, 1.0])
    out = fuse(x, fg, bg, idx, w_f=torch.ones(4), w_b=w_b)
    full = fuse(x, fg, bg, idx, w_b=1.0)
    assert torch.equal(out[:, 0], x[:, 0]) and torch.allclose(out[:, 1], full[:, 1])
    with pytest.raises(ValueError, match="w_b"):
        fuse(x, fg, bg, idx, w_b=torch.ones(3))


def test_foreground_weight_scales_the_foreground():
    x, fg, bg = _data()
    out = fuse(x, fg, bg, sample_frames(6, 0), w_f=0.5, w_b=0.0)
    assert torch.allclose(out, x * (1 - 0.5 * fg))


def test_sample_idx_validation():
    x, fg, bg = _data(n=3)
    with pytest.raises(ValueError, match="sample_idx"):
        fuse(x, fg, bg, torch.tensor([[0, 0], [1, 2], [2, 0]]))
    with pytest.raises(ValueError, match="sample_idx"):
        fuse(x, fg, bg, torch.tensor([[0], [1], [5]]))


# --- noise handling ------------------------------------------------------------------------------


def test_x0_eps_conversions_round_trip():
    g = _gen(5)
    x0, eps = torch.randn(2, 4, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
    ab = 0.3
    z = renoise(x0, eps, ab)
    assert torch.allclose(z, math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps)
    assert torch.allclose(x0_from_eps(z, eps, ab), x0, atol=1e-5)
    assert torch.allclose(eps_from_x0(z, x0, torch.tensor(ab)), eps, atol=1e-5)
    with pytest.raises(ValueError, match="alpha_bar"):
        renoise(x0, eps, 0.0)


def test_x0_space_fusion_keeps_each_frames_noise():
    g = _gen(6)
    n, ab = 8, 0.4
    x0 = torch.randn(n, 4, 16, 16, generator=g)
    eps = torch.randn(n, 4, 16, 16, generator=g)
    fg = (torch.rand(n, 1, 16, 16, generator=g) > 0.7).float()
    z = renoise(x0, eps, ab)
    idx = sample_frames(n, 4, g)
    out = fuse_x0_space(z, eps, ab, fg, 1 - fg, idx)
    fused_x0 = fuse(x0, fg, 1 - fg, idx)
    assert torch.allclose(out - math.sqrt(ab) * fused_x0, math.sqrt(1 - ab) * eps, atol=1e-5)
    assert torch.allclose(x0_from_eps(out, eps, ab), fused_x0, atol=1e-5)  # DDIM predicts the fused x0
    # all background: the noise component still has the scheduler's std
    bg = torch.ones(n, 1, 16, 16)
    out_bg = fuse_x0_space(z, eps, ab, 1 - bg, bg, sample_frames(n, 0))
    noise = out_bg - math.sqrt(ab) * fuse(x0, 1 - bg, bg, sample_frames(n, 0))
    assert abs(float(noise.std()) - math.sqrt(1 - ab)) < 0.03
    # disabled fusion gives back z_t
    assert torch.allclose(fuse_x0_space(z, eps, ab, fg, 1 - fg, idx, w_b=0.0), z, atol=1e-5)


@pytest.mark.parametrize("k", [2, 4, 0])
@pytest.mark.parametrize("soft", [False, True])
def test_latent_space_fusion_restores_the_noise_variance(k, soft):
    g = _gen(7 + k)
    n, ab = 16, 0.35
    x0 = torch.randn(1, 4, 32, 32, generator=g).expand(n, 4, 32, 32)  # same content in every frame
    eps = torch.randn(n, 4, 32, 32, generator=g)
    z = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps
    if soft:
        bg, w_b = torch.rand(n, 1, 32, 32, generator=g), 0.7
    else:
        bg, w_b = torch.ones(n, 1, 32, 32), 1.0
    idx = sample_frames(n, k, g)
    out = fuse_latent_space(z, ab, 1 - bg, bg, idx, w_b=w_b, generator=g)
    deviation = out - math.sqrt(ab) * x0
    assert abs(float(deviation.mean())) < 0.01
    assert abs(float(deviation.std()) / math.sqrt(1 - ab) - 1) < 0.02
    # without the restoration the variance would have dropped (here: by about 1/K)
    plain = fuse(z, 1 - bg, bg, idx, w_b=w_b) - math.sqrt(ab) * x0
    assert float(plain.std()) < 0.95 * math.sqrt(1 - ab)


def test_latent_space_fusion_disabled_is_identity():
    x, fg, bg = _data()
    out = fuse_latent_space(x, 0.5, fg, bg, sample_frames(6, 3, _gen(1)), w_b=0.0, generator=_gen(2))
    assert torch.allclose(out, x)


# --- learned weights -----------------------------------------------------------------------------


def test_learn_fusion_weights_reduces_objective():
    g = _gen(8)
    n = 8
    scene = torch.randn(1, 4, 16, 16, generator=g)
    x0 = scene + 0.5 * torch.randn(n, 4, 16, 16, generator=g)  # flickering background
    fg = (torch.rand(n, 1, 16, 16, generator=g) > 0.8).float()
    for per_channel in (False, True):
        w_f, w_b, history = learn_fusion_weights(x0, fg, 1 - fg, sample_frames(n, 4, g), per_channel, steps=30)
        assert len(history) == 31
        assert history[-1] < history[0]
        w_b_t = torch.as_tensor(w_b)
        assert ((w_b_t >= 0) & (w_b_t <= 1)).all()
        assert (torch.as_tensor(w_f) > 0).all()
        assert w_b_t.shape == ((4,) if per_channel else ())


def test_learn_fusion_weights_matches_closed_form_optimum():
    g = _gen(9)
    x0 = torch.randn(6, 2, 8, 8, generator=g)
    bg = torch.ones(6, 1, 8, 8)
    for fidelity in (0.25, 1.0):
        _, w_b, _ = learn_fusion_weights(x0, 1 - bg, bg, sample_frames(6, 0), steps=300, lr=0.1, fidelity=fidelity)
        assert abs(w_b - 1 / (1 + fidelity)) < 0.02


def test_learn_fusion_weights_works_under_inference_mode():
    x, fg, bg = _data()
    with torch.inference_mode():
        _, _, history = learn_fusion_weights(x, fg, bg, sample_frames(6, 0), steps=3)
    assert len(history) == 4


def test_learn_fusion_weights_errors_name_the_field():
    x, fg, bg = _data()
    with pytest.raises(VidtuneError, match=r"fusion\.learn_lr"):
        learn_fusion_weights(x, fg, bg, sample_frames(6, 0), lr=0.0)
    with pytest.raises(VidtuneError, match=r"fusion\.learn_steps"):
        learn_fusion_weights(x, fg, bg, sample_frames(6, 0), steps=-1)


@pytest.mark.parametrize("with_self", [True, False])
def test_latent_space_fusion_restores_the_variance_at_every_pixel(with_self):
    # channels act as independent trials: masks broadcast over them, the noise does not
    g = _gen(11)
    n, c, ab = 4, 4096, 0.5
    eps = torch.randn(n, c, 3, 3, generator=g)
    z = math.sqrt(1 - ab) * eps  # x0 = 0
    bg = torch.rand(n, 1, 3, 3, generator=g)
    bg[:, :, 0, 0] = 0.0  # nobody sees background here: fallback
    idx = (
        torch.tensor([[0, 1, 2], [1, 2, 3], [2, 3, 0], [3, 0, 1]])
        if with_self
        else torch.tensor([[1, 2, 3], [2, 3, 0], [3, 0, 1], [0, 1, 2]])
    )
    out = fuse_latent_space(z, ab, 1 - bg, bg, idx, w_f=0.9, w_b=0.8, generator=g)
    per_pixel_std = out.std(dim=1) / math.sqrt(1 - ab)  # (n, 3, 3)
    assert (per_pixel_std - 1).abs().max() < 0.06
