"""The loss curve of stage 3 as a PNG (loss.png in the run folder)."""

from __future__ import annotations

from pathlib import Path

import torch

from vidtune import atomic


def write_loss_plot(losses: list[float], path: Path) -> None:
    """Loss per step and its running mean as a PNG (matplotlib's Agg canvas, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.subplots()
    steps = list(range(1, len(losses) + 1))
    ax.plot(steps, losses, lw=0.8, alpha=0.4, label="loss")
    window = max(1, len(losses) // 20)
    run_mean = torch.tensor(losses).unfold(0, window, 1).mean(1).tolist() if losses else []
    ax.plot(steps[window - 1 :], run_mean, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (eq. 20)")
    ax.legend()
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
