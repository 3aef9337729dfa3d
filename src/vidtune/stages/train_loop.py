"""Stage 3's training loop: optimizer steps with warm-up, mixed precision and DDP, checkpoints a rerun
resumes from, and the training mode the UNet is put in."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from vidtune import artifacts as A
from vidtune import atomic
from vidtune import distributed as D
from vidtune.config import TuningConfig
from vidtune.errors import VidtuneError
from vidtune.method.losses import combined_loss
from vidtune.stages.common import StageCallback

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel
from vidtune.stages.tuning_data import (
    Batch,
    TuningData,
)

WEIGHT_DECAY = 1e-2
KEEP_CHECKPOINTS = 2
_STEP_DIR = re.compile(r"^step_(\d{6,})$")


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
        """Draw min(batch_size, K) distinct frames of the K trained ones (`TuningData.pool`), their timesteps
        and noise from the generator."""
        pool, g = self.data.pool(), self.generator
        frames = pool[torch.randperm(len(pool), generator=g)[: min(self.cfg.batch_size, len(pool))]]
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
