"""The demo model's time-budgeted, resumable training loops (VAE, then UNet + adapter + text encoder
with pairs under cross-frame attention) and its export."""

from __future__ import annotations

import csv
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vidtune.atomic import atomic_dir, atomic_path, write_json
from vidtune.demo.train_options import DemoTrainConfig
from vidtune.models import make_scheduler, model_index, sd_schedule_config

if TYPE_CHECKING:
    pass


from vidtune.demo.train_data import (
    _to_unit,
)

# --------------------------------------------------------------------------------------------
# Shared loop helpers
# --------------------------------------------------------------------------------------------


def _lr_at(step: int, frac: float, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% over the elapsed fraction of the time budget."""
    w = min(1.0, (step + 1) / max(warmup, 1))
    return peak * w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


class _LossLog:
    """Appends averaged losses to out_dir/loss_log.csv every ``every`` steps."""

    def __init__(self, path: Path, every: int = 20) -> None:
        self.path, self.every, self.buf = path, every, []
        if not path.exists():
            path.write_text("phase,step,elapsed_s,loss,lr\n")

    def add(self, phase: str, step: int, elapsed: float, loss: float, lr: float) -> float | None:
        self.buf.append(loss)
        if len(self.buf) < self.every:
            return None
        mean = float(np.mean(self.buf))
        self.buf = []
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([phase, step, f"{elapsed:.1f}", f"{mean:.5f}", f"{lr:.3e}"])
        return mean


def _save_ckpt(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# --------------------------------------------------------------------------------------------
# 2. VAE
# --------------------------------------------------------------------------------------------


def figure_crop_origins(masks: np.ndarray, idx: np.ndarray, crop: int, gen: torch.Generator) -> np.ndarray:
    """``(2, B)`` crop origins (y, x; multiples of 4) of ``crop`` x ``crop`` crops that hold the figure of
    frames ``idx``: its mask's centre, jittered by up to a quarter crop (a frame without figure: random)."""
    size = masks.shape[1]
    out = torch.randint(0, size - crop + 1, (2, len(idx)), generator=gen).numpy()
    jitter = torch.randint(-crop // 4, crop // 4 + 1, (2, len(idx)), generator=gen).numpy()
    for k, i in enumerate(idx):
        ys, xs = np.nonzero(masks[i])
        if len(ys):
            centre = np.array([ys.mean(), xs.mean()])
            out[:, k] = np.clip(np.round(centre - crop / 2 + jitter[:, k]), 0, size - crop)
    return out // 4 * 4


def train_vae(
    out: Path,
    cfg: DemoTrainConfig,
    vae: torch.nn.Module,
    frames: np.ndarray,
    losses: _LossLog,
    peak_lr: float,
    masks: np.ndarray | None = None,
    details: np.ndarray | None = None,
) -> None:
    """Time-budgeted VAE training (L1 + L2 + kl_weight * KL) at ``peak_lr``; resumes from out/ckpt_vae.pt.

    With the figures' ``masks``, half of each batch's crops hold the figure and its pixels weigh
    ``figure_weight`` times the background's, and the identity ``details``' pixels (stripes, a two-tone
    top, a hat) ``detail_weight`` times more (normalised per crop): they are a few pixels of a few crops,
    and the background's reconstruction error drowns them."""
    ckpt = out / "ckpt_vae.pt"
    opt = torch.optim.AdamW(vae.parameters(), lr=peak_lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        step, elapsed = state["step"], state["elapsed"]
        gen.set_state(state["gen"])
    budget = cfg.vae_minutes * 60
    vae.train()
    bar = tqdm(total=int(budget), initial=int(min(elapsed, budget)), desc="vae", unit="s")
    t_last_ckpt = time.monotonic()
    while elapsed < budget:
        t0 = time.monotonic()
        lr = _lr_at(step, elapsed / budget, peak_lr, cfg.warmup_steps)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(frames), (cfg.vae_batch,), generator=gen).numpy()
        c = cfg.vae_crop
        oy, ox = (torch.randint(0, frames.shape[1] - c + 1, (2, cfg.vae_batch), generator=gen) // 4 * 4).numpy()
        if masks is not None:  # the first half of the batch: crops around the figure
            half = cfg.vae_batch // 2
            oy[:half], ox[:half] = figure_crop_origins(masks, idx[:half], c, gen)
        crops = np.stack([frames[i, y : y + c, x_ : x_ + c] for i, y, x_ in zip(idx, oy, ox)])
        x = _to_unit(crops) * 2 - 1
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        error = ((rec - x).abs() + (rec - x).pow(2)).mean(dim=1)  # (B, c, c)
        if masks is not None:
            fig = np.stack([masks[i, y : y + c, x_ : x_ + c] for i, y, x_ in zip(idx, oy, ox)])
            w = 1.0 + (cfg.figure_weight - 1.0) * torch.from_numpy(fig).float()
            if details is not None:
                det = np.stack([details[i, y : y + c, x_ : x_ + c] for i, y, x_ in zip(idx, oy, ox)])
                w = w * (1.0 + (cfg.detail_weight - 1.0) * torch.from_numpy(det).float())
            recon = ((error * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2))).mean()
        else:
            recon = error.mean()
        loss = recon + cfg.kl_weight * post.kl().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        dt = time.monotonic() - t0
        elapsed += dt
        mean = losses.add("vae", step, elapsed, loss.item(), lr)
        bar.update(int(min(elapsed, budget)) - bar.n)
        if mean is not None:
            bar.set_postfix(step=step, l1=f"{mean:.4f}")
        if time.monotonic() - t_last_ckpt > cfg.checkpoint_minutes * 60 or elapsed >= budget:
            _save_ckpt(
                ckpt,
                {
                    "vae": vae.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                    "gen": gen.get_state(),
                    "config": asdict(cfg),
                },
            )
            t_last_ckpt = time.monotonic()
    bar.close()


@torch.no_grad()
def encode_dataset(vae: torch.nn.Module, frames: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, std) of every frame, float16 arrays (N, 4, 16, 16)."""
    vae.eval()
    means, stds = [], []
    for s in tqdm(range(0, len(frames), batch), desc="encode", unit="batch"):
        post = vae.encode(_to_unit(frames[s : s + batch]) * 2 - 1).latent_dist
        means.append(post.mean.half().numpy())
        stds.append(post.std.half().numpy())
    return np.concatenate(means), np.concatenate(stds)


# --------------------------------------------------------------------------------------------
# 3. UNet + adapter + text encoder
# --------------------------------------------------------------------------------------------


def _min_snr_weight(sched, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights for the epsilon loss, min(SNR, gamma) / SNR: easy low-noise steps count less."""
    if gamma <= 0:
        return torch.ones(t.shape)
    from diffusers.training_utils import compute_snr

    snr = compute_snr(sched, t)
    return torch.clamp(snr, max=gamma) / snr


def figure_shares(masks: np.ndarray, factor: int) -> np.ndarray:
    """``(N, H, W)`` bool figure masks -> ``(N, H / factor, W / factor)`` float16: the share of each latent
    pixel the figure covers (the VAE's factor: 4 for the demo model)."""
    n, h, w = masks.shape
    return masks.reshape(n, h // factor, factor, w // factor, factor).mean(axis=(2, 4)).astype(np.float16)


def weighted_eps_loss(
    pred: torch.Tensor,
    noise: torch.Tensor,
    share: torch.Tensor,
    figure_weight: float,
    detail: torch.Tensor | None = None,
    detail_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample epsilon MSE, plain and with the figure's latent pixels weighted: each pixel counts
    (1 + (figure_weight - 1) x its figure ``share``) x (1 + (detail_weight - 1) x its ``detail`` share)
    (``(B, h, w)`` each), normalised by the weights' sum so that the loss keeps its scale. The identity
    lives in a few percent of the pixels (a hat in one or two latent pixels of 256); unweighted, the
    background's loss drowns what the new words must learn."""
    per_pixel = F.mse_loss(pred, noise, reduction="none").mean(dim=1)  # (B, h, w)
    weights = 1.0 + (figure_weight - 1.0) * share
    if detail is not None:
        weights = weights * (1.0 + (detail_weight - 1.0) * detail)
    weighted = (per_pixel * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2))
    return per_pixel.mean(dim=(1, 2)), weighted


def train_unet(
    out: Path,
    cfg: DemoTrainConfig,
    comps: dict[str, torch.nn.Module],
    latents: tuple[np.ndarray, np.ndarray],
    poses: np.ndarray,
    figure: np.ndarray,
    detail: np.ndarray,
    ids: torch.Tensor,
    empty_ids: torch.Tensor,
    scaling: float,
    losses: _LossLog,
    export_fn,
) -> None:
    """Time-budgeted epsilon-loss training of unet + adapter + text encoder, with EMA; resumable.

    ``figure`` and ``detail`` ``(N, h, w)``: each frame's figure and identity-detail share of every latent
    pixel (`figure_shares`); the loss weighs the pixels by them, normalised per sample (`weighted_eps_loss`)."""
    sched = make_scheduler("ddpm", sd_schedule_config())  # the forward process: SD's betas
    names = ("unet", "adapter", "text_encoder")
    params = [p for n in names for p in comps[n].parameters()]
    embedding = comps["text_encoder"].get_input_embeddings().weight
    groups = [  # the token embeddings at their own rate, without weight decay (it would pull words together)
        {"params": [p for p in params if p is not embedding], "peak": cfg.unet_lr, "weight_decay": 1e-2},
        {"params": [embedding], "peak": cfg.embedding_lr, "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg.unet_lr)
    ema = {n: {k: v.detach().clone() for k, v in comps[n].state_dict().items()} for n in names}
    ckpt = out / "ckpt_unet.pt"
    step, elapsed = 0, 0.0
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for n in names:
            comps[n].load_state_dict(state[n])
        ema, step, elapsed = state["ema"], state["step"], state["elapsed"]
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
    budget = cfg.unet_minutes * 60
    for n in names:
        comps[n].train()
    num_pairs = len(poses) // 2
    pairs = min(int(round(cfg.unet_batch * cfg.pair_share / 2)), cfg.unet_batch // 2) if num_pairs else 0
    singles = cfg.unet_batch - 2 * pairs
    xattn = None
    if pairs:  # the pairs' second frames read the first frames' keys and values (stage 4's "first" mode)
        from vidtune.method.attention import CrossFrameAttention

        xattn = CrossFrameAttention("first")
        xattn.install(comps["unet"])
        xattn.set_groups([1] * singles + [2] * pairs)
    bar = tqdm(total=int(budget), initial=int(min(elapsed, budget)), desc="unet", unit="s")
    t_ckpt = t_export = time.monotonic()
    while elapsed < budget:
        t0 = time.monotonic()
        lr = _lr_at(step, elapsed / budget, cfg.unet_lr, cfg.warmup_steps)
        for g in opt.param_groups:
            g["lr"] = lr * g["peak"] / cfg.unet_lr
        idx, t, drop = _batch_layout(
            singles, pairs, len(poses), sched.config.num_train_timesteps, cfg.prompt_dropout, gen
        )
        zt, noise = noised_latents(sched, latents, idx.numpy(), t, scaling, gen)
        tok = torch.where(drop[:, None], empty_ids[None], ids[idx])
        cond = comps["text_encoder"](tok)[0]
        feats = comps["adapter"](_to_unit(poses[idx.numpy()]))
        pred = comps["unet"](zt, t, encoder_hidden_states=cond, down_intrablock_additional_residuals=list(feats)).sample
        share = torch.from_numpy(figure[idx.numpy()]).float()
        detail_share = torch.from_numpy(detail[idx.numpy()]).float()
        plain, weighted = weighted_eps_loss(pred, noise, share, cfg.figure_weight, detail_share, cfg.detail_weight)
        loss = plain.mean()  # logged: the plain epsilon MSE, comparable across weightings
        objective = (weighted * _min_snr_weight(sched, t, cfg.snr_gamma)).mean()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema_update(ema, {n: comps[n] for n in names}, min(cfg.ema_decay, (1 + step) / (10 + step)))
        elapsed += time.monotonic() - t0
        mean = losses.add("unet", step, elapsed, loss.item(), lr)
        bar.update(int(min(elapsed, budget)) - bar.n)
        if mean is not None:
            bar.set_postfix(step=step, loss=f"{mean:.4f}")
        now = time.monotonic()
        if now - t_ckpt > cfg.checkpoint_minutes * 60 or elapsed >= budget:
            state = {n: comps[n].state_dict() for n in names}
            state.update(
                ema=ema, opt=opt.state_dict(), step=step, elapsed=elapsed, gen=gen.get_state(), config=asdict(cfg)
            )
            _save_ckpt(ckpt, state)
            t_ckpt = now
        if now - t_export > cfg.export_minutes * 60 and elapsed < budget:
            export_fn(ema, out / "model", {"unet_steps": step, "unet_minutes": elapsed / 60, "final": False})
            t_export = time.monotonic()
    bar.close()
    if xattn is not None:
        xattn.remove()
    export_fn(ema, out / "model", {"unet_steps": step, "unet_minutes": elapsed / 60, "final": True})


def noised_latents(
    sched,
    latents: tuple[np.ndarray, np.ndarray],
    idx: np.ndarray,
    t: torch.Tensor,
    scaling: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, eps) of the frames ``idx``: a latent drawn from each frame's VAE posterior (mean, std), scaled,
    noised to the timesteps ``t`` by the forward process (`sched.add_noise`)."""
    mu = torch.from_numpy(latents[0][idx]).float()
    sd = torch.from_numpy(latents[1][idx]).float()
    z0 = (mu + sd * torch.randn(mu.shape, generator=gen)) * scaling
    noise = torch.randn(z0.shape, generator=gen)
    return sched.add_noise(z0, noise, t), noise


def ema_update(ema: dict[str, dict[str, torch.Tensor]], modules: dict[str, torch.nn.Module], decay: float) -> None:
    """Move each module's EMA copy towards its weights by 1 - ``decay`` (buffers that are not floats: copied)."""
    with torch.no_grad():
        for n, module in modules.items():
            for k, v in module.state_dict().items():
                if v.dtype.is_floating_point:
                    ema[n][k].lerp_(v, 1 - decay)
                else:
                    ema[n][k].copy_(v)


def _batch_layout(
    singles: int, pairs: int, num_frames: int, num_timesteps: int, dropout: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One UNet batch: ``singles`` random frames, then ``pairs`` random pairs (frames 2p, 2p + 1 side by
    side). Returns (frame indices, timesteps, prompt dropped) of the batch's rows; both frames of a pair
    share the timestep and the dropout, as the frames of a clip share them in stage 4."""
    single = torch.randint(0, num_frames, (singles,), generator=gen)
    p = torch.randint(0, num_frames // 2, (pairs,), generator=gen) if pairs else torch.zeros(0, dtype=torch.long)
    idx = torch.cat([single, torch.stack([2 * p, 2 * p + 1], 1).reshape(-1)])
    t1 = torch.randint(0, num_timesteps, (singles,), generator=gen)
    t2 = torch.randint(0, num_timesteps, (pairs,), generator=gen).repeat_interleave(2)
    d1 = torch.rand(singles, generator=gen) < dropout
    d2 = (torch.rand(pairs, generator=gen) < dropout).repeat_interleave(2)
    return idx, torch.cat([t1, t2]), torch.cat([d1, d2])


# --------------------------------------------------------------------------------------------
# 4. Export
# --------------------------------------------------------------------------------------------


def export_model(dest: Path, comps: dict[str, torch.nn.Module], tokenizer_dir: Path, info: dict) -> None:
    """Write the diffusers folder layout; unet/adapter/vae in fp16, text encoder in fp32; SD's schedule
    (`vidtune.models.sd_schedule_config`) with a DDIM scheduler."""
    with atomic_dir(dest) as tmp:
        for name in ("unet", "adapter", "vae"):
            comps[name].to(torch.float16).save_pretrained(tmp / name, safe_serialization=True)
            comps[name].to(torch.float32)
        comps["text_encoder"].save_pretrained(tmp / "text_encoder", safe_serialization=True)
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        make_scheduler("ddim", sd_schedule_config()).save_pretrained(tmp / "scheduler")
        write_json(tmp / "model_index.json", model_index(adapter=True))
        write_json(tmp / "training_info.json", info)
