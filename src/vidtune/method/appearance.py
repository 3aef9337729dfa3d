"""The figure's appearance pulled to one reference frame, part by part (stage 4's `codenoise.figure_pull`).

Each figure pixel belongs to the body part of its nearest pose bone (head, upper body, legs); within
every part the latent's per-channel mean and spread are moved to the reference frame's (AdaIN per part),
so a shirt, trousers or hat keep one look while the pixels' own detail and the pose stay the frame's.
"""

from __future__ import annotations

import torch

from vidtune.method.anchor import medoid_frame

# COCO-18 bones by part (the keypoint order of `vidtune.poses`): head, upper body (torso and arms), legs.
PART_BONES: dict[str, tuple[tuple[int, int], ...]] = {
    "head": ((0, 1), (0, 14), (0, 15), (14, 16), (15, 17)),
    "upper": ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (1, 11), (2, 8), (5, 11)),
    "legs": ((8, 9), (9, 10), (11, 12), (12, 13), (8, 11)),
}
PARTS: tuple[str, ...] = tuple(PART_BONES)
SCALE_RANGE = (0.5, 2.0)  # the spread ratio's bounds: a part a pixel or two wide has a noisy spread


def _segment_distance(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of ``points`` (P, 2) to the segments a-b (B, 2 each) -> (B, P)."""
    ab = (b - a)[:, None]
    ap = points[None] - a[:, None]
    t = ((ap * ab).sum(-1) / ab.square().sum(-1).clamp_min(1e-9)).clamp(0, 1)
    return (ap - t[..., None] * ab).norm(dim=-1)


def part_masks(keypoints: torch.Tensor, fg: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Soft part masks ``(N, len(PARTS), h, w)``: the figure mask ``fg`` (N, 1, h, w) in [0, 1] split by
    the part of the nearest visible bone of ``keypoints`` (N, 18, 3; x, y in the ``image_size`` (H, W)
    pixels, confidence > 0 = visible). A frame without a visible bone gets no parts (all zero)."""
    n, _, h, w = fg.shape
    sy, sx = h / image_size[0], w / image_size[1]
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    grid = torch.stack([xs.flatten(), ys.flatten()], 1).double()
    bones = [(p, i, j) for p, part in enumerate(PARTS) for i, j in PART_BONES[part]]
    part_of = torch.tensor([p for p, _, _ in bones])
    kp = keypoints.double()
    out = fg.new_zeros(n, len(PARTS), h * w)
    for f in range(n):
        visible = kp[f, :, 2] > 0
        seen = [k for k, (_, i, j) in enumerate(bones) if visible[i] and visible[j]]
        if not seen:
            continue
        scale = kp.new_tensor([sx, sy])
        a = torch.stack([kp[f, bones[k][1], :2] for k in seen]) * scale
        b = torch.stack([kp[f, bones[k][2], :2] for k in seen]) * scale
        owner = part_of[seen][_segment_distance(grid, a, b).argmin(0)]
        out[f] = torch.nn.functional.one_hot(owner, len(PARTS)).T.to(fg.dtype) * fg[f, 0].flatten()[None]
    return out.view(n, len(PARTS), h, w)


def figure_parts(fg: torch.Tensor, keypoints: object | None, image_size: tuple[int, int]) -> torch.Tensor:
    """`part_masks` of the figures ``fg`` from the pose ``keypoints`` (any array-like, or None: the whole
    figure as one part, ``fg`` itself)."""
    return fg if keypoints is None else part_masks(torch.as_tensor(keypoints), fg, image_size)


def part_statistics(x0: torch.Tensor, parts: torch.Tensor, min_area: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Per frame and part, the mask-weighted mean and standard deviation of every channel, ``(N, P, C)``
    each, and whether the part covers at least ``min_area`` latent pixels ``(N, P)``.
    x0: (N, C, h, w); parts: (N, P, h, w) in [0, 1]."""
    x, m = x0.float()[:, None], parts.float()[:, :, None]  # (N, 1, C, h, w), (N, P, 1, h, w)
    area = m.sum((2, 3, 4))
    mean = (x * m).sum((3, 4)) / area.clamp_min(1e-6)[..., None]
    var = ((x - mean[..., None, None]).square() * m).sum((3, 4)) / area.clamp_min(1e-6)[..., None]
    return mean, var.sqrt(), area >= min_area


def pull_to_reference(
    x0: torch.Tensor, parts: torch.Tensor, reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor], weight: float
) -> torch.Tensor:
    """x0 with each part's channel statistics moved to the reference's by ``weight`` in [0, 1]:
    x <- x + weight m_p ((x - mu_p) s + mu_ref - x), s = sigma_ref / sigma_p clamped to `SCALE_RANGE`,
    for every part both frames show. ``reference``: `part_statistics` of the reference frame, (1, P, C)
    means and spreads and (1, P) presence, or one reference per frame ((N, P, C), (N, P)). weight 0
    returns x0 unchanged."""
    if weight == 0:
        return x0
    mean, std, ok = part_statistics(x0, parts)
    ref_mean, ref_std, ref_ok = reference
    use = (ok & ref_ok).to(x0.dtype)[..., None, None, None]  # (N, P, 1, 1, 1)
    s = (ref_std / std.clamp_min(1e-6)).clamp(*SCALE_RANGE)[..., None, None]  # (N, P, C, 1, 1)
    x = x0[:, None]
    moved = (x - mean[..., None, None]) * s + ref_mean[..., None, None]
    delta = (use * parts[:, :, None] * (moved - x)).sum(1)
    return x0 + weight * delta.to(x0.dtype)


def segment_references(
    x0: torch.Tensor, fg: torch.Tensor, parts: torch.Tensor, segments: list[tuple[int, int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per frame, the `part_statistics` of the medoid figure (`anchor.medoid_frame`) of its segment
    ``(start, end)``: ``(N, P, C)`` means and spreads and ``(N, P)`` presence. Per segment, because a
    scene's light is part of the figure's colours."""
    mean, std, ok = part_statistics(x0, parts)
    refs = torch.zeros(len(x0), dtype=torch.long)
    for start, end in segments:
        refs[start:end] = start + medoid_frame(x0[start:end], fg[start:end])
    return mean[refs], std[refs], ok[refs]


def figure_reference(
    x0: torch.Tensor,
    fg: torch.Tensor,
    keypoints: torch.Tensor | None,
    image_size: tuple[int, int],
    segments: list[tuple[int, int]],
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The parts of the figures ``fg`` (`part_masks`; the whole figure as one part without ``keypoints``)
    and, per frame, the `segment_references` of ``x0`` (N, C, h, w): what `pull_to_reference` reads."""
    x0, fg = x0.float(), fg.float()
    parts = figure_parts(fg, keypoints, image_size)
    return parts, segment_references(x0, fg, parts, segments)


def part_descriptors(x0: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
    """Per frame, every part's channel means and spreads (`part_statistics`) in one row ``(N, 2 P C)``, zero
    for a part the frame does not show: what `anchor.typical_frames` compares, part by part, so that a cap's
    colour counts as much as it differs and is not averaged into the whole figure's."""
    mean, std, ok = part_statistics(x0, parts)
    present = ok.to(mean.dtype)[..., None]
    return torch.cat([mean * present, std * present], 2).flatten(1)
