"""Stage 4's global anchor frame chosen by the fused result: the frame whose figure looks most typical.

With ``codenoise.attention = "global"`` every frame reads its self-attention keys and values from one
anchor frame, so the anchor's look spreads over the video. The middle frame is an arbitrary choice: when
the figure's appearance drifts frame by frame, it may carry a look few frames share. The medoid carries
the look most frames are closest to (docs/method.md, stage 4).
"""

from __future__ import annotations

import torch


def figure_descriptors(x0: torch.Tensor, fg: torch.Tensor) -> torch.Tensor:
    """Per frame, the mean and standard deviation of every latent channel inside the figure mask,
    ``(N, 2 C)``; a frame with an empty mask uses the whole frame. x0: (N, C, h, w); fg: (N, 1, h, w) in [0, 1]."""
    x0, fg = x0.float(), fg.float()
    empty = fg.flatten(1).sum(1) == 0
    w = torch.where(empty[:, None, None, None], torch.ones_like(fg), fg)
    total = w.flatten(1).sum(1)[:, None]
    mean = (x0 * w).flatten(2).sum(2) / total
    var = ((x0 - mean[:, :, None, None]) ** 2 * w).flatten(2).sum(2) / total
    return torch.cat([mean, var.clamp_min(0).sqrt()], 1)


def medoid_frame(x0: torch.Tensor, fg: torch.Tensor) -> int:
    """The frame whose figure descriptor has the least summed distance to every other frame's (the
    earliest on a tie): the figure's most typical look in the fused video."""
    d = figure_descriptors(x0, fg)
    return int(torch.cdist(d[None], d[None])[0].sum(1).argmin())


def typical_frames(descriptors: torch.Tensor, segments: list[tuple[int, int]], fraction: float) -> torch.Tensor:
    """The indices (ascending) of each segment's ``fraction`` of frames (at least one) whose figure descriptor
    has the least summed distance to the segment's others: its most typical looks, the segment's medoid first
    among them. descriptors: (N, D), one row per frame; segments: ``(start, end)`` ranges covering the video.

    Stage 3 trains on these (`tuning.typical_fraction`): tuned on every frame, the UNet learns the frames'
    average figure, and where the frames disagree (one cap red, the next yellow) that average is a pale
    blend; tuned on the frames that agree it learns one look."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    d = descriptors.float()
    keep: list[torch.Tensor] = []
    for start, end in segments:
        seg = d[start:end]
        k = max(1, round(fraction * len(seg)))
        score = torch.cdist(seg[None], seg[None])[0].sum(1)
        keep.append(start + torch.sort(score, stable=True).indices[:k])
    return torch.sort(torch.cat(keep)).values
