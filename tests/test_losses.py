"""Properties of stage 3's masked losses (eq. 6, 15, 16, 20)."""

from __future__ import annotations

import pytest
import torch

from vidtune.method.losses import combined_loss, combined_loss_terms, masked_mse, mse


def _pair(b=3, c=4, h=5, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)


def test_all_ones_foreground_equals_plain_mse():
    pred, target = _pair()
    ones = torch.ones(3, 1, 5, 6)
    loss = combined_loss(pred, target, ones, torch.zeros_like(ones), l_n=0.0, l_f=1.0, l_b=0.0)
    expected = (pred - target).square().mean(dim=(1, 2, 3))
    assert loss.shape == (3,)
    assert torch.allclose(loss, expected)
    assert torch.allclose(mse(pred, target), expected)


def test_one_pixel_mask_gives_the_error_at_that_pixel():
    pred, target = _pair()
    mask = torch.zeros(3, 1, 5, 6)
    mask[:, :, 2, 3] = 1.0
    loss = masked_mse(pred, target, mask)
    expected = (pred - target)[:, :, 2, 3].square().mean(dim=1)
    assert torch.allclose(loss, expected)
    assert (loss > 0.01).all()


def test_empty_mask_gives_zero_without_nan_gradients():
    pred, target = _pair()
    pred.requires_grad_(True)
    mask = torch.zeros(3, 1, 5, 6)
    mask[1, :, 0, 0] = 1.0  # only sample 1 has area
    loss = masked_mse(pred, target, mask)
    assert loss[0] == 0 and loss[2] == 0 and loss[1] > 0
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()


def test_masked_terms_have_zero_gradient_outside_their_masks():
    pred, target = _pair()
    fg = (torch.rand(3, 1, 5, 6, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    bg = 1.0 - fg
    for mask, weights in ((fg, (0.0, 1.0, 0.0)), (bg, (0.0, 0.0, 1.0))):
        p = pred.clone().requires_grad_(True)
        combined_loss(p, target, fg, bg, *weights).sum().backward()
        outside = (mask == 0).expand_as(p)
        assert (p.grad[outside] == 0).all()
        assert (p.grad[~outside] != 0).all()


def test_one_value_per_sample_and_samples_independent():
    pred, target = _pair(b=4)
    fg = torch.rand(4, 1, 5, 6)
    loss = combined_loss(pred, target, fg, 1 - fg, 1.0, 2.0, 0.5)
    assert loss.shape == (4,)
    single = combined_loss(pred[2:3], target[2:3], fg[2:3], 1 - fg[2:3], 1.0, 2.0, 0.5)
    assert torch.allclose(loss[2:3], single)
    terms = combined_loss_terms(pred, target, fg, 1 - fg, 1.0, 2.0, 0.5)
    assert torch.allclose(terms.total, terms.noise + 2.0 * terms.foreground + 0.5 * terms.background)


def test_mask_area_normalisation_makes_scale_irrelevant():
    pred, target = _pair()
    mask = torch.rand(3, 1, 5, 6)
    assert torch.allclose(masked_mse(pred, target, mask), masked_mse(pred, target, 0.1 * mask))


def test_mask_shape_mismatch_names_the_mask():
    pred, target = _pair()
    with pytest.raises(ValueError, match="fg"):
        combined_loss(pred, target, torch.ones(3, 1, 10, 12), torch.ones(3, 1, 5, 6))
