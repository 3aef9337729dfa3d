"""Stage 3 — combined tuning: fine-tune the UNet on the fused frames (docs/method.md; the paper's eq. 6, 15, 16, 20).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.stages.tuning`.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from vidtune import artifacts as A
from vidtune import atomic
from vidtune import distributed as D
from vidtune.config import TuningConfig, TuningStageConfig, stage_hash
from vidtune.errors import VidtuneError
from vidtune.inputs import VideoInputs
from vidtune.method.losses import combined_loss
from vidtune.models import Components
from vidtune.results import FusionResult, TuningResult
from vidtune.sampling import FeatureBank, PromptBank
from vidtune.stages.common import Conditioning, Stage, StageCallback, StageContext, build_scheduler
from vidtune.tuned_weights import ATTENTION_Q, LORA_ADAPTER, lora_config, tuned_state

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel
WEIGHT_DECAY = 1e-2
KEEP_CHECKPOINTS = 2
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TuningData:
    """What stage 3 trains on, all frames on the training device.

    x0: (N, C, h, w) fused clean latents x^_0 (scaled by the VAE factor); fg: (N, 1, h, w) M_f in
    [0, 1]; prompts: e_i per frame; features: F(c_i) per frame (empty without an adapter).
    """

    x0: torch.Tensor
    fg: torch.Tensor
    prompts: PromptBank
    features: FeatureBank

    @property
    def num_frames(self) -> int:
        return int(self.x0.shape[0])

    def fingerprint(self) -> str:
        """A hash of the latents and masks (a checkpoint only resumes on the same data)."""
        h = hashlib.sha256()
        for t in (self.x0, self.fg):
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class Batch:
    """One micro-batch: frame indices (B,), timesteps t (B,) in [0, T) and the noise eps (B, C, h, w)."""

    frames: torch.Tensor
    t: torch.Tensor
    eps: torch.Tensor
    uncond: torch.Tensor | None = None  # (B,) bool: train on the negative prompt's embedding instead

    def rows(self, rows: range) -> Batch:
        """The samples `rows` of this batch (a rank's share of it)."""
        sl = slice(rows.start, rows.stop)
        return Batch(self.frames[sl], self.t[sl], self.eps[sl], None if self.uncond is None else self.uncond[sl])


def check_config(cfg: TuningConfig) -> None:
    """Raise a one-line VidtuneError for a tuning config that cannot train."""
    if cfg.steps < 1:
        raise VidtuneError(f"tuning.steps must be >= 1, got {cfg.steps}; set e.g. tuning.steps = 300")
    if not cfg.lr > 0:
        raise VidtuneError(f"tuning.lr must be > 0, got {cfg.lr}; SD's default is tuning.lr = 5e-6")
    if cfg.trainable == "lora" and cfg.lora_rank < 1:
        raise VidtuneError(f"tuning.lora_rank must be >= 1 for trainable = 'lora', got {cfg.lora_rank}; try 4")
    for name in ("batch_size", "grad_accum"):
        if getattr(cfg, name) < 1:
            raise VidtuneError(f"tuning.{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.warmup_steps < 0 or cfg.checkpoint_every < 0:
        raise VidtuneError(
            f"tuning.warmup_steps and tuning.checkpoint_every must be >= 0, "
            f"got {cfg.warmup_steps} and {cfg.checkpoint_every}"
        )


def load_data(s2: FusionResult, cond: Conditioning, num_frames: int, device: torch.device) -> TuningData:
    """Stage 2's fused latents and masks with the frames' conditioning, checked against each other."""
    x0, fg = s2.x0, s2.fg
    n = x0.shape[0]
    if fg.shape[0] != n:
        raise VidtuneError(f"stage 2: {fg.shape[0]} masks but {n} fused frames; rerun with --stages 1,2,3")
    if num_frames != n:
        raise VidtuneError(
            f"stage 2 has {n} fused frames but the inputs have {num_frames} frames; rerun with --stages 1,2,3"
        )
    if x0.ndim != 4 or fg.ndim != 4 or fg.shape[1] != 1 or fg.shape[2:] != x0.shape[2:]:
        raise VidtuneError(
            f"stage 2: masks {tuple(fg.shape)} do not match the fused latents {tuple(x0.shape)} "
            f"(want (N, 1, h, w)); rerun with --stages 1,2,3"
        )
    return TuningData(
        x0=x0.to(device, torch.float32),
        fg=fg.to(device, torch.float32).clamp(0, 1),
        prompts=cond.prompts,
        features=cond.features,
    )


# --------------------------------------------------------------------------------------------
# Trainable parameter sets
# --------------------------------------------------------------------------------------------


def _full(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """Every UNet parameter (the paper's choice)."""
    return dict(unet.named_parameters())


def _attention(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """The query projections of self- and cross-attention, attn1/attn2 to_q (Tune-A-Video)."""
    params = {n: p for n, p in unet.named_parameters() if ATTENTION_Q.search(n)}
    if not params:
        raise VidtuneError(
            "tuning.trainable = 'attention': this UNet has no attn1/attn2 to_q weights; use 'full' or 'lora'"
        )
    return params


def _lora(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """A fresh LoRA adapter "vidtune" (B = 0, so the UNet starts unchanged; A seeded by tuning.seed)."""
    if LORA_ADAPTER in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(LORA_ADAPTER)
    unet.add_adapter(lora_config(cfg.lora_rank), adapter_name=LORA_ADAPTER)  # also makes it the active one
    params = {n: p for n, p in unet.named_parameters() if f".{LORA_ADAPTER}." in n and "lora_" in n}
    # peft draws A from the global RNG; redraw it from our own generator (same kaiming-uniform bound).
    gen = torch.Generator("cpu").manual_seed(cfg.seed)
    with torch.no_grad():
        for name, p in params.items():
            if "lora_A" in name:
                bound = 1.0 / p.shape[1] ** 0.5
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
    return params


TRAINABLE: dict[str, Callable[[Any, TuningConfig], dict[str, torch.nn.Parameter]]] = {
    "full": _full,
    "lora": _lora,
    "attention": _attention,
}
"""Trainable sets by `tuning.trainable`: each prepares the UNet and returns its parameters by name."""


def select_trainable(unet: UNet2DConditionModel, cfg: TuningConfig) -> dict[str, torch.nn.Parameter]:
    """Freeze the UNet, then unfreeze (and for LoRA create) the configured set; returns it by name."""
    if cfg.trainable not in TRAINABLE:
        raise VidtuneError(f"tuning.trainable = {cfg.trainable!r}: choose one of {', '.join(TRAINABLE)}")
    unet.requires_grad_(False)
    params = TRAINABLE[cfg.trainable](unet, cfg)
    for p in params.values():
        p.requires_grad_(True)
    return params


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


def warmup_lr(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warm-up: the learning rate of optimizer step `step` (0-based), lr * min(1, (step + 1) / W)."""
    return lr if warmup_steps <= 0 else lr * min(1.0, (step + 1) / warmup_steps)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: "auto" = bf16 where CUDA supports it, else fp16; none on the CPU."""
    if device.type != "cuda":
        if name in ("fp16", "bf16"):
            raise VidtuneError(
                f"tuning.mixed_precision = {name!r} needs a CUDA device (this run is on "
                f"{device.type}); use 'auto' or 'no'"
            )
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


class TrainLoop:
    """AdamW on the trainable parameters with warm-up, clipping, accumulation and checkpoints.

    All randomness (which frames, t, eps) comes from one CPU generator seeded by `tuning.seed` and
    saved in every checkpoint, so a resumed run draws exactly the batches an uninterrupted one does.
    The learning rate is a function of the step (`warmup_lr`), so it needs no state of its own.
    ``out_dir`` (stage3/) receives checkpoints/ and loss.csv; None keeps everything in memory.
    ``key`` identifies the run (config and data); a checkpoint with another key is never resumed.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        data: TuningData,
        noise_scheduler: Any,
        cfg: TuningConfig,
        params: dict[str, torch.nn.Parameter],
        out_dir: Path | None = None,
        key: str = "",
        callback: StageCallback | None = None,
    ) -> None:
        self.unet, self.data, self.noise_scheduler, self.cfg = unet, data, noise_scheduler, cfg
        self.params, self.out_dir, self.key, self.callback = params, out_dir, key, callback
        self.device = data.x0.device
        self.precision = resolve_precision(cfg.mixed_precision, self.device)
        self.optimizer = torch.optim.AdamW(list(params.values()), lr=cfg.lr, weight_decay=WEIGHT_DECAY)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == torch.float16)
        self.num_train_timesteps = int(noise_scheduler.config.num_train_timesteps)
        self.max_timestep = max(1, int(round(cfg.max_timestep * self.num_train_timesteps)))
        self.world = D.current()
        self.model = unet  # what the forward pass calls: the UNet, or its DDP wrapper under torchrun
        if self.world.enabled:
            ids = [self.device.index or torch.cuda.current_device()] if self.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(unet, device_ids=ids)
        self.reset()

    def reset(self) -> None:
        """Back to step 0: a fresh generator, no loss history, an empty optimizer state."""
        self.step = 0
        self.losses: list[float] = []
        self.seconds: list[float] = []
        self.last_timestep = 0
        self.generator = torch.Generator("cpu").manual_seed(self.cfg.seed)
        self.optimizer.state.clear()

    # --- steps -----------------------------------------------------------------------------
    def run_loop(self, progress: bool = False) -> list[float]:
        """Train until `tuning.steps`, checkpointing every `checkpoint_every` steps and at the end."""
        every = self.cfg.checkpoint_every
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            desc="stage 3: tuning",
            disable=not progress,
            leave=False,
            unit="step",
        )
        while self.step < self.cfg.steps:
            start = time.perf_counter()
            loss = self.run_step()
            self.seconds.append(time.perf_counter() - start)
            self._log(loss)
            if self.out_dir is not None and ((every and self.step % every == 0) or self.step == self.cfg.steps):
                self.save_checkpoint()
            if self.callback is not None:  # (stage 3, step, the batch's mean timestep, the step's loss as a 0-d tensor)
                self.callback(3, self.step, self.last_timestep, torch.tensor(loss))
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
        bar.close()
        return self.losses

    def run_step(self) -> float:
        """One optimizer step over `grad_accum` micro-batches; returns their mean loss."""
        lr = warmup_lr(self.step, self.cfg.lr, self.cfg.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i in range(self.cfg.grad_accum):  # DDP averages the gradients at the last micro-batch only
            last = i == self.cfg.grad_accum - 1
            sync = contextlib.nullcontext() if last or self.model is self.unet else self.model.no_sync()
            with sync:
                losses.append(self.forward_backward(self.next_batch()))
        self.scaler.unscale_(self.optimizer)
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(self.params.values()), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        loss = sum(losses) / len(losses)
        if not math.isfinite(loss):
            raise VidtuneError(
                f"stage 3: the loss is {loss} at step {self.step} of {self.cfg.steps}; the stage is "
                f"not marked done: lower tuning.lr (now {self.cfg.lr:g}) or set tuning.mixed_precision = 'no'"
            )
        self.losses.append(loss)
        return loss

    def next_batch(self) -> Batch:
        """Draw min(batch_size, N) distinct frames, their timesteps and noise from the generator."""
        n, g = self.data.num_frames, self.generator
        frames = torch.randperm(n, generator=g)[: min(self.cfg.batch_size, n)]
        t = torch.randint(0, self.max_timestep, (len(frames),), generator=g)
        self.last_timestep = int(t.float().mean().round())
        eps = torch.randn((len(frames), *self.data.x0.shape[1:]), generator=g)
        uncond = torch.rand(len(frames), generator=g) < self.cfg.uncond_prob if self.cfg.uncond_prob > 0 else None
        return Batch(frames=frames, t=t, eps=eps, uncond=uncond)

    def loss(self, batch: Batch) -> torch.Tensor:
        """Eq. 20 per sample (B,) at the batch's t and eps: z_t = add_noise(x0, eps, t), eps_theta(z_t)."""
        d, dev = self.data, self.device
        frames, t, eps = batch.frames.to(dev), batch.t.to(dev), batch.eps.to(dev, torch.float32)
        x0, fg = d.x0[frames], d.fg[frames]
        z_t = self.noise_scheduler.add_noise(x0, eps, t)
        e = d.prompts.take(batch.frames).to(dev, torch.float32)  # e_i
        if batch.uncond is not None:  # the unconditional branch of CFG learns the video too
            e = torch.where(batch.uncond.to(dev).view(-1, 1, 1), d.prompts.uncond.to(dev, torch.float32), e)
        feats = d.features.take(batch.frames, dev, torch.float32) if d.features.num_frames else []  # F(c_i)
        extra = {"down_intrablock_additional_residuals": feats} if feats else {}
        with torch.autocast(dev.type, dtype=self.precision or torch.float32, enabled=self.precision is not None):
            eps_theta = self.model(z_t, t, encoder_hidden_states=e, return_dict=False, **extra)[0]
        c = self.cfg
        return combined_loss(eps_theta.float(), eps, fg, 1.0 - fg, c.l_n, c.l_f, c.l_b)

    def forward_backward(self, batch: Batch) -> float:
        """Backpropagate the batch-mean loss (divided by grad_accum); returns the mean.

        Under torchrun each rank takes its share of the batch and backpropagates its loss sum times
        K / B: DDP's mean of the K gradients is then the gradient of the batch mean (module docstring)."""
        if not self.world.enabled:
            loss = self.loss(batch).mean()
            self.scaler.scale(loss / self.cfg.grad_accum).backward()
            return float(loss.detach())
        size = len(batch.frames)
        rows = D.part(size, self.world)
        empty = len(rows) == 0  # fewer samples than ranks: a zero-weight sample keeps this rank in DDP's step
        total = self.loss(batch.rows(range(0, 1) if empty else rows)).sum() * (0.0 if empty else 1.0)
        self.scaler.scale(total * (self.world.size / size / self.cfg.grad_accum)).backward()
        whole = total.detach().float().reshape(1).clone()
        D.all_reduce_sum([whole])
        return float(whole) / size

    # --- logging ---------------------------------------------------------------------------
    @property
    def loss_csv(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / A.LOSS_CSV

    def _log(self, loss: float) -> None:
        if self.loss_csv is None:
            return
        if self.step == 1 or not self.loss_csv.exists():
            self._rewrite_loss_csv(self.losses[:-1])
        with open(self.loss_csv, "a", newline="") as fh:
            csv.writer(fh).writerow([self.step, f"{loss:.6f}"])

    def _rewrite_loss_csv(self, losses: list[float]) -> None:
        rows = "".join(f"{i + 1},{v:.6f}\n" for i, v in enumerate(losses))
        atomic.write_text(self.loss_csv, "step,loss\n" + rows)

    # --- checkpoints -----------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        if self.out_dir is None:
            raise ValueError("this TrainLoop has no out_dir, so no checkpoints")
        return self.out_dir / A.CHECKPOINTS

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Complete checkpoints (step, folder), oldest first."""
        if self.out_dir is None or not self.checkpoint_root.is_dir():
            return []
        found = [
            (int(m.group(1)), p)
            for p in self.checkpoint_root.iterdir()
            if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()
        ]
        return sorted(found)

    def save_checkpoint(self) -> Path:
        """Write checkpoints/step_XXXXXX/ atomically and keep only the newest KEEP_CHECKPOINTS."""
        target = self.checkpoint_root / f"step_{self.step:06d}"
        with atomic.atomic_dir(target) as tmp:
            atomic.write_safetensors(
                tmp / "trainable.safetensors", {n: p.detach().float() for n, p in self.params.items()}
            )
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scaler": self.scaler.state_dict(),
                    "generator": self.generator.get_state(),
                },
                tmp / "optimizer.pt",
            )
            atomic.write_json(
                tmp / "state.json",
                {
                    "step": self.step,
                    "key": self.key,
                    "trainable": self.cfg.trainable,
                    "names": list(self.params),
                    "losses": self.losses,
                },
            )
        for _, old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def load_checkpoint(self, folder: Path) -> None:
        """Restore parameters, optimizer, scaler, generator, step and loss history from `folder`."""
        from safetensors.torch import load_file

        state = json.loads((folder / "state.json").read_text())
        if state["names"] != list(self.params):
            raise VidtuneError(
                f"{folder}: holds other trainable parameters than tuning.trainable = "
                f"{self.cfg.trainable!r}; delete {folder.parent} to start over"
            )
        weights = load_file(str(folder / "trainable.safetensors"))
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(weights[name])
        other = torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(other["optimizer"])
        self.scaler.load_state_dict(other["scaler"])
        self.generator.set_state(other["generator"])
        self.step, self.losses, self.seconds = int(state["step"]), list(state["losses"]), []
        if self.loss_csv is not None:
            self._rewrite_loss_csv(self.losses)

    def resume(self) -> int:
        """Load the newest checkpoint of this run (same key, step <= tuning.steps); returns its step.

        With none usable, stale checkpoints (another config or other data) are deleted and training
        starts at step 0.
        """
        usable = [(s, p) for s, p in self.checkpoints() if s <= self.cfg.steps and self._key_of(p) == self.key]
        if usable:
            self.load_checkpoint(usable[-1][1])
            return self.step
        if self.out_dir is not None and self.checkpoint_root.exists():
            shutil.rmtree(self.checkpoint_root)
        return 0

    @staticmethod
    def _key_of(folder: Path) -> str | None:
        try:
            return json.loads((folder / "state.json").read_text()).get("key")
        except (OSError, json.JSONDecodeError):
            return None


def drop_checkpoints(stage_dir: Path) -> int:
    """Remove stage 3's checkpoints/ once the stage is done (SD full tuning: ~10 GB each); returns the bytes freed."""
    root = Path(stage_dir) / A.CHECKPOINTS
    if not root.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root)
    return freed


@contextlib.contextmanager
def training_mode(unet: UNet2DConditionModel, cfg: TuningConfig, device: torch.device) -> Iterator[None]:
    """fp32 master weights, train mode and (on CUDA) gradient checkpointing for the block; afterwards
    the UNet is back in its dtype, in eval mode and frozen."""
    dtype = unet.dtype
    checkpointing = cfg.gradient_checkpointing and device.type == "cuda"
    if dtype != torch.float32:
        unet.to(torch.float32)
    unet.train()
    if checkpointing:
        unet.enable_gradient_checkpointing()
    try:
        yield
    finally:
        if checkpointing:
            unet.disable_gradient_checkpointing()
        unet.requires_grad_(False)
        unet.eval()
        if dtype != torch.float32:
            unet.to(dtype)


# --------------------------------------------------------------------------------------------
# Results: save, plot, load back
# --------------------------------------------------------------------------------------------


def apply_tuned(components: Components, stage_dir: Path) -> None:
    """Load a saved stage 3 (stage_dir = the run's stage3/) into ``components.unet`` in place (it keeps
    carrying it after the call, see `Components.carry`)."""
    components.carry(TuningResult.load(stage_dir))


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
    frames; afterwards the components carry the result (`Components.tuning_unet`)."""

    number, name, title, method = 3, "tuning", "combined tuning", "tune"
    view = TuningStageConfig  # the config it reads (`config.stage_view`): its resume hash
    result = TuningResult
    video: str | None = None
    uses: tuple[int, ...] = ()

    def requires(self, cfg: TuningStageConfig) -> tuple[int, ...]:
        return (2,)

    def run(self, ctx: StageContext, previous: Mapping[int, Any]) -> TuningResult:
        keep = ctx.keep_base or ctx.cfg.tuning.trainable == "lora"  # a LoRA is undone by removing it
        with ctx.components.tuning_unet(ctx.cfg.tuning.trainable, keep_base=keep) as tuned:
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
            tuned(result)
        return result

    def finish(self, folder: Path, cfg: TuningStageConfig, log: Callable[[str], None]) -> None:
        """Drop the checkpoints (SD full tuning: ~10 GB each) unless `tuning.keep_checkpoints`."""
        freed = 0 if cfg.tuning.keep_checkpoints else drop_checkpoints(folder)
        if freed:
            log(
                f"vidtune: removed stage 3's checkpoints ({freed / 2**20:.1f} MiB; "
                "tuning.keep_checkpoints = true keeps them)"
            )
