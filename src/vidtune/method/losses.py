"""Stage 3 losses (docs/method.md, stage 3): masked noise-prediction losses, one value per sample.

    L = l_n ||eps - eps_theta||^2 + l_f mean(M_f (eps - eps_theta)^2) + l_b mean(M_b (eps - eps_theta)^2)

eq. 6 is the plain diffusion loss, eq. 15 / 16 its foreground / background-masked forms and
eq. 20 their weighted sum. Each masked mean divides by its mask's area, so a small figure's
error is as loud as a large one's. Layout: ``(batch, channels, height, width)``; masks
``(batch, 1, height, width)`` at latent resolution in [0, 1], broadcast over channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LossTerms", "combined_loss", "combined_loss_terms", "masked_mse", "mse"]


def _check(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"pred and target must be (batch, channels, height, width) of one shape, "
            f"got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain ||eps - eps_theta||^2 as a mean over channels and pixels (eq. 6), ``(batch,)``."""
    _check(pred, target)
    return (pred - target).square().mean(dim=(1, 2, 3))


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Mean squared error inside a soft mask (eq. 15 / 16), ``(batch,)``.

        L = sum_p m(p) sum_c (pred - target)^2 / (sum_p m(p) * C)

    Args:
        pred, target: ``(batch, channels, height, width)``.
        mask: ``(batch, 1, height, width)`` (or per channel ``(batch, channels, height, width)``)
            in [0, 1]; the denominator is the mask's area over the broadcast shape.
        name: the mask's name for error messages.

    Returns:
        One value per sample; a sample whose mask is empty (area 0) gives 0, with zero (not NaN)
        gradients.
    """
    _check(pred, target)
    if (
        mask.ndim != 4
        or mask.shape[0] != pred.shape[0]
        or mask.shape[2:] != pred.shape[2:]
        or mask.shape[1]
        not in (
            1,
            pred.shape[1],
        )
    ):
        raise ValueError(
            f"{name} must be (batch={pred.shape[0]}, 1, {pred.shape[2]}, {pred.shape[3]}) like the latents, "
            f"got {tuple(mask.shape)}"
        )
    mask = mask.to(pred.dtype)
    num = (mask * (pred - target).square()).sum(dim=(1, 2, 3))
    area = mask.expand_as(pred).sum(dim=(1, 2, 3))
    nonempty = area > 0
    safe_area = torch.where(nonempty, area, torch.ones_like(area))
    return torch.where(nonempty, num / safe_area, torch.zeros_like(num))


@dataclass(frozen=True)
class LossTerms:
    """The three terms of eq. 20 and their weighted sum, each ``(batch,)``."""

    total: torch.Tensor
    noise: torch.Tensor  # eq. 6, unweighted
    foreground: torch.Tensor  # eq. 15, unweighted
    background: torch.Tensor  # eq. 16, unweighted


def combined_loss_terms(
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    l_n: float = 1.0,
    l_f: float = 1.0,
    l_b: float = 1.0,
) -> LossTerms:
    """Eq. 20 with its terms kept apart for logging (see `combined_loss`)."""
    noise = mse(eps_pred, eps)
    foreground = masked_mse(eps_pred, eps, fg, name="fg")
    background = masked_mse(eps_pred, eps, bg, name="bg")
    return LossTerms(l_n * noise + l_f * foreground + l_b * background, noise, foreground, background)


def combined_loss(
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    l_n: float = 1.0,
    l_f: float = 1.0,
    l_b: float = 1.0,
) -> torch.Tensor:
    """Combined tuning loss (eq. 20), one value per sample, ``(batch,)``.

        L = l_n * mse(eps_theta, eps) + l_f * masked_mse(.., M_f) + l_b * masked_mse(.., M_b)

    Args:
        eps_pred: eps_theta, ``(batch, channels, height, width)``.
        eps: the noise that was added, same shape.
        fg, bg: M_f, M_b, ``(batch, 1, height, width)`` in [0, 1] at latent resolution.
        l_n, l_f, l_b: the terms' weights (``tuning.l_n`` / ``l_f`` / ``l_b``).
    """
    return combined_loss_terms(eps_pred, eps, fg, bg, l_n, l_f, l_b).total
