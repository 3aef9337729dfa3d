"""Comparing a run with recorded tensors: relative to each tensor's norm, so that CPU rounding
differences pass and a change of result does not (tests/test_golden.py says why)."""

from __future__ import annotations

import torch

GOLDEN_TOLERANCE = 2e-3  # ||got - want|| / ||want|| per tensor


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| (Frobenius; inf for a shape change)."""
    if got.shape != want.shape:
        return float("inf")
    diff = (got.double() - want.double()).norm()
    return float(diff / want.double().norm().clamp_min(1e-12))


def differing(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], tolerance: float) -> list[str]:
    """The keys whose tensors differ by more than ``tolerance`` (0: bit for bit), with their error."""
    if tolerance == 0:
        return [k for k in want if not torch.equal(got[k], want[k])]
    return [f"{k} ({relative_error(got[k], want[k]):.2e})" for k in want if relative_error(got[k], want[k]) > tolerance]
