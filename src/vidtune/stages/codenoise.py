"""Stage 4 — inter-frame consistency: temporal co-denoising of the whole video (Gen-L-Video).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.stages.codenoise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vidtune import artifacts as A
from vidtune import distributed as D
from vidtune.config import CodenoiseConfig, CodenoiseStageConfig, codenoise_steps
from vidtune.errors import VidtuneError
from vidtune.inputs import VideoInputs
from vidtune.method import appearance as P
from vidtune.method.anchor import medoid_frame
from vidtune.method.attention import CrossFrameAttention
from vidtune.method.clips import (
    ClipPlan,
    ClipSchedule,
    background_targets,
    clip_batches,
    clip_schedule,
    reschedule_noise,
)
from vidtune.method.segments import prompt_segments, transition_weights
from vidtune.method.windows import (
    MergeAccumulator,
)
from vidtune.models import Components
from vidtune.results import CodenoiseResult, FusionResult
from vidtune.sampling import (
    EpsFn,
    FeatureBank,
    PromptBank,
    denoise,
    guided_eps,
    initial_noise,
    make_prompt_bank,
    prepare_scheduler,
    sdedit_start,
)
from vidtune.stages.common import (
    DECODE_BATCH,
    Conditioning,
    Stage,
    StageCallback,
    StageContext,
    background_plate,
    build_scheduler,
    split_decode,
    step_callback,
    x0_guide,
)

if TYPE_CHECKING:
    from diffusers import SchedulerMixin, UNet2DConditionModel


def codenoise_eps_fn(
    unet: UNet2DConditionModel,
    xattn: CrossFrameAttention | None,
    plan: ClipPlan | ClipSchedule,
    clip_bank: PromptBank,
    anchor_bank: PromptBank,
    features: FeatureBank,
    guidance: float,
    max_batch_frames: int,
    frame_cond: torch.Tensor | None = None,
    unguided_below: float = 0.0,
) -> EpsFn:
    """eps(f) = sum_k w_k(f) eps_k(f) / sum_k w_k(f) over the step's clips containing f (docs/method.md, stage 4).

    Per step: the step's clips (`ClipSchedule.at`) -> batches of clips -> eps per clip -> `MergeAccumulator`.
    `clip_bank` holds the embeddings of the schedule's ``prompts`` in that order (a `ClipPlan`: of its
    clips' prompts). `frame_cond` (N, L, D), when given, is every frame's own prompt embedding (a prompt
    schedule's transitions); otherwise every frame of clip k uses the clip's prompt. Steps whose timestep
    is below `unguided_below` (in timesteps) use the conditional prediction alone (`codenoise.unguided_below`)."""
    schedule = plan if isinstance(plan, ClipSchedule) else ClipSchedule.fixed(plan)
    rows = {p: int(clip_bank.index[i]) for i, p in reversed(list(enumerate(schedule.prompts)))}

    def eps_fn(model_input: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
        g = guidance if float(t) >= unguided_below else 1.0
        cfg_copies = 2 if g > 1.0 else 1
        dtype = unet.dtype
        if xattn is not None and xattn.uses_anchor:  # the anchor's keys/values: once per step, for every clip
            a = [schedule.at(step).anchor]
            with xattn.record_anchor():
                feats = features.take(a, model_input.device, dtype) if features.num_frames else []
                guided_eps(unet, model_input[a].to(dtype), t, anchor_bank.embeds, anchor_bank.uncond, feats, g)
        step_plan = schedule.at(step)
        windows = step_plan.windows
        acc = MergeAccumulator(model_input.shape[0])
        for batch in D.rank_batches(clip_batches(windows, max_batch_frames), windows):  # torchrun: a share
            frames = [f for k in batch for f in range(*windows[k])]
            sizes = [windows[k][1] - windows[k][0] for k in batch]
            if xattn is not None:
                anchor_rows = [c for c in range(cfg_copies) for _ in batch]
                xattn.set_groups(sizes * cfg_copies, anchor_index=anchor_rows)
            x = model_input[frames].to(dtype)
            if frame_cond is not None:
                cond = frame_cond[frames].to(x.device)
            else:
                prompt_rows = [rows[step_plan.prompts[k]] for k in batch]
                cond = torch.cat([clip_bank.embeds[r : r + 1].expand(n, -1, -1) for r, n in zip(prompt_rows, sizes)])
                cond = cond.to(x.device)
            feats = features.take(frames, x.device, dtype) if features.num_frames else []
            eps = guided_eps(unet, x, t, cond, clip_bank.uncond.to(x.device), feats, g).to(model_input.dtype)
            for k, eps_k in zip(batch, eps.split(sizes)):
                acc.add(windows[k], eps_k, step_plan.weights[k])
        D.all_reduce_merge(acc, model_input)  # torchrun: every rank's clips, one all-reduce per step
        return acc.result()

    return eps_fn


def initial_latents(
    cfg: CodenoiseConfig,
    scheduler: SchedulerMixin,
    timesteps: torch.Tensor,
    num_frames: int,
    shape: tuple[int, int, int],
    device,
    dtype,
    fused_x0: torch.Tensor | None,
    trajectory: torch.Tensor | None = None,
    stage1_noise: tuple[int, bool] = (0, True),
) -> tuple[torch.Tensor, int]:
    """z at the first step: seeded noise, stage 2's frames noised to `strength` (SDEdit), or stage 2's own
    latent at that step (`trajectory`, (S, N, C, h, w) entering its last S steps). Returns (z, start index).
    `stage1_noise`: stage 1's (seed, shared), the noise of ``noise_mode = "stage1"``."""
    if cfg.init == "trajectory":
        start = sdedit_start(len(timesteps), cfg.strength)
        first = len(timesteps) - len(trajectory)  # stage 2's fusion step index
        if start < first:
            raise VidtuneError(
                f"codenoise.init = 'trajectory' at codenoise.strength = {cfg.strength:g} starts at step {start}, "
                f"before stage 2's first step {first} (separate.fusion_step); lower codenoise.strength or use init = 'fused'"
            )
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start * getattr(scheduler, "order", 1))
        return trajectory[start - first].to(device=device, dtype=dtype), start
    seed, shared = stage1_noise if cfg.noise_mode == "stage1" else (cfg.seed, cfg.noise_mode == "shared")
    noise = initial_noise(num_frames, shape, seed, shared=shared, device=device, dtype=dtype)
    if cfg.noise_mode == "rescheduled":
        noise = reschedule_noise(
            noise, min(cfg.clip_length, num_frames), cfg.stride, torch.Generator("cpu").manual_seed(cfg.seed)
        )
    if cfg.init == "noise":
        return noise * scheduler.init_noise_sigma, 0
    start = sdedit_start(len(timesteps), cfg.strength)
    t0 = timesteps[start : start + 1]
    if hasattr(scheduler, "set_begin_index"):  # Euler / DPM-Solver's add_noise uses the sigma at the begin index
        scheduler.set_begin_index(start * getattr(scheduler, "order", 1))
    return scheduler.add_noise(fused_x0.to(device=device, dtype=dtype), noise, t0.repeat(num_frames)), start


def keep_background_guide(scheduler: SchedulerMixin, targets: torch.Tensor, bg: torch.Tensor):
    """A `StepGuide` that keeps stage 2's result outside the figure: every step, the predicted x0 is
    pulled to `targets` with weight `bg` = M_b (`background_targets`; slices of them for a part of the
    video). The foreground is the model's: stage 4 refines the figure with the tuned UNet and
    cross-frame attention, and cannot undo stage 2's background."""
    return x0_guide(scheduler, lambda x0: x0 + bg * (targets - x0))


@dataclass(frozen=True)
class FigurePull:
    """`codenoise.figure_pull`: every frame's body parts (N, P, h, w), the reference frame's part statistics
    (`appearance.part_statistics`) and the weight the predicted x0's parts move to them by."""

    parts: torch.Tensor
    reference: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    weight: float

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        return P.pull_to_reference(x0, self.parts, self.reference, self.weight)


def figure_pull(
    c: CodenoiseConfig, inputs: VideoInputs, s2: FusionResult, image_size: tuple[int, int], device=None
) -> FigurePull:
    """The parts of stage 2's figures (from the pose keypoints; the whole figure as one part without them)
    and, for every frame, the part statistics of the medoid figure of its prompt segment
    (`appearance.segment_references`): the look it is pulled to; on `device`, once."""
    keypoints = None if inputs.keypoints is None else torch.as_tensor(inputs.keypoints)
    parts, reference = P.figure_reference(s2.x0, s2.fg, keypoints, image_size, prompt_segments(inputs.prompts))
    return FigurePull(parts=parts.to(device), reference=tuple(r.to(device) for r in reference), weight=c.figure_pull)


def needs_fusion(c: CodenoiseConfig) -> bool:
    """Whether stage 4 reads stage 2's result: to start from it, keep its background, weigh by its masks or
    pick the anchor among its figures (a T2V-Zero-like run from noise with `background = "free"` does not)."""
    return c.init != "noise" or c.background == "keep" or c.fg_gain > 0 or medoid_anchor(c) or c.figure_pull > 0


def medoid_anchor(c: CodenoiseConfig) -> bool:
    """Whether the global anchor is chosen among stage 2's figures (`vidtune.method.anchor`)."""
    return c.attention == "global" and c.anchor == "medoid"


@dataclass
class CodenoiseSetup:
    """Everything stage 4's loop starts from (`prepare`): the clips of every step, the clip / anchor prompt
    banks, the scheduler with its first latents z and step index, every frame's own embedding under a
    prompt schedule (`frame_cond`), and stage 2's background targets with their weight (None: `free`)."""

    clips: ClipSchedule
    clip_bank: PromptBank
    anchor_bank: PromptBank
    scheduler: object
    timesteps: torch.Tensor
    z: torch.Tensor
    start: int
    frame_cond: torch.Tensor | None
    targets: torch.Tensor | None
    bg: torch.Tensor | None
    figure: FigurePull | None = None
    figure_from: int = 0  # the first step index the figure is pulled at
    figure_until: int = 0  # the last step index the figure is pulled at

    @property
    def guide(self):
        """Stage 2's background kept at every step (`keep_background_guide`) and, before it, the figure
        pulled to the reference (`FigurePull`) up to `figure_until`; None when neither is on."""
        keep = None if self.targets is None else keep_background_guide(self.scheduler, self.targets, self.bg)
        if self.figure is None:
            return keep
        pull = x0_guide(self.scheduler, self.figure, first_step=self.figure_from, last_step=self.figure_until)
        if keep is None:
            return pull
        return lambda step, t, latents, eps: keep(step, t, pull(step, t, latents, eps), eps)


def first_step_below(timesteps: torch.Tensor, start: int, below: float) -> int:
    """The step index of the first of ``timesteps`` (the schedule from step index ``start`` on) below ``below``
    (in timesteps; at or above the schedule's length: ``start`` itself); past the last step when none is, so
    that a guide starting there never acts."""
    later = [j for j, t in enumerate(timesteps.tolist()) if t < below]
    return start + (later[0] if later else len(timesteps))


def prepare(
    cfg: CodenoiseStageConfig, components: Components, inputs: VideoInputs, s2: FusionResult | None
) -> CodenoiseSetup:
    """Stage 4's plan and starting point: clips, prompt banks, scheduler, initial latents, background targets."""
    from vidtune.method.prompts import prompt_schedule

    c, s = cfg.codenoise, cfg.sampling
    if s2 is None and needs_fusion(c):
        raise VidtuneError(
            "stage 4 with codenoise.init = 'fused' or 'trajectory', background = 'keep', fg_gain > 0, anchor = 'medoid' or figure_pull > 0 "
            "needs stage 2's result; run with --stages 1,2,3,4"
        )
    device, dtype = components.device, components.unet.dtype
    fg = s2.fg if c.fg_gain > 0 else None
    schedule = prompt_schedule(cfg.inputs)
    anchor = medoid_frame(s2.x0, s2.fg) if medoid_anchor(c) else None
    clips = clip_schedule(c, inputs.num_frames, schedule, fg, anchor)
    bank = lambda prompts: make_prompt_bank(  # noqa: E731
        components.tokenizer, components.text_encoder, prompts, cfg.inputs.negative_prompt
    )
    scheduler = build_scheduler(components.scheduler, s)
    f = components.vae_scale_factor
    shape = (components.latent_channels, cfg.inputs.height // f, cfg.inputs.width // f)
    steps = codenoise_steps(cfg)
    all_steps = prepare_scheduler(scheduler, steps, device)
    if c.init == "trajectory" and s2.trajectory is None:
        raise VidtuneError(
            "codenoise.init = 'trajectory': stage 2's result holds no trajectory (made by an older vidtune); "
            "rerun stage 2 (--stages 2,3,4) or use codenoise.init = 'fused'"
        )
    z, start = initial_latents(
        c,
        scheduler,
        all_steps,
        inputs.num_frames,
        shape,
        device,
        dtype,
        s2.x0 if c.init == "fused" else None,
        trajectory=s2.trajectory if c.init == "trajectory" else None,
        stage1_noise=(cfg.separate.seed, cfg.separate.noise_mode == "shared"),
    )
    timesteps = prepare_scheduler(scheduler, steps, device, start=start)
    segments = prompt_segments(inputs.prompts)
    mix = transition_weights(inputs.num_frames, segments, c.transition)
    frame_cond = None
    if isinstance(schedule, dict) and len(segments) > 1:
        seg_bank = bank([inputs.prompts[s_] for s_, _ in segments])
        frame_cond = torch.einsum("ns,sld->nld", mix.to(seg_bank.embeds), seg_bank.embeds)
    targets = bg = None
    if c.background == "keep":
        targets, bg = background_targets(
            s2.x0.to(device).float(), s2.fg.to(device).float(), segments, cfg.fusion.dilate, c.background_margin
        )
    return CodenoiseSetup(
        clips=clips,
        clip_bank=bank(list(clips.prompts)),
        anchor_bank=bank([inputs.prompts[clips.at(0).anchor]]),
        scheduler=scheduler,
        timesteps=timesteps,
        z=z,
        start=start,
        frame_cond=frame_cond,
        targets=targets,
        bg=bg,
        figure=figure_pull(c, inputs, s2, (cfg.inputs.height, cfg.inputs.width), device) if c.figure_pull > 0 else None,
        figure_from=first_step_below(timesteps, start, c.figure_pull_below * s.num_train_timesteps),
        figure_until=start + max(1, round(c.figure_pull_steps * (steps - start))) - 1,
    )


def run(
    cfg: CodenoiseStageConfig,
    components: Components,
    inputs: VideoInputs,
    cond: Conditioning,
    s2: FusionResult | None,
    tuned: bool = False,
    callback: StageCallback | None = None,
    progress: bool = True,
) -> CodenoiseResult:
    """Stage 4: plan clips -> initial latents -> co-denoise -> decode. ``components.unet`` is the UNet
    that runs (the caller applies stage 3's result within `Components.unet_with`); `tuned` says which it is,
    for the record."""
    c, s = cfg.codenoise, cfg.sampling
    setup = prepare(cfg, components, inputs, s2)
    plan = setup.clips.at(setup.start)
    xattn = CrossFrameAttention(c.attention)
    xattn.install(components.unet)
    try:
        eps_fn = codenoise_eps_fn(
            components.unet,
            xattn,
            setup.clips,
            setup.clip_bank,
            setup.anchor_bank,
            cond.features,
            s.guidance,
            c.max_batch_frames,
            frame_cond=setup.frame_cond,
            unguided_below=c.unguided_below * s.num_train_timesteps,
        )
        with torch.no_grad():
            x0 = denoise(
                setup.z,
                setup.scheduler,
                setup.timesteps,
                eps_fn,
                start_index=setup.start,
                guide=setup.guide,
                eta=s.eta,
                generator=torch.Generator("cpu").manual_seed(c.seed),
                progress=progress,
                desc=f"stage 4: co-denoising {len(plan.windows)} clips ({c.mode})",
                callback=step_callback(callback, 4),
            )
    finally:
        xattn.remove()
    del eps_fn  # not needed while decoding
    frames = split_decode(components.vae, x0, DECODE_BATCH, progress, "stage 4: decoding")  # torchrun: split
    if c.background == "keep":  # the plate of stage 4's own frames; a schedule's scenes dissolve here
        segments = prompt_segments(inputs.prompts)
        frames = background_plate(frames, s2.fg_pixel, s2.fg, cfg.fusion, segments, c.transition)
    info = {
        "frames": inputs.num_frames,
        "clips": len(plan.windows),
        "mode": c.mode,
        "unet": "tuned" if tuned else "base",
        "attention": c.attention,
        "unet_frame_evals_per_step": (sum(e - s_ for s_, e in plan.windows) + (1 if xattn.uses_anchor else 0))
        * (2 if s.guidance > 1 else 1),  # guided steps (those below codenoise.unguided_below: half)
    }
    return CodenoiseResult(x0=x0, frames=frames, info=info)


class CodenoiseStage(Stage):
    """Stage 4 in the registry (`vidtune.stages.registry`): the video co-denoised as overlapping clips,
    on stage 3's tuned UNet when stage 3 is done (`uses`), else on the base UNet; it needs stage 2 only
    when the config reads it (`needs_fusion`: `codenoise.init = "fused"`, the default, among others)."""

    number, name, title, method = 4, "codenoise", "co-denoising", "codenoise"
    view = CodenoiseStageConfig  # the config it reads (`config.stage_view`): its resume hash
    result = CodenoiseResult
    video: str | None = A.FINAL_VIDEO  # under the run folder
    uses: tuple[int, ...] = (3,)

    def requires(self, cfg: CodenoiseStageConfig) -> tuple[int, ...]:
        return (2,) if needs_fusion(cfg.codenoise) else ()

    def run(self, ctx: StageContext, previous: Mapping[int, Any]) -> CodenoiseResult:
        tuned, c, n = previous.get(3), ctx.cfg.codenoise, ctx.inputs.num_frames
        if n < c.clip_length and c.shrink_clip:
            ctx.log(
                f"vidtune: {n} frames < codenoise.clip_length {c.clip_length}: codenoise.shrink_clip uses one clip of {n} frames"
            )
        with ctx.components.unet_with(tuned, c.tuned_scale):
            return run(
                ctx.cfg,
                ctx.components,
                ctx.inputs,
                ctx.conditioning(),
                previous.get(2),
                tuned=tuned is not None,
                callback=ctx.callback,
                progress=ctx.progress,
            )
