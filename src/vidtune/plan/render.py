"""The text `vidtune plan` prints: clips, prompts, a text plot of merge weights, the prompt schedule,
the evaluations, each stage's memory and (measured) time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from vidtune.config import ModelConfig, RunConfig, codenoise_steps
from vidtune.plan.cost import _overlap_frames, evaluations_text, time_lines
from vidtune.plan.memory import (
    _DTYPE_BYTES,
    DECODE_BATCH,
    LATENT_COPIES,
    _count,
    _gib,
    memory_estimate,
    stage_peaks,
)
from vidtune.plan.sizes import model_sizes, trainable_parameters

if TYPE_CHECKING:
    import torch

    from vidtune.method.windows import Window

_LEVELS = ".:-=+*#%@"  # weight in (0, 1], low -> high; a blank means the frame is not in the clip


def _level(w: float) -> str:
    if w <= 0:
        return " "
    return _LEVELS[min(len(_LEVELS) - 1, int(w * len(_LEVELS)))]


MAX_LISTED_CLIPS = 60  # longer plans list the first and last half of this many clips
MAX_PLOTTED_BLOCKS = 12  # ... and plot the first and last half of this many blocks of frames


def _per_clip_weights(
    weights: torch.Tensor | Sequence[torch.Tensor], windows: Sequence[Window], num_frames: int
) -> list[torch.Tensor]:
    """Merge weights as one (end - start,) tensor per clip, from dense (clips, frames) or per-clip weights.

    Per-clip weights are returned as given, not copied: a million-frame plan holds 10^5 of them."""
    import torch

    if isinstance(weights, torch.Tensor):
        if tuple(weights.shape) != (len(windows), num_frames):
            raise ValueError(f"weights must be (clips={len(windows)}, frames={num_frames}), got {tuple(weights.shape)}")
        w = weights.detach().to("cpu", torch.float64)
        return [w[k, s:e] for k, (s, e) in enumerate(windows)]
    if len(weights) != len(windows) or any(len(w) != e - s for w, (s, e) in zip(weights, windows)):
        raise ValueError(f"weights: need one tensor of the clip's length per clip ({len(windows)} clips)")
    return list(weights)


def _coverage(windows: Sequence[Window], num_frames: int) -> torch.Tensor:
    """How many clips cover each frame, ``(frames,)`` (a difference array: O(K + N))."""
    import torch

    delta = torch.zeros(num_frames + 1, dtype=torch.int64)
    for start, end in windows:
        delta[start] += 1
        delta[end] -= 1
    return delta.cumsum(0)[:num_frames]


def _shown(count: int, limit: int) -> tuple[list[int], int]:
    """Indices to show out of `count` (all, or the first and last limit // 2) and where the gap goes."""
    if count <= limit:
        return list(range(count)), -1
    half = limit // 2
    return list(range(half)) + list(range(count - half, count)), half


def _clip_lines(windows: Sequence[Window], prompts: Sequence[str]) -> list[str]:
    kw = len(str(len(windows) - 1))
    lines = ["  clip  frames       prompt"]
    shown, gap = _shown(len(windows), MAX_LISTED_CLIPS)
    for i, k in enumerate(shown):
        if i == gap:
            lines.append(f"  ... {len(windows) - len(shown)} clips not listed")
        (start, end), prompt = windows[k], prompts[k]
        text = prompt if len(prompt) <= 70 else prompt[:67] + "..."
        lines.append(f"  {k:>{max(kw, 4)}}  {f'{start}-{end - 1}':<11}  {text!r}")
    return lines


def _plot_block(
    block_start: int,
    block_end: int,
    windows: Sequence[Window],
    per_clip: list[torch.Tensor],
    coverage: torch.Tensor,
    label_w: int,
) -> list[str]:
    """The weight plot of frames [block_start, block_end): a ruler, one row per clip in it, the coverage."""
    cols = range(block_start, block_end)
    ruler = [" "] * len(cols)
    for f in cols:
        if f % 10 == 0:
            text = str(f)[: len(cols) - (f - block_start)]
            ruler[f - block_start : f - block_start + len(text)] = text
    lines = ["", f"{'frame':<{label_w}} {''.join(ruler)}"]
    for k, (start, end) in enumerate(windows):
        if end <= block_start or start >= block_end:
            continue
        row = [_level(float(per_clip[k][f - start])) if start <= f < end else " " for f in cols]
        lines.append(f"{f'clip {k}':<{label_w}} " + "".join(row))
    cover = coverage[block_start:block_end].tolist()
    lines.append(f"{'cover':<{label_w}} " + "".join(str(c) if c < 10 else "+" for c in cover))
    return lines


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 clip``, ``3 clips`` (``many``: an irregular plural, e.g. batches)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def plan_text(
    num_frames: int,
    windows: Sequence[Window],
    weights: torch.Tensor | Sequence[torch.Tensor],
    prompts: Sequence[str],
    *,
    guidance: bool = True,
    num_steps: int | None = None,
    width: int = 100,
) -> str:
    """A readable plan of stage 4: clips, prompts, a text plot of merge weights, UNet evaluations.

    Long plans list the first and last clips and plot the first and last blocks of frames only
    (the text stays short and the memory O(K M + N) at a million frames).

    Args:
        num_frames: N.
        windows: the clips.
        weights: ``(clips, frames)`` merge weights (normalised per frame; per-pixel weights:
            pass the per-frame ones they were built from), or per clip (`clip_merge_weights`).
        prompts: one prompt per clip.
        guidance: classifier-free guidance doubles the UNet evaluations.
        num_steps: denoising steps, for the totals (None: per step only).
        width: frames per block of the weight plot.
    """
    from vidtune.method.windows import _check_windows, _positive_int

    num_frames = _positive_int(num_frames, "num_frames")
    width = _positive_int(width, "width")
    _check_windows(windows, num_frames)
    per_clip = _per_clip_weights(weights, windows, num_frames)
    if len(prompts) != len(windows):
        raise ValueError(f"prompts: need one per clip ({len(windows)}), got {len(prompts)}")
    lengths = sorted({end - start for start, end in windows})
    stride_set = sorted({b[0] - a[0] for a, b in zip(windows, windows[1:])})
    lines = [
        f"Temporal co-denoising plan: {num_frames} frames, {plural(len(windows), 'clip')} of "
        f"{'/'.join(map(str, lengths))} frames"
        + (f", clip starts {'/'.join(map(str, stride_set))} frames apart" if stride_set else ""),
        "",
    ]
    lines += _clip_lines(windows, prompts)
    lines += [
        "",
        f"Merge weights per frame (rows: clips; '{_LEVELS}' = low..high share of the frame, blank = not in the clip):",
    ]
    coverage = _coverage(windows, num_frames)
    label_w = max(6, 5 + len(str(len(windows) - 1)))
    blocks = list(range(0, num_frames, width))
    shown, gap = _shown(len(blocks), MAX_PLOTTED_BLOCKS)
    for i, b in enumerate(shown):
        if i == gap:
            lines += ["", f"... frames {blocks[shown[i - 1]] + width}-{blocks[b] - 1} not plotted"]
        lines += _plot_block(blocks[b], min(num_frames, blocks[b] + width), windows, per_clip, coverage, label_w)

    per_step = sum(end - start for start, end in windows) * (2 if guidance else 1)
    cfg_text = " x 2 (CFG)" if guidance else ""
    lines += [
        "",
        f"UNet frame evaluations per step: {sum(end - start for start, end in windows)} clip frames{cfg_text} = "
        f"{per_step} ({per_step / num_frames:.2f} per video frame)",
    ]
    if num_steps is not None:
        lines.append(
            f"Over {num_steps} steps: {per_step * num_steps} frame evaluations "
            f"({per_step * num_steps / num_frames:.1f} per video frame)"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The report


def _device_dtype(cfg: ModelConfig) -> tuple[str, str]:
    """The device and UNet dtype the run will use (`vidtune.device`'s rule; a plan may be made off the GPU)."""
    from vidtune.device import DTYPE_NAMES, resolve_device, resolve_dtype

    device = resolve_device(cfg.device, strict=False)
    return str(device), DTYPE_NAMES[resolve_dtype(cfg.dtype, device)]


def schedule_lines(cfg: RunConfig, num_frames: int) -> list[str]:
    """A prompt schedule's segments and the frames of each transition between them ([] for one prompt)."""
    from vidtune.method.prompts import per_frame_prompts, prompt_schedule
    from vidtune.method.segments import prompt_segments, transition_frames

    schedule = prompt_schedule(cfg.inputs)
    if not isinstance(schedule, dict) or len(schedule) < 2:
        return []
    frames = per_frame_prompts(num_frames, schedule)
    segments = prompt_segments(frames)
    width = cfg.codenoise.transition
    between = transition_frames(num_frames, segments, width).nonzero().flatten().tolist()
    lines = ["", f"Prompt schedule: {plural(len(segments), 'segment')}"]
    lines += [f"  frames {s:>4}-{e - 1:<4} {frames[s]!r}" for s, e in segments]
    if width and between:
        runs = _runs(between)
        lines.append(
            f"  transitions (codenoise.transition = {width}): frames "
            + ", ".join(f"{a}-{b}" for a, b in runs)
            + ", where neighbouring segments' prompts mix"
        )
    else:
        lines.append("  transitions: none (codenoise.transition = 0: a cut at each segment's first frame)")
    return lines


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Consecutive integers as (first, last) runs."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def plan_report(cfg: RunConfig, seconds_per_eval: float | None = None) -> str:
    """The text `vidtune plan` prints: frames, clips, prompts, merge weights, UNet evaluations, memory,
    and with ``seconds_per_eval`` (`measure_unet_seconds`) a time estimate per stage."""
    from vidtune.inputs import count as count_inputs
    from vidtune.method.clips import clip_batches, plan_clips
    from vidtune.method.prompts import prompt_schedule
    from vidtune.sampling import sdedit_start
    from vidtune.validate import check_run

    c, s = cfg.codenoise, cfg.sampling
    num_frames, fps, summary = count_inputs(cfg.inputs)
    check_run(cfg, num_frames)
    guidance = s.guidance > 1.0
    all_steps = codenoise_steps(cfg)
    steps = all_steps
    if c.init != "noise":
        steps -= sdedit_start(all_steps, c.strength)
    plan = plan_clips(c, num_frames, prompt_schedule(cfg.inputs), step=all_steps - steps)
    lines = [
        f"Pose source: {summary}",
        f"Video: {num_frames} frames at {fps:g} fps, {cfg.inputs.width}x{cfg.inputs.height} px; "
        f"{steps} of {all_steps} {s.scheduler} steps in stage 4 (init {c.init!r}), attention {c.attention!r}, "
        f"weighting {c.weighting!r}",
    ]
    if num_frames < c.clip_length:
        lines.append(
            f"Note: {num_frames} frames < codenoise.clip_length = {c.clip_length}: one clip of "
            f"{num_frames} frames (codenoise.shrink_clip = true)"
        )
    if c.fg_gain > 0:
        lines.append(
            f"Note: codenoise.fg_gain = {c.fg_gain:g}: the weights below are also multiplied per pixel by "
            "stage 1's foreground masks (not known before stage 1 runs)"
        )
    lines += schedule_lines(cfg, num_frames)
    lines.append("")
    lines.append(
        plan_text(num_frames, plan.windows, plan.weights, plan.prompts, guidance=guidance, num_steps=steps).rstrip("\n")
    )
    if c.attention == "global":
        anchor = 2 if guidance else 1
        lines.append(
            f"Attention 'global': + {anchor} anchor frame evaluation(s) per step (frame {plan.anchor}), "
            f"{anchor * steps} in all"
        )

    if c.mode == "shifted":
        lines.append(
            f"Mode 'shifted': the clips above are those of the first step; their boundaries move every step "
            f"(each frame evaluated once per step; 'overlap' would evaluate it "
            f"{_overlap_frames(c, num_frames) / num_frames:.2f}"
            " times)"
        )
    lines += ["", *evaluations_text(cfg, num_frames)]

    batches = clip_batches(plan.windows, c.max_batch_frames)
    largest = max(sum(plan.windows[k][1] - plan.windows[k][0] for k in b) for b in batches)
    sizes = model_sizes(cfg.model)
    device, dtype = _device_dtype(cfg.model)
    est = memory_estimate(
        sizes, num_frames, cfg.inputs.height, cfg.inputs.width, largest, guidance, _DTYPE_BYTES[dtype]
    )
    f = sizes.vae_factor
    h, w = cfg.inputs.height // f, cfg.inputs.width // f
    params = ", ".join(f"{name} {_count(n)} ({sizes.counted[name]})" for name, n in sizes.parameters.items())
    rows = largest * (2 if guidance else 1)
    lines += [
        "",
        f"Estimated peak memory of stage 4 on {device} ({dtype}; model {sizes.source}):",
        f"  weights        {_gib(est.weights):>11}  {params}",
        f"  latents        {_gib(est.latents):>11}  {LATENT_COPIES} video-sized tensors x {num_frames} x "
        f"{sizes.latent_channels}x{h}x{w}",
        f"  adapter feats  {_gib(est.features):>11}  every frame's T2I-Adapter residuals"
        + (f" ({_gib(est.features / num_frames)} per frame)" if est.features else " (no adapter)"),
        f"  activations    {_gib(est.activations):>11}  the largest UNet batch: {plural(largest, 'clip frame')}"
        + (f" x 2 (CFG) = {rows} rows" if guidance else "")
        + f" ({plural(len(batches), 'batch', 'batches')} of clips per step, at most codenoise.max_batch_frames = "
        f"{c.max_batch_frames} clip frames each)",
        f"  decoding       {_gib(est.decoding):>11}  VAE, {DECODE_BATCH} frames at a time, after the loop",
        f"  peak           {_gib(est.peak):>11}  (+ {_gib(est.pose_images)} of pose images and "
        f"{_gib(plan.weight_bytes)} of merge weights in host memory)",
        "  (rough: see vidtune.plan's docstring for the formulas and how they were calibrated)",
    ]
    peaks = stage_peaks(sizes, cfg, num_frames, largest, device, _DTYPE_BYTES[dtype])
    top = max(peaks, key=peaks.get)
    trained = trainable_parameters(
        sizes.configs["unet"], cfg.tuning.trainable, cfg.tuning.lora_rank, cfg.tuning.lora_targets
    )
    lines += [
        "",
        f"Estimated peak memory of each stage on {device}; the run's peak is stage {top}'s:",
        f"  1 separate     {_gib(peaks[1]):>11}  batches of separate.batch_frames = {cfg.separate.batch_frames}",
        f"  2 fuse         {_gib(peaks[2]):>11}  denoises on from the fusion step, the same batches",
        f"  3 tune         {_gib(peaks[3]):>11}  tuning.trainable = {cfg.tuning.trainable!r}: {_count(trained)} "
        f"parameters trained in fp32 with AdamW, batch {cfg.tuning.batch_size}",
        f"  4 co-denoise   {_gib(peaks[4]):>11}  as above",
    ]
    if seconds_per_eval is not None:
        lines += ["", *time_lines(cfg, num_frames, seconds_per_eval)]
    return "\n".join(lines) + "\n"
