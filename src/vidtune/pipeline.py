"""The run folder as a cache over the stages: resume what is done, run what is not, time each stage.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.pipeline`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from vidtune import artifacts as A
from vidtune import distributed as D
from vidtune import encoding, fingerprint, validate
from vidtune import inputs as inputs_mod
from vidtune.config import DEFAULT_OUTPUT, OutputConfig, RunConfig, RuntimeConfig, stage_config
from vidtune.device import resolve_device, resolve_dtype
from vidtune.errors import VidtuneError
from vidtune.lock import RunLock
from vidtune.models import Components
from vidtune.results import Result, SaveTo
from vidtune.rundir import RunDir
from vidtune.stages.common import Conditioning, StageCallback, StageContext, conditioning
from vidtune.stages.registry import STAGES


@dataclass
class RunSummary:
    """What a run did: per stage 'ran' / 'skipped' and seconds, plus where the outputs are."""

    root: Path
    stages: dict[int, tuple[str, float]] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"stage {k} {status} {secs:.1f}s" for k, (status, secs) in sorted(self.stages.items())]
        where = ", ".join(str(p) for p in self.outputs) or str(self.root)
        return f"vidtune: {'; '.join(parts)} -> {where}"


def prepare_runtime(components: Components, runtime: RuntimeConfig) -> Components:
    """Apply the `[runtime]` options to loaded components in place (results equal up to rounding):
    channels_last memory format for the UNet and the VAE, `torch.compile` of the UNet's forward
    (`nn.Module.compile`: the module stays the same object, so attention processors, LoRA adapters
    and stage 3's training reach it as before), and the VAE's tiled decoding."""
    if runtime.channels_last:
        components.unet.to(memory_format=torch.channels_last)
        components.vae.to(memory_format=torch.channels_last)
    if runtime.compile:
        components.unet.compile()
    if runtime.vae_tiling:
        components.vae.enable_tiling()
    return components


def load_components(cfg: RunConfig) -> Components:
    """Load the configured model (and adapter / SAM) on the configured device and dtype, with the
    `[runtime]` options applied."""
    from vidtune.models import load_components as load

    device = resolve_device(cfg.model.device)
    world = D.current()
    if world.enabled and device.type == "cuda":  # under torchrun each rank computes on its own GPU
        device = torch.device("cuda", world.local_rank)
    components = load(
        cfg.model.path,
        adapter=cfg.model.adapter or None,
        sam=cfg.model.sam or None,
        device=device,
        dtype=resolve_dtype(cfg.model.dtype, device),
        allow_pickle=cfg.model.allow_pickle,
    )
    return prepare_runtime(components, cfg.runtime)


def windows_for(cfg: RunConfig) -> Callable[[int], list[tuple[int, int]]]:
    """Stage 4's clip windows as a function of the frame count (prompt schedules need them)."""
    from vidtune.method.windows import clip_windows

    c = cfg.codenoise
    return lambda n: clip_windows(n, c.clip_length, c.stride, shrink_clip=c.shrink_clip)


def build_inputs(cfg: RunConfig, extracted: Path) -> inputs_mod.VideoInputs:
    """The run's inputs in memory (`inputs.build`, per-clip prompts on stage 4's windows); footage has its
    poses extracted into (or reused from) the cache folder `extracted` (the run folder's inputs/extracted)."""
    return inputs_mod.build(cfg.inputs, extracted, windows_for(cfg))


def plan_stages(rd: RunDir, cfg: RunConfig, stages: Sequence[int]) -> list[int]:
    """The requested stages that must run: those not done, and every requested stage after one that
    runs (a stage that reruns invalidates what follows it, so those are decided after it)."""
    todo: list[int] = []
    for k in sorted(set(stages)):
        if todo or not rd.is_done(k, cfg):
            todo.append(k)
    return todo


def requirements(cfg: RunConfig, k: int) -> tuple[int, ...]:
    """The stages stage k needs done with `cfg` (`Stage.requires` of its config view)."""
    return STAGES[k].requires(stage_config(cfg, k))


def check_prerequisites(rd: RunDir, cfg: RunConfig, todo: Sequence[int]) -> None:
    """Every stage to run has its prerequisites done, or running before it; else one line naming the fix
    (the stages to run: the missing ones, what they need in turn, and this one)."""
    ready = lambda p: p in todo or rd.is_done(p, cfg)  # noqa: E731
    for k in todo:
        missing = [p for p in requirements(cfg, k) if not ready(p)]
        if missing:
            chain, queue = {k}, list(missing)
            while queue:
                p = queue.pop()
                chain.add(p)
                queue += [q for q in requirements(cfg, p) if q not in chain and not ready(q)]
            raise VidtuneError(
                f"{rd.root}: stage {k} needs stage {missing[0]} done with this config and these "
                f"inputs; run with --stages {','.join(str(i) for i in sorted(chain))}"
            )


def clean_temporaries(rd: RunDir, log: Callable[[str], None]) -> None:
    """Remove the temporaries of killed runs (under the run lock) and say what went."""
    removed = rd.clean_temporaries()
    if removed.paths:
        names = ", ".join(str(p.relative_to(rd.root)) for p in removed.paths[:3])
        more = f" and {len(removed.paths) - 3} more" if len(removed.paths) > 3 else ""
        log(
            f"vidtune: removed {len(removed.paths)} temporaries of an interrupted run "
            f"({removed.nbytes / 2**20:.1f} MiB): {names}{more}"
        )
    for path in removed.restored:
        log(f"vidtune: restored {path.relative_to(rd.root)} (an interrupted run was replacing it)")


def run_conditioning(cfg: RunConfig, components: Components, inputs: inputs_mod.VideoInputs) -> Conditioning:
    """Every frame's prompt embedding and adapter features, computed once per run and shared by the
    stages. On an accelerator the features wait in host memory and each batch copies its frames over
    (at 1024 SD frames they are ~4.5 GiB in fp16, more than the latents and one batch's activations)."""
    storage = torch.device("cpu") if torch.device(components.device).type != "cpu" else None
    return conditioning(
        components,
        inputs.pose_images,
        inputs.prompts,
        cfg.inputs.negative_prompt,
        cfg.sampling.adapter_scale,
        storage=storage,
    )


class StageCache:
    """The stages' results of one run: computed ones kept in memory and, with a run folder, finished
    ones loaded from their folders when a later stage needs them (without their decoded frames).
    Without a run folder (`rd=None`, the Python API in memory) every result comes from memory."""

    def __init__(
        self,
        rd: RunDir | None,
        cfg: RunConfig,
        components: Components,
        inputs: inputs_mod.VideoInputs,
    ) -> None:
        self.rd, self.cfg, self.components, self.inputs = rd, cfg, components, inputs
        self.results: dict[int, Result] = {}
        self._cond: Conditioning | None = None

    @property
    def cond(self) -> Conditioning:
        if self._cond is None:
            self._cond = run_conditioning(self.cfg, self.components, self.inputs)
        return self._cond

    def get(self, k: int) -> Result:
        """Stage k's result (from memory, or loaded from its folder)."""
        if k not in self.results:
            if self.rd is None:
                raise VidtuneError(
                    f"a later stage needs stage {k}'s result: run pipe.{STAGES[k].method}(...) first or pass its result"
                )
            self.results[k] = STAGES[k].result.load(self.rd.stage(k), frames=False)
        return self.results[k]

    def done(self, k: int) -> bool:
        """Whether stage k has a result for this config (in memory, or done in the run folder)."""
        return k in self.results if self.rd is None else self.rd.is_done(k, self.cfg)

    def recompute(self, k: int, progress: bool, callback: StageCallback | None, log: Callable[[str], None]) -> Result:
        """Compute stage k again and keep it, with its seconds; the results of k and every later stage are
        dropped first (stale once k reruns). The one execution path of the run folder and the Python API."""
        for later in [j for j in STAGES if j >= k]:
            self.results.pop(later, None)
        start = time.perf_counter()
        result = compute_stage(k, self, progress, callback, log)
        self.results[k] = result = replace(result, seconds=time.perf_counter() - start)
        return result

    def context(self, k: int, progress: bool, callback: StageCallback | None, log: Callable[[str], None]):
        """What stage k runs with (`StageContext`)."""
        return StageContext(
            cfg=stage_config(self.cfg, k),
            components=self.components,
            inputs=self.inputs,
            conditioning=lambda: self.cond,
            folder=None if self.rd is None else self.rd.stage(k),
            callback=callback,
            progress=progress,
            log=log,
        )


def compute_stage(
    k: int,
    cache: StageCache,
    progress: bool = True,
    callback: StageCallback | None = None,
    log: Callable[[str], None] = print,
) -> Result:
    """Run stage k on what the stages it needs (and uses, when done) produced, in memory or in the run folder."""
    progress, log = progress and D.current().is_main, D.main_only(log)
    stage = STAGES[k]
    previous = {p: cache.get(p) for p in requirements(cache.cfg, k)}
    previous.update({p: cache.get(p) for p in stage.uses if cache.done(p)})
    return stage.run(cache.context(k, progress, callback, log), previous)


def stage_video(rd: RunDir, k: int) -> Path | None:
    """Stage k's video in the run folder (None: it has none)."""
    video = STAGES[k].video
    return None if video is None else rd.root / video


def save_stage(
    k: int, result: Result, rd: RunDir, fps: float, components: Components, output: OutputConfig = DEFAULT_OUTPUT
) -> dict:
    """Write stage k's result into its folder (its videos as `output` says); returns what its done.json records."""
    result.save(rd.stage(k), SaveTo(video=stage_video(rd, k), fps=fps, output=output, unet=components.unet))
    return result.info


def outputs(rd: RunDir, cfg: RunConfig) -> list[Path]:
    """The video of the latest stage done with this config that has one (final.mp4, else stage2.mp4, ...)."""
    for k in sorted(STAGES, reverse=True):
        video = stage_video(rd, k)
        if video is not None and video.exists() and rd.is_done(k, cfg):
            return [video]
    return []


def refresh_videos(rd: RunDir, cfg: RunConfig, fps: float) -> list[Path]:
    """Re-encode the videos of finished stages whose record does not match `cfg.output` (a resumed run
    with another `[output]`); the PNG frames are the truth, so no stage reruns. Returns what it wrote."""
    written = []
    for k in STAGES:
        video = stage_video(rd, k)
        if video is not None and rd.is_done(k, cfg) and encoding.refresh_videos(rd.frames(k), video, cfg.output, fps):
            written.append(video)
    return written


def run_stage(
    k: int,
    cfg: RunConfig,
    components: Components,
    inputs: inputs_mod.VideoInputs,
    rd: RunDir,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run stage k alone over a run folder (its inputs from earlier stages' folders) and mark it done;
    returns what done.json records."""
    summary = RunSummary(root=rd.root)
    cache = StageCache(rd, cfg, components, inputs)
    _run_stage(k, cache, progress, None, log, summary)
    return rd.done_info(k) or {}


def run(
    cfg: RunConfig,
    out_dir: str | Path,
    stages: Sequence[int] = tuple(STAGES),
    progress: bool = True,
    components: Components | Callable[[], Components] | None = None,
    log: Callable[[str], None] = print,
    callback: StageCallback | None = None,
    inputs: inputs_mod.VideoInputs | None = None,
    results: dict[int, Result] | None = None,
) -> RunSummary:
    """Run `stages` in order over the run folder, skipping those already done with this config and inputs.

    1. check the config, build the inputs in memory, check the config against them (no writes yet);
    2. lock the run folder (one run per folder) and decide what runs;
    3. load the model; only then touch the folder: temporaries of killed runs, config.toml, inputs/;
    4. run each stage (invalidating what follows it), save its result, mark it done last.

    `results`, when given, receives every stage's typed result (those that ran, and those skipped,
    loaded from the folder).
    """
    validate.check_config(cfg)
    encoding.check_encoders(cfg.output)
    progress, log = progress and D.current().is_main, D.main_only(log)
    if inputs is None:
        with D.main_first():  # rank 0 fills the pose-extraction cache, the others read it
            inputs = build_inputs(cfg, Path(out_dir) / A.INPUTS / A.EXTRACTED)
    validate.check_frames(cfg, inputs.num_frames, stages)
    rd = RunDir(out_dir, inputs_key=fingerprint.inputs_key(inputs, cfg.model))
    with RunLock(rd.root) if D.current().is_main else contextlib.nullcontext() as lock:
        if lock is not None and lock.took_over:
            log(f"vidtune: took over the lock of process {lock.took_over.get('pid', '?')}, which is gone")
        return _run_locked(cfg, rd, inputs, stages, progress, components, log, callback, results)


def _run_locked(
    cfg: RunConfig,
    rd: RunDir,
    inputs: inputs_mod.VideoInputs,
    stages: Sequence[int],
    progress: bool,
    components: Components | Callable[[], Components] | None,
    log: Callable[[str], None],
    callback: StageCallback | None,
    results: dict[int, Result] | None,
) -> RunSummary:
    """Steps 2-4 of `run`, under the lock."""
    summary = RunSummary(root=rd.root)
    main = D.current().is_main
    todo = D.broadcast_object(plan_stages(rd, cfg, stages) if main else None)  # rank 0 decides for all
    for k in sorted(set(stages)):
        if k not in todo:
            summary.stages[k] = ("skipped (done)", 0.0)
    if not todo:
        if main:
            clean_temporaries(rd, log)
            _refresh_videos(rd, cfg, inputs.fps, log)
        summary.outputs = outputs(rd, cfg)
        if results is not None:
            results.update(_load_done(rd, stages))
        return summary
    check_prerequisites(rd, cfg, todo)
    log(f"vidtune: read {inputs.summary}")
    if components is None:
        components = load_components(cfg)
        log(f"vidtune: loaded {cfg.model.path} on {components.device} ({components.dtype})")
    elif callable(components):  # a loader: the model loads only now that a stage must run
        components = components()
    if main:
        clean_temporaries(rd, log)
        rd.save_config(cfg)
        if 1 in todo or not (rd.inputs / A.INPUT_KEYPOINTS).exists():
            inputs_mod.save(inputs, rd.inputs)
    cache = StageCache(rd, cfg, components, inputs)
    for k in todo:
        _run_stage(k, cache, progress, callback, log, summary)
    if main:
        _refresh_videos(rd, cfg, inputs.fps, log)
    summary.outputs = outputs(rd, cfg)
    if results is not None:
        results.update(_load_done(rd, [k for k in stages if k not in todo]))
        results.update({k: cache.results[k] for k in todo})
    return summary


def _refresh_videos(rd: RunDir, cfg: RunConfig, fps: float, log: Callable[[str], None]) -> None:
    for video in refresh_videos(rd, cfg, fps):
        log(f"vidtune: re-encoded {video} from its frames (as [output] says)")


def _load_done(rd: RunDir, stages: Sequence[int]) -> dict[int, Result]:
    """The typed results of finished stages, from their folders."""
    return {k: STAGES[k].result.load(rd.stage(k)) for k in sorted(set(stages))}


def _run_stage(
    k: int,
    cache: StageCache,
    progress: bool,
    callback: StageCallback | None,
    log: Callable[[str], None],
    summary: RunSummary,
) -> None:
    """Invalidate stage k and what follows, run it, save it, mark it done, then let it tidy (`Stage.finish`).
    Under torchrun rank 0 alone writes; the others wait for it at a barrier before the next stage."""
    rd, cfg = cache.rd, cache.cfg
    main = D.current().is_main
    if main and rd.final_video in rd.begin(k):
        log(f"vidtune: removed {rd.final_video} (it no longer matches: stage {k} reruns)")
    start = time.perf_counter()
    result = cache.recompute(k, progress, callback, log)
    if not main:
        D.barrier()  # until rank 0 has saved the stage and marked it done
        summary.stages[k] = ("ran", time.perf_counter() - start)
        return
    info = save_stage(k, result, rd, cache.inputs.fps, cache.components, cfg.output)
    seconds = time.perf_counter() - start
    rd.mark_done(k, cfg, seconds, **(info or {}))
    D.barrier()
    summary.stages[k] = ("ran", seconds)
    log(f"vidtune: stage {k} ({STAGES[k].title}) done in {seconds:.1f}s: {info}")
    STAGES[k].finish(rd.stage(k), stage_config(cfg, k), log)
