"""Stage 2 math (docs/method.md, stage 2; the paper's eq. 10-11): average fusion of backgrounds.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.method.fusion`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from vidtune.errors import VidtuneError

Weight = float | torch.Tensor

__all__ = [
    "BackgroundAverage",
    "FusionWeights",
    "background_average",
    "background_targets",
    "dilate",
    "eps_from_x0",
    "fuse",
    "fuse_latent_space",
    "fuse_x0_space",
    "learn_fusion_weights",
    "renoise",
    "sample_frames",
    "segment_backgrounds",
    "x0_from_eps",
]


# ---------------------------------------------------------------------------------------------
# Checks


def _check_frames(x: torch.Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} must be (frames, channels, height, width), got {tuple(x.shape)}")


def _check_mask(mask: torch.Tensor, x: torch.Tensor, name: str) -> None:
    n, _, h, w = x.shape
    if mask.ndim != 4 or mask.shape[0] != n or mask.shape[1] != 1 or mask.shape[2:] != x.shape[2:]:
        raise ValueError(f"{name} must be (frames={n}, 1, {h}, {w}) like the frames, got {tuple(mask.shape)}")


def _check_sample_idx(sample_idx: torch.Tensor, num_frames: int) -> None:
    if sample_idx.ndim != 2 or sample_idx.shape[0] != num_frames or sample_idx.shape[1] < 1:
        raise ValueError(f"sample_idx must be (frames={num_frames}, K >= 1), got {tuple(sample_idx.shape)}")
    if sample_idx.dtype != torch.long:
        raise ValueError(f"sample_idx must be int64 (torch.long), got {sample_idx.dtype}")
    if sample_idx.min() < 0 or sample_idx.max() >= num_frames:
        raise ValueError(f"sample_idx: frame indices must lie in 0..{num_frames - 1}")
    ordered = sample_idx.sort(dim=1).values
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise ValueError("sample_idx: a row samples the same frame twice; sample without replacement")


def _channel_weight(w: Weight, x: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or per-channel ``(C,)`` weight as a tensor broadcasting over ``(N, C, H, W)``."""
    if isinstance(w, torch.Tensor):
        if w.ndim == 0:
            return w.to(device=x.device, dtype=x.dtype)
        if w.ndim == 1 and w.shape[0] == x.shape[1]:
            return w.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        raise ValueError(f"{name} must be a float or a per-channel tensor ({x.shape[1]},), got {tuple(w.shape)}")
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
        raise ValueError(f"{name} must be a finite number or a per-channel tensor, got {w!r}")
    return x.new_tensor(float(w))


def _alpha(
    alpha_bar: float | torch.Tensor, like: torch.Tensor, allow_one: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(alpha_bar), sqrt(1 - alpha_bar) as tensors with ``like``'s dtype and device."""
    if isinstance(alpha_bar, torch.Tensor):
        ab = alpha_bar.to(device=like.device, dtype=like.dtype)
    else:
        if isinstance(alpha_bar, bool) or not isinstance(alpha_bar, (int, float)) or not (0 < alpha_bar <= 1):
            raise ValueError(f"alpha_bar must be a number in (0, 1], got {alpha_bar!r}")
        if not allow_one and alpha_bar == 1:
            raise ValueError("alpha_bar = 1 has no noise to recover; use a timestep with alpha_bar < 1")
        ab = like.new_tensor(float(alpha_bar))
    return ab.sqrt(), (1 - ab).sqrt()


# ---------------------------------------------------------------------------------------------
# x0 / eps conversions (DDIM)


def x0_from_eps(z: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """x0 = (z_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (DDIM's predicted clean latent)."""
    a, s = _alpha(alpha_bar, z)
    return (z - s * eps) / a


def eps_from_x0(z: torch.Tensor, x0: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """eps = (z_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar); alpha_bar < 1."""
    a, s = _alpha(alpha_bar, z, allow_one=False)
    return (z - a * x0) / s


def renoise(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """z_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (the forward process with a given eps)."""
    a, s = _alpha(alpha_bar, x0)
    return a * x0 + s * eps


# ---------------------------------------------------------------------------------------------
# Sampling and averaging (eq. 10)


def sample_frames(num_frames: int, num_samples: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The K frames whose backgrounds each frame averages, ``(frames, K)`` int64 on the CPU.

    Every row contains the frame itself: with K = all (``num_samples`` 0 or >= N) each row is
    0..N-1 and every frame's background becomes the same plain mean; with 1 <= K < N, row i is
    frame i (column 0) plus K - 1 other frames drawn uniformly without replacement. Including
    the frame itself makes K = all the limit of K < N, makes K = 1 "no fusion", and means B^i is
    defined wherever frame i sees its own background.

    Args:
        num_frames: N >= 1.
        num_samples: K (``fusion.num_samples``); 0 = every frame.
        generator: seeds the draw (``fusion.seed``); unused for K = all.
    """
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise VidtuneError(f"num_frames must be a positive integer, got {num_frames!r}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
        raise VidtuneError(f"fusion.num_samples must be an integer >= 0 (0 = every frame), got {num_samples!r}")
    if num_samples == 0 or num_samples >= num_frames:
        return torch.arange(num_frames).expand(num_frames, num_frames).clone()
    scores = torch.rand(num_frames, num_frames, generator=generator)
    scores.fill_diagonal_(-1.0)  # the frame itself sorts first
    return scores.argsort(dim=1)[:, :num_samples].contiguous()


class BackgroundAverage(NamedTuple):
    """Result of `background_average`."""

    mean: torch.Tensor  # B^i, (N, C, H, W); frame i's own value where coverage <= eps
    coverage: torch.Tensor  # sum_k M_b^k(p) over frame i's sample, (N, 1, H, W)


def _sample_sums(values: torch.Tensor, weights: torch.Tensor, sample_idx: torch.Tensor) -> torch.Tensor:
    """out[i] = sum_k weights[j_k] * values[j_k] over j_k = sample_idx[i, k] (one frame batch in memory at a time)."""
    idx = sample_idx.to(values.device)
    shape = torch.broadcast_shapes(weights.shape, values.shape)
    if (idx == idx[:1]).all():  # the same sample for every frame (K = all): one sum, broadcast
        return (weights[idx[0]] * values[idx[0]]).sum(dim=0, keepdim=True).expand(shape)
    out = values.new_zeros(shape)
    for k in range(idx.shape[1]):
        j = idx[:, k]
        out += weights[j] * values[j]
    return out


def background_average(
    x: torch.Tensor, bg: torch.Tensor, sample_idx: torch.Tensor, eps: float = 1e-6
) -> BackgroundAverage:
    """Average background of the sampled frames (eq. 10).

        B^i(p) = sum_k M_b^k(p) X^k(p) / sum_k M_b^k(p),   coverage^i(p) = sum_k M_b^k(p)

    over the frames k in ``sample_idx[i]``. Where no sampled frame sees background at p
    (coverage <= eps) B^i(p) falls back to frame i's own value X^i(p), so fusing there changes
    nothing.

    Args:
        x: X, ``(frames, channels, height, width)``.
        bg: M_b, ``(frames, 1, height, width)`` in [0, 1].
        sample_idx: ``(frames, K)`` int64, e.g. from `sample_frames`; no repeats within a row.
        eps: coverage below which a pixel counts as unseen.
    """
    _check_frames(x, "x")
    _check_mask(bg, x, "bg")
    _check_sample_idx(sample_idx, x.shape[0])
    bg = bg.to(x.dtype)
    num = _sample_sums(x, bg, sample_idx)
    coverage = _sample_sums(torch.ones_like(bg), bg, sample_idx)
    seen = coverage > eps
    mean = torch.where(seen, num / coverage.clamp_min(eps), x)
    return BackgroundAverage(mean, coverage)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-level dilation of ``(frames, 1, height, width)`` masks by a (2r+1)^2 square (max pooling)."""
    if radius <= 0:
        return mask
    return torch.nn.functional.max_pool2d(mask, kernel_size=2 * radius + 1, stride=1, padding=radius)


def segment_backgrounds(x: torch.Tensor, bg: torch.Tensor, segments, eps: float = 1e-6) -> BackgroundAverage:
    """One background per prompt segment: eq. 10 with K = the segment's frames.

    Returns means ``(segments, C, H, W)`` (0 where the segment never sees background) and
    coverage ``(segments, 1, H, W)``.
    """
    _check_frames(x, "x")
    _check_mask(bg, x, "bg")
    bg = bg.to(x.dtype)
    means, covers = [], []
    for s, e in segments:
        cover = bg[s:e].sum(dim=0)
        means.append((bg[s:e] * x[s:e]).sum(dim=0) / cover.clamp_min(eps) * (cover > eps))
        covers.append(cover)
    return BackgroundAverage(torch.stack(means), torch.stack(covers))


def background_targets(
    x: torch.Tensor, segment_bg: BackgroundAverage, weights: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Each frame's background target: its segments' backgrounds mixed by ``weights``
    ``(frames, segments)`` (`vidtune.method.segments.transition_weights`), renormalised over the segments
    that see background at the pixel; the frame's own value where none does."""
    _check_frames(x, "x")
    w = weights.to(device=x.device, dtype=x.dtype)
    seen = (segment_bg.coverage > eps).to(x.dtype)  # (S, 1, H, W)
    num = torch.einsum("ns,schw->nchw", w, segment_bg.mean.to(x.dtype) * seen)
    den = torch.einsum("ns,schw->nchw", w, seen)
    return torch.where(den > eps, num / den.clamp_min(eps), x)


# ---------------------------------------------------------------------------------------------
# Fusion (eq. 11)


def _blend(
    x: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, mean: torch.Tensor, w_f: torch.Tensor, w_b: torch.Tensor
) -> torch.Tensor:
    """X + (w_f - 1) M_f X + w_b M_b (B - X): eq. 11 rearranged (see `fuse`)."""
    return x + (w_f - 1) * fg * x + w_b * bg * (mean - x)


def fuse(
    x: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    sample_idx: torch.Tensor,
    w_f: Weight = 1.0,
    w_b: Weight = 1.0,
    eps: float = 1e-6,
    average_bg: torch.Tensor | None = None,
) -> torch.Tensor:
    """Average fusion of one set of frames (eq. 10-11).

        X~^i = w_f M_f^i X^i + M_b^i (w_b B^i + (1 - w_b) X^i)

    computed as X^i + (w_f - 1) M_f^i X^i + w_b M_b^i (B^i - X^i), which is the same when
    M_f + M_b = 1 (stage 1's masks are), makes w_f = 1, w_b = 0 exactly the identity, and leaves
    a pixel that is in neither mask untouched instead of zeroing it. Where no sampled frame sees
    background, B^i = X^i (see `background_average`), so the pixel keeps its own value.

    w_f = 1 keeps the foreground as it is; w_f != 1 scales the foreground (the paper's form; in
    latent space that scales its noise too). w_b in [0, 1] blends the frame's own background
    towards the average (1: replace it).

    Args:
        x: X, ``(frames, channels, height, width)``.
        fg, bg: M_f, M_b, ``(frames, 1, height, width)`` in [0, 1].
        sample_idx: ``(frames, K)`` int64 (see `sample_frames`).
        w_f, w_b: floats or per-channel tensors ``(channels,)``.
        eps: coverage below which a pixel counts as unseen.
        average_bg: the weights of each frame in the average B (default ``bg``). A background
            mask of a dilated foreground (`dilate`) keeps the figure's edges, which a mask
            misses at the latent resolution, out of every other frame's background: without
            it they average into a ghost of the figure that shows in every frame.
    """
    _check_frames(x, "x")
    _check_mask(fg, x, "fg")
    mean, _ = background_average(x, bg if average_bg is None else average_bg, sample_idx, eps)
    return _blend(
        x, fg.to(x.dtype), bg.to(x.dtype), mean, _channel_weight(w_f, x, "w_f"), _channel_weight(w_b, x, "w_b")
    )


def fuse_x0_space(
    z_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: float | torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    sample_idx: torch.Tensor,
    w_f: Weight = 1.0,
    w_b: Weight = 1.0,
) -> torch.Tensor:
    """Fuse the predicted clean latents and re-noise them with each frame's own noise (default mode).

        x0^i = x0(z_t^i, eps^i),   x0~ = fuse(x0),   z~_t^i = sqrt(ab) x0~^i + sqrt(1 - ab) eps^i

    The noise part of every frame is exactly its own predicted eps (unit variance, never
    averaged), so the denoiser sees a latent at the noise level of step t, and DDIM continuing
    from z~_t predicts x0~ again (x0_from_eps(z~_t, eps) = x0~).

    Args:
        z_t: ``(frames, channels, height, width)`` latents at the fusion step.
        eps: eps_theta(z_t, t), same shape.
        alpha_bar: alpha_bar_t, a float or a tensor broadcasting over the latents.
        fg, bg, sample_idx, w_f, w_b: as in `fuse`.

    Returns:
        z~_t, ``(frames, channels, height, width)``.
    """
    _check_frames(z_t, "z_t")
    if eps.shape != z_t.shape:
        raise ValueError(f"eps must have z_t's shape {tuple(z_t.shape)}, got {tuple(eps.shape)}")
    x0 = x0_from_eps(z_t, eps, alpha_bar)
    return renoise(fuse(x0, fg, bg, sample_idx, w_f, w_b), eps, alpha_bar)


def fuse_latent_space(
    z_t: torch.Tensor,
    alpha_bar: float | torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    sample_idx: torch.Tensor,
    w_f: Weight = 1.0,
    w_b: Weight = 1.0,
    generator: torch.Generator | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Fuse the noisy latents as the paper writes it, then put back the noise variance averaging removed.

    Model: z^j = a x^j + s e^j with a = sqrt(ab), s = sqrt(1 - ab) and the noise e^j independent
    standard normal across frames and pixels (stage 1 draws each frame's noise from its own
    seed; the masks are treated as fixed). At a pixel of frame i, with the sampled frames j_k,
    m_k = M_b^{j_k}(p), S = sum_k m_k and c_k = m_k / S, eq. 11 reads

        z~^i = phi z^i + beta sum_k c_k z^{j_k},   beta = w_b M_b^i,  phi = 1 + (w_f - 1) M_f^i - beta.

    Frame i's own latent also appears inside the average when it is sampled (`sample_frames`
    always samples it), with c_self = M_b^i / S, so its noise adds coherently; the other frames'
    noises are independent. The noise of z~^i therefore has variance s^2 r^2 with

        r^2 = (phi + beta c_self)^2 + beta^2 sum_{j_k != i} c_k^2

    (for all-background masks, w_b = 1 and K frames: r^2 = 1/K^2 + (K - 1)/K^2 = 1/K). Fresh
    noise xi ~ N(0, I) restores the scheduler's variance s^2 at every pixel:

        z~_t^i = eq. 11 + s sqrt(max(0, 1 - r^2)) xi.

    Where no sampled frame sees background, B^i = z^i (c_self = 1, no other terms). Where
    r^2 > 1 (w_f > 1 in the foreground, or w_b outside [0, 1]) the excess cannot be removed by
    adding noise and is left. If the frames share one noise (not stage 1's case), averaging
    removes nothing and this adds too much noise: use x0-space fusion there.

    Args:
        z_t: ``(frames, channels, height, width)``.
        alpha_bar: alpha_bar_t, a float or a tensor broadcasting over the latents.
        fg, bg, sample_idx, w_f, w_b, eps: as in `fuse`.
        generator: draws xi (on z_t's device).

    Returns:
        z~_t, ``(frames, channels, height, width)``.
    """
    _check_frames(z_t, "z_t")
    _check_mask(fg, z_t, "fg")
    _, s = _alpha(alpha_bar, z_t)
    n = z_t.shape[0]
    mean, coverage = background_average(z_t, bg, sample_idx, eps)
    fg, bg = fg.to(z_t.dtype), bg.to(z_t.dtype)
    w_f_t, w_b_t = _channel_weight(w_f, z_t, "w_f"), _channel_weight(w_b, z_t, "w_b")
    fused = _blend(z_t, fg, bg, mean, w_f_t, w_b_t)

    # sum of m_k over the frame itself (0 or M_b^i) and of m_k^2 over the other sampled frames
    idx = sample_idx.to(z_t.device)
    is_self = (idx == torch.arange(n, device=z_t.device)[:, None]).to(z_t.dtype)  # (N, K)
    self_m = is_self.sum(dim=1).view(n, 1, 1, 1) * bg
    other_sq = _sample_sums(bg, bg, sample_idx) - self_m * bg  # sum_k m_k^2 - own term
    seen = coverage > eps
    safe = coverage.clamp_min(eps)
    c_self = torch.where(seen, self_m / safe, torch.ones_like(coverage))
    other = torch.where(seen, other_sq.clamp_min(0) / safe**2, torch.zeros_like(coverage))

    beta = w_b_t * bg
    phi = 1 + (w_f_t - 1) * fg - beta
    r2 = (phi + beta * c_self) ** 2 + beta**2 * other
    xi = torch.randn(fused.shape, generator=generator, device=z_t.device, dtype=z_t.dtype)
    return fused + s * (1 - r2).clamp_min(0).sqrt() * xi


# ---------------------------------------------------------------------------------------------
# Learning w_f, w_b


class FusionWeights(NamedTuple):
    """Result of `learn_fusion_weights`."""

    w_f: float | torch.Tensor  # float, or (C,) when per channel
    w_b: float | torch.Tensor  # in [0, 1]
    history: list[float]  # the objective before each step and after the last (steps + 1 values)


def _background_variance(x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """V = sum_{i,c,p} M_b^i (X^i - mu)^2 / (C sum_{i,p} M_b^i), mu(p) = sum_i M_b^i X^i / sum_i M_b^i."""
    weight = bg.sum(dim=0, keepdim=True)  # (1, 1, H, W)
    mu = (bg * x).sum(dim=0, keepdim=True) / weight.clamp_min(1e-12)
    return (bg * (x - mu).square()).sum() / (x.shape[1] * bg.sum()).clamp_min(1e-12)


def learn_fusion_weights(
    x0: torch.Tensor,
    fg: torch.Tensor,
    bg: torch.Tensor,
    sample_idx: torch.Tensor,
    per_channel: bool = False,
    steps: int = 50,
    lr: float = 0.05,
    fidelity: float = 1.0,
) -> FusionWeights:
    """Fit w_f, w_b of eq. 11 by Adam on a consistency-vs-fidelity objective.

        x0~(w)  = fuse(x0, fg, bg, sample_idx, w_f, w_b)
        V(w)    = background variance of x0~ across frames, weighted by M_b (`_background_variance`)
        D(w)    = mean over frames, channels, pixels of (x0~^i - x0^i)^2
        L(w)    = (V(w) + fidelity * D(w)) / V_0,   V_0 = V at w_f = 1, w_b = 0 (the input's)

    V rewards agreeing backgrounds; D keeps every frame close to its own prediction (foreground
    and background), so the fit does not wash the frames out. Dividing by V_0 makes L scale-free
    (1 at the identity). With K = all and all-background masks the optimum is
    w_b = 1 / (1 + fidelity). Parametrisation: w_b = sigmoid(u) in [0, 1] (starts at 0.5),
    w_f = softplus(v) > 0 (starts at 1). B^i does not depend on w and is computed once.

    Args:
        x0: predicted clean latents ``(frames, channels, height, width)``.
        fg, bg, sample_idx: as in `fuse`.
        per_channel: one (w_f, w_b) per channel instead of scalars (``fusion.learn_per_channel``).
        steps: Adam steps (``fusion.learn_steps``), >= 0.
        lr: Adam learning rate on u, v (``fusion.learn_lr``), > 0.
        fidelity: weight of D (``fusion.fidelity``), >= 0.

    Returns:
        `FusionWeights` (w_f, w_b as floats, or ``(channels,)`` tensors on x0's device when
        per channel; the objective's history).
    """
    _check_frames(x0, "x0")
    _check_mask(fg, x0, "fg")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise VidtuneError(f"fusion.learn_steps must be an integer >= 0, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise VidtuneError(f"fusion.learn_lr must be a number > 0, got {lr!r}")
    if not (isinstance(fidelity, (int, float)) and math.isfinite(fidelity) and fidelity >= 0):
        raise VidtuneError(f"fusion.fidelity must be a number >= 0, got {fidelity!r}")
    dtype = x0.dtype if x0.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.inference_mode(False), torch.enable_grad():
        # normal (non-inference) copies, so that autograd may save them for backward
        x = x0.detach().to(dtype).clone()
        fg_, bg_ = fg.detach().to(x).clone(), bg.detach().to(x).clone()
        mean = background_average(x, bg_, sample_idx).mean.detach()
        v0 = _background_variance(x, bg_).detach().clamp_min(1e-12)
        shape = (x.shape[1],) if per_channel else ()
        u = torch.zeros(shape, dtype=dtype, device=x.device, requires_grad=True)  # w_b = sigmoid(u)
        v = torch.full(
            shape, math.log(math.e - 1), dtype=dtype, device=x.device, requires_grad=True
        )  # w_f = softplus(v)
        optimizer = torch.optim.Adam([u, v], lr=lr)

        def objective() -> torch.Tensor:
            w_f = torch.nn.functional.softplus(v)
            w_b = torch.sigmoid(u)
            if per_channel:
                w_f, w_b = w_f.view(1, -1, 1, 1), w_b.view(1, -1, 1, 1)
            fused = _blend(x, fg_, bg_, mean, w_f, w_b)
            return (_background_variance(fused, bg_) + fidelity * (fused - x).square().mean()) / v0

        history: list[float] = []
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = objective()
            history.append(float(loss.detach()))
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            history.append(float(objective()))
            w_f_out = torch.nn.functional.softplus(v).detach()
            w_b_out = torch.sigmoid(u).detach()
    if per_channel:
        return FusionWeights(w_f_out, w_b_out, history)
    return FusionWeights(float(w_f_out), float(w_b_out), history)
