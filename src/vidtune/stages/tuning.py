"""Stage 3 — combined tuning: fine-tune the UNet on the fused frames (docs/method.md; the paper's eq. 6, 15, 16, 20).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.stages.tuning`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vidtune import artifacts as A
from vidtune import distributed as D
from vidtune.config import TuningStageConfig, stage_hash
from vidtune.inputs import VideoInputs
from vidtune.models import Components
from vidtune.results import FusionResult, TuningResult
from vidtune.stages.common import Conditioning, Stage, StageCallback, StageContext, build_scheduler
from vidtune.stages.train_loop import (
    KEEP_CHECKPOINTS,
    WEIGHT_DECAY,
    TrainLoop,
    drop_checkpoints,
    resolve_precision,
    training_mode,
    warmup_lr,
)
from vidtune.stages.tuning_data import (
    TRAINABLE,
    Batch,
    TuningData,
    _attention,
    _full,
    _lora,
    check_config,
    load_data,
    select_trainable,
    typical_selection,
)
from vidtune.tuned_weights import tuned_state

# --------------------------------------------------------------------------------------------
# Results: save, plot, load back
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# The stage
# --------------------------------------------------------------------------------------------


def run_key(cfg: TuningStageConfig, data: TuningData) -> str:
    """Identity of a tuning run: the config up to stage 3 (steps and checkpoint_every aside, so a
    longer run continues a shorter one) and the data."""
    neutral = replace(cfg, tuning=replace(cfg.tuning, steps=0, checkpoint_every=0))
    return f"{stage_hash(neutral, 3)}-{data.fingerprint()}"


def resume(loop: TrainLoop, out_dir: Path | None) -> int:
    """`loop.resume()`; under torchrun rank 0 chooses the checkpoint and every other rank loads the same one."""
    if not loop.world.enabled:
        return loop.resume()
    step = D.broadcast_object(loop.resume() if loop.world.is_main else 0)
    if step and not loop.world.is_main and out_dir is not None:
        loop.load_checkpoint(out_dir / A.CHECKPOINTS / f"step_{step:06d}")
    return step


def run(
    cfg: TuningStageConfig,
    components: Components,
    inputs: VideoInputs,
    cond: Conditioning,
    s2: FusionResult,
    out_dir: Path | None = None,
    callback: StageCallback | None = None,
    progress: bool = True,
) -> TuningResult:
    """Stage 3: check -> data -> choose the trainable set -> train (resuming from `out_dir`'s
    checkpoints when given) -> the tuned state. Afterwards ``components.unet`` is the tuned model."""
    t = cfg.tuning
    check_config(t)
    data = load_data(s2, cond, inputs.num_frames, components.device)
    chosen = typical_selection(s2, inputs, (cfg.inputs.height, cfg.inputs.width), t.typical_fraction)
    data = data if chosen is None else replace(data, train_frames=chosen)
    noise_scheduler = build_scheduler(components.scheduler, replace(cfg.sampling, scheduler="ddpm"))
    unet = components.unet
    with training_mode(unet, t, components.device):
        params = select_trainable(unet, t)
        writer = out_dir if D.current().is_main else None  # rank 0 alone writes checkpoints and loss.csv
        loop = TrainLoop(
            unet, data, noise_scheduler, t, params, out_dir=writer, key=run_key(cfg, data), callback=callback
        )
        resumed_from = resume(loop, out_dir)
        loop.run_loop(progress=progress)
    seconds = sum(loop.seconds) / len(loop.seconds) if loop.seconds else 0.0
    info = {
        "trainable": t.trainable,
        "lora_rank": t.lora_rank if t.trainable == "lora" else None,
        "steps": loop.step,
        "final_loss": round(loop.losses[-1], 6),
        "seconds_per_step": round(seconds, 4),
        "resumed_from": resumed_from,
        "train_frames": data.pool().tolist(),
        "trainable_parameters": sum(p.numel() for p in params.values()),
        "config": asdict(t),
    }
    return TuningResult(
        kind=t.trainable,
        state=tuned_state(unet, t.trainable),
        losses=list(loop.losses),
        record=info,
        lora_rank=t.lora_rank if t.trainable == "lora" else 0,
    )


class TuningStage(Stage):
    """Stage 3 in the registry (`vidtune.stages.registry`): the base UNet tuned in place on stage 2's
    frames within `Components.tuning_unet`; its result holds copies of the tuned weights, and the UNet is
    the base model again afterwards."""

    number, name, title, method = 3, "tuning", "combined tuning", "tune"
    view = TuningStageConfig  # the config it reads (`config.stage_view`): its resume hash
    result = TuningResult
    video: str | None = None
    uses: tuple[int, ...] = ()

    def requires(self, cfg: TuningStageConfig) -> tuple[int, ...]:
        return (2,)

    def run(self, ctx: StageContext, previous: Mapping[int, Any]) -> TuningResult:
        with ctx.components.tuning_unet(ctx.cfg.tuning.trainable):
            result = run(
                ctx.cfg,
                ctx.components,
                ctx.inputs,
                ctx.conditioning(),
                previous[2],
                out_dir=ctx.folder,
                callback=ctx.callback,
                progress=ctx.progress,
            )
        if ctx.folder is not None:
            result = replace(result, source=str(ctx.folder.resolve()))
        return result

    def finish(self, folder: Path, cfg: TuningStageConfig, log: Callable[[str], None]) -> None:
        """Drop the checkpoints (SD full tuning: ~10 GB each) unless `tuning.keep_checkpoints`."""
        freed = 0 if cfg.tuning.keep_checkpoints else drop_checkpoints(folder)
        if freed:
            log(
                f"vidtune: removed stage 3's checkpoints ({freed / 2**20:.1f} MiB; "
                "tuning.keep_checkpoints = true keeps them)"
            )


__all__ = [
    "Batch",
    "KEEP_CHECKPOINTS",
    "TRAINABLE",
    "TrainLoop",
    "TuningData",
    "TuningStage",
    "WEIGHT_DECAY",
    "_attention",
    "_full",
    "_lora",
    "check_config",
    "drop_checkpoints",
    "load_data",
    "resolve_precision",
    "resume",
    "run",
    "run_key",
    "select_trainable",
    "training_mode",
    "warmup_lr",
]
