"""Run the stages over a run folder: resume what is done, run what is not, time each stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vidtune import inputs as inputs_mod
from vidtune.config import RunConfig
from vidtune.errors import VidtuneError
from vidtune.rundir import RunDir

STAGE_TITLES = {1: "separate generation", 2: "average fusion", 3: "combined tuning", 4: "co-denoising"}
# Stage k cannot run unless these stages are done (stage 4 uses stage 3's UNet when it exists).
PREREQUISITES = {1: (), 2: (1,), 3: (2,), 4: ()}


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


def resolve_device(name: str) -> torch.device:
    """`auto` = CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise VidtuneError("model.device = 'cuda' but no CUDA device is visible; use model.device = 'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto` = fp16 on CUDA, fp32 elsewhere (the CPU runs fp32)."""
    table = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return table[name]


def load_components(cfg: RunConfig):
    """Load the configured model (and adapter / SAM) on the configured device and dtype."""
    from vidtune.models import load_components as load

    device = resolve_device(cfg.model.device)
    return load(cfg.model.path, adapter=cfg.model.adapter or None, sam=cfg.model.sam or None, device=device,
                dtype=resolve_dtype(cfg.model.dtype, device), allow_pickle=cfg.model.allow_pickle)


def windows_for(cfg: RunConfig) -> Callable[[int], list[tuple[int, int]]]:
    """Stage 4's clip windows as a function of the frame count (prompt schedules need them)."""
    from vidtune.windows import clip_windows

    c = cfg.codenoise
    return lambda n: clip_windows(n, c.clip_length, c.stride, shrink_clip=c.shrink_clip)


def prepare_inputs(cfg: RunConfig, rd: RunDir, fresh: bool) -> inputs_mod.VideoInputs:
    """Build inputs/ (when stage 1 is to run) or read it back."""
    if fresh or not (rd.inputs / "keypoints.npz").exists():
        return inputs_mod.prepare(cfg.inputs, rd.inputs, windows_fn=windows_for(cfg) if cfg.inputs.clip_prompts else None)
    return inputs_mod.load(rd.inputs)


def _runner(k: int):
    if k == 1:
        from vidtune.stages import separate as mod
    elif k == 2:
        from vidtune.stages import fusion as mod
    elif k == 3:
        from vidtune.stages import tuning as mod
    else:
        from vidtune.stages import codenoise as mod
    return mod.run


def run(cfg: RunConfig, out_dir: str | Path, stages: Sequence[int] = (1, 2, 3, 4), progress: bool = True,
        components=None, log: Callable[[str], None] = print) -> RunSummary:
    """Run `stages` in order over the run folder, skipping those already done with this config."""
    rd = RunDir(out_dir)
    summary = RunSummary(root=rd.root)
    todo = [k for k in sorted(set(stages)) if not rd.is_done(k, cfg)]
    for k in sorted(set(stages)):
        if k not in todo:
            summary.stages[k] = ("skipped (done)", 0.0)
    if not todo:
        summary.outputs = _outputs(rd)
        return summary
    rd.save_config(cfg)
    inputs = prepare_inputs(cfg, rd, fresh=1 in todo)
    log(f"vidtune: poses {inputs.summary}")
    if 4 in todo and inputs.num_frames < cfg.codenoise.clip_length and cfg.codenoise.shrink_clip:
        log(f"vidtune: {inputs.num_frames} frames < codenoise.clip_length {cfg.codenoise.clip_length}: "
            f"codenoise.shrink_clip uses one clip of {inputs.num_frames} frames")
    for k in todo:
        missing = [p for p in PREREQUISITES[k] if not rd.is_done(p, cfg)]
        if missing:
            raise VidtuneError(f"{rd.root}: stage {k} needs stage {missing[0]} done with this config; "
                               f"run with --stages {','.join(str(i) for i in range(missing[0], k + 1))}")
        if components is None:
            components = load_components(cfg)
            log(f"vidtune: loaded {cfg.model.path} on {components.device} ({components.dtype})")
        rd.begin(k)
        start = time.perf_counter()
        info = _runner(k)(cfg, components, inputs, rd, progress=progress)
        if k == 3:  # the in-memory UNet is now this run's tuned UNet (stage 4 must not tune it twice)
            components.sources["tuned"] = str(rd.stage(3).resolve())
        seconds = time.perf_counter() - start
        rd.mark_done(k, cfg, seconds, **(info or {}))
        summary.stages[k] = ("ran", seconds)
        log(f"vidtune: stage {k} ({STAGE_TITLES[k]}) done in {seconds:.1f}s: {info}")
    summary.outputs = _outputs(rd)
    return summary


def _outputs(rd: RunDir) -> list[Path]:
    candidates = [rd.final_video] + [rd.stage(k) / f"stage{k}.mp4" for k in (2, 1)]
    return [p for p in candidates if p.exists()][:1]
