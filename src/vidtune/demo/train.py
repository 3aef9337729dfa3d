"""Train the embedded demo model on single frames of the synthetic world (as SD is trained on images).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.train`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vidtune.atomic import atomic_dir, atomic_path, write_json
from vidtune.demo.synthetic.figure import composite
from vidtune.demo.synthetic.grammar import COLOURS, VOCABULARY_TEXTS, format_prompt, sample_attributes
from vidtune.demo.synthetic.identity import Identity, resolve_identity
from vidtune.demo.synthetic.motions import MOTIONS, motion_sequence
from vidtune.demo.synthetic.scenes import render_scene
from vidtune.demo.synthetic.world import draw_figure
from vidtune.demo.train_options import DemoTrainConfig, add_arguments
from vidtune.errors import VidtuneError
from vidtune.models import make_scheduler, model_index, sd_schedule_config
from vidtune.poses import render_pose
from vidtune.tokenizer import write_clip_tokenizer

if TYPE_CHECKING:
    from vidtune.models import Components


RESOLUTION = 64
VAE_FACTOR = 4  # 64x64 frames <-> 16x16 latents


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def build_components(vocab_size: int, bos_id: int, eos_id: int, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Fresh demo components: vae (f=4), unet (64/128/128), adapter (full), text_encoder (2 layers)."""
    from diffusers import AutoencoderKL, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    # Fully convolutional (no mid-block attention), so it trains on crops and runs at any size.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=RESOLUTION,
        mid_block_add_attention=False,
    )
    with torch.no_grad():  # start with a small posterior std (exp(-3)): a noisy posterior blurs colours early on
        vae.encoder.conv_out.bias[vae.config.latent_channels :] = -6.0
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION // VAE_FACTOR,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=128,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    adapter = T2IAdapter(
        in_channels=3, channels=[64, 128, 128], num_res_blocks=2, downscale_factor=4, adapter_type="full_adapter"
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    )
    return {"vae": vae, "unet": unet, "adapter": adapter, "text_encoder": text_encoder}


def shipped_model_path() -> Path:
    """The package's demo model folder (what ``--warm-start shipped`` names)."""
    return Path(__file__).parent / "model"


def extend_text_encoder(text_encoder: torch.nn.Module, old_vocab: dict[str, int], new_vocab: dict[str, int]) -> int:
    """Resize ``text_encoder``'s token embedding from ``old_vocab`` to ``new_vocab`` (token -> id), in
    place: a token both know keeps its trained row (under its new id), a new token starts at the mean
    of the old rows plus a little noise (so new words start as an average word, not as noise the
    encoder never saw). The special-token ids in the config follow the new vocabulary. Returns the
    number of new tokens."""
    from vidtune.tokenizer import SPECIAL_TOKENS

    old = text_encoder.get_input_embeddings().weight.detach().clone()
    gen = torch.Generator().manual_seed(len(new_vocab))
    rows = old.mean(0, keepdim=True) + 0.1 * old.std(0, keepdim=True) * torch.randn(
        (len(new_vocab), old.shape[1]), generator=gen
    )
    fresh = 0
    for token, i in new_vocab.items():
        if token in old_vocab:
            rows[i] = old[old_vocab[token]]
        else:
            fresh += 1
    emb = torch.nn.Embedding(len(new_vocab), old.shape[1])
    emb.weight.data.copy_(rows)
    text_encoder.set_input_embeddings(emb)
    bos, eos = (new_vocab[t] for t in SPECIAL_TOKENS)
    text_encoder.config.vocab_size = len(new_vocab)
    text_encoder.config.bos_token_id, text_encoder.config.eos_token_id = bos, eos
    text_encoder.config.pad_token_id = eos
    for module in text_encoder.modules():  # older transformers keep a copy in CLIPTextTransformer
        if module is not text_encoder and getattr(module, "eos_token_id", None) is not None:
            module.eos_token_id = eos
    return fresh


def warm_start_components(model_dir: Path, tokenizer_dir: Path) -> dict[str, torch.nn.Module]:
    """The components of an existing demo-model folder, fp32, for fine-tuning: its text encoder's
    embedding extended to the tokenizer in ``tokenizer_dir`` (`extend_text_encoder`)."""
    from diffusers import AutoencoderKL, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel

    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", torch_dtype=torch.float32)
    adapter = T2IAdapter.from_pretrained(model_dir, subfolder="adapter", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder", torch_dtype=torch.float32)
    old_vocab = json.loads((model_dir / "tokenizer" / "vocab.json").read_text())
    new_vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    extend_text_encoder(text_encoder, old_vocab, new_vocab)
    return {"vae": vae, "unet": unet, "adapter": adapter, "text_encoder": text_encoder}


def _make_tokenizer(out_dir: Path):
    from transformers import CLIPTokenizer

    tok_dir = out_dir / "tokenizer"
    if not (tok_dir / "vocab.json").exists():
        with atomic_dir(tok_dir) as tmp:
            write_clip_tokenizer(tmp, [*VOCABULARY_TEXTS, ""])
    return CLIPTokenizer.from_pretrained(tok_dir)


# --------------------------------------------------------------------------------------------
# 1. Dataset
# --------------------------------------------------------------------------------------------


def _sample_spec(seed: int, i: int, scenes_per_kind: int, name_prob: float = 0.5):
    """The random choices of training pair ``i``: the prompt's attributes (each identity attribute named
    with probability ``name_prob``), the figure's identity, and per frame of the pair its motion args
    (motion, translate, frame, speed; one body: one motion seed) and scene key (one scene kind and
    time; the same background half the time)."""
    rng = np.random.default_rng([seed, i])
    attrs = sample_attributes(rng)
    identity = resolve_identity({}, attrs.colour, COLOURS, rng)
    names = rng.random(3) < name_prob
    attrs = replace(attrs, **{k: (v if n else None) for n, (k, v) in zip(names, identity.as_dict().items())})
    motion_seed = int(rng.integers(1 << 30))
    frames = []
    for k in range(2):
        motion = (attrs.motion if k == 0 else None) or str(rng.choice(list(MOTIONS)))
        translate: str | float = "auto" if rng.random() < 0.6 else float(rng.uniform(-2.0, 2.0))
        n = int(rng.integers(1, 40))
        speed = float(rng.uniform(0.6, 1.6))
        frames.append((motion, translate, n, speed))
    first = int(rng.integers(scenes_per_kind))
    second = first if rng.random() < 0.5 else int(rng.integers(scenes_per_kind))
    keys = [(attrs.scene, attrs.time, first), (attrs.scene, attrs.time, second)]
    return attrs, identity, frames, motion_seed, keys


def _render_chunk(
    args: tuple[list[int], int, int, float],
) -> tuple[list[int], np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Frames ``(2 len(indices), H, W, 3)``, pose images, prompts, figure masks and identity-detail masks
    (stripes, two-tone top, hat) of the pairs ``indices`` (run in a worker process)."""
    indices, seed, scenes_per_kind, name_prob = args
    frames, poses, prompts, masks, details = [], [], [], [], []
    cache: dict[tuple[str, str, int], np.ndarray] = {}
    for i in indices:
        attrs, identity, specs, motion_seed, keys = _sample_spec(seed, i, scenes_per_kind, name_prob)
        for (motion, translate, n, speed), key in zip(specs, keys):
            seq = motion_sequence(
                motion, n, height=RESOLUTION, width=RESOLUTION, speed=speed, translate=translate, seed=motion_seed
            )
            if key not in cache:
                cache[key] = render_scene((key[0], key[1]), seed=key[2], height=RESOLUTION, width=RESOLUTION)
            layer = draw_figure(seq.keypoints[-1], attrs, RESOLUTION, RESOLUTION, seq.depth[-1], identity)
            frames.append(composite(cache[key], layer))
            poses.append(render_pose(seq.keypoints[-1], RESOLUTION, RESOLUTION))
            prompts.append(format_prompt(attrs))
            masks.append(layer.mask)
            details.append(layer.stripes | layer.hat)
    return indices, np.stack(frames), np.stack(poses), prompts, np.stack(masks), np.stack(details)


def build_dataset(
    data_dir: Path, num_frames: int, seed: int, scenes_per_kind: int, workers: int, name_prob: float = 0.5
) -> None:
    """Pre-render the training frames once (frames.npy, poses.npy, masks.npy, details.npy, prompts.json;
    frames 2i and 2i + 1 are pair i); skip if present. Pairs are grouped by background so that most scenes render
    once."""
    if (data_dir / "done.json").exists() and (data_dir / "details.npy").exists():
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    num_pairs = num_frames // 2
    num_frames = 2 * num_pairs
    by_key: dict[tuple, list[int]] = {}
    for i in range(num_pairs):
        by_key.setdefault(_sample_spec(seed, i, scenes_per_kind, name_prob)[-1][0], []).append(i)
    jobs: list[tuple[list[int], int, int, float]] = []
    current: list[int] = []
    for key in sorted(by_key):
        current += by_key[key]
        if len(current) >= 100:
            jobs.append((current, seed, scenes_per_kind, name_prob))
            current = []
    if current:
        jobs.append((current, seed, scenes_per_kind, name_prob))
    frames = np.zeros((num_frames, RESOLUTION, RESOLUTION, 3), np.uint8)
    poses = np.zeros_like(frames)
    masks = np.zeros(frames.shape[:3], bool)
    details = np.zeros_like(masks)
    prompts = [""] * num_frames
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        for idx, f, p, t, m, d in tqdm(
            pool.map(_render_chunk, jobs), total=len(jobs), desc="render dataset", unit="chunk"
        ):
            rows = np.stack([2 * np.asarray(idx), 2 * np.asarray(idx) + 1], axis=1).reshape(-1)
            frames[rows], poses[rows], masks[rows], details[rows] = f, p, m, d
            for i, text in zip(rows, t):
                prompts[i] = text
    for name, arr in (("frames", frames), ("poses", poses), ("masks", masks), ("details", details)):
        with atomic_path(data_dir / f"{name}.npy") as tmp:
            np.save(tmp, arr)
    write_json(data_dir / "prompts.json", prompts)
    write_json(data_dir / "done.json", {"num_frames": num_frames, "num_pairs": num_pairs, "seed": seed})


def _to_unit(x: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [0, 1]."""
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0


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
    mean_np, std_np = latents
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
        mu = torch.from_numpy(mean_np[idx.numpy()]).float()
        sd = torch.from_numpy(std_np[idx.numpy()]).float()
        z0 = (mu + sd * torch.randn(mu.shape, generator=gen)) * scaling
        noise = torch.randn(z0.shape, generator=gen)
        zt = sched.add_noise(z0, noise, t)
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
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for n in names:
                for k, v in comps[n].state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[n][k].lerp_(v, 1 - decay)
                    else:
                        ema[n][k].copy_(v)
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


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


def train_demo(
    out_dir: str | Path,
    *,
    vae_minutes: float = DemoTrainConfig.vae_minutes,
    unet_minutes: float = DemoTrainConfig.unet_minutes,
    resume: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = print,
    **overrides,
) -> Path:
    """Train the demo model into ``out_dir``; returns the exported model folder ``out_dir/model``.

    Args:
        out_dir: working folder (dataset cache, checkpoints, loss_log.csv, model/).
        vae_minutes, unet_minutes: time budgets of the two training phases.
        resume: continue from the checkpoints in ``out_dir``; False starts over (deletes them).
        seed: dataset and initialisation seed.
        overrides: other `DemoTrainConfig` fields (num_frames, unet_batch, ...).
    """
    cfg = DemoTrainConfig(vae_minutes=vae_minutes, unet_minutes=unet_minutes, seed=seed, **overrides)
    out = Path(out_dir)
    if not resume:
        for name in (
            "ckpt_vae.pt",
            "ckpt_unet.pt",
            "vae_done.json",
            "latents_mean.npy",
            "latents_std.npy",
            "loss_log.csv",
            "wall.json",
        ):
            (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    t_start = time.monotonic()
    wall_file = out / "wall.json"  # wall time of earlier processes on this out_dir (resumed runs add up)
    wall_before = json.loads(wall_file.read_text())["minutes"] if wall_file.exists() else 0.0
    write_json(out / "config.json", asdict(cfg))

    # 1. dataset and tokenizer
    build_dataset(out / "data", cfg.num_frames, cfg.seed, cfg.scenes_per_kind, cfg.workers, cfg.name_prob)
    frames = np.load(out / "data" / "frames.npy")
    poses = np.load(out / "data" / "poses.npy")
    figure = figure_shares(np.load(out / "data" / "masks.npy"), VAE_FACTOR)
    detail = figure_shares(np.load(out / "data" / "details.npy"), VAE_FACTOR)
    prompts = json.loads((out / "data" / "prompts.json").read_text())
    tokenizer = _make_tokenizer(out)
    warm = None
    if cfg.warm_start:
        warm = shipped_model_path() if cfg.warm_start == "shipped" else Path(cfg.warm_start)
        if not (warm / "unet").is_dir():
            raise VidtuneError(f"--warm-start {cfg.warm_start}: {warm} is not a demo model folder (no unet/)")
        comps = warm_start_components(warm, out / "tokenizer")
        log(f"warm start from {warm}: vocabulary {len(tokenizer)} tokens")
    else:
        comps = build_components(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, cfg.seed)
    losses = _LossLog(out / "loss_log.csv")

    # 2. VAE (kept as it is on a warm start), then the latent cache and scaling factor
    if not (out / "vae_done.json").exists():
        if warm is None or cfg.vae_minutes > 0:
            train_vae(
                out,
                cfg,
                comps["vae"],
                frames,
                losses,
                cfg.vae_lr if warm is None else cfg.warm_vae_lr,
                np.load(out / "data" / "masks.npy"),
                np.load(out / "data" / "details.npy"),
            )
        else:
            _save_ckpt(out / "ckpt_vae.pt", {"vae": comps["vae"].state_dict(), "config": asdict(cfg)})
        mean, std = encode_dataset(comps["vae"], frames)
        scaling = float(1.0 / mean.astype(np.float32).std()) if warm is None else comps["vae"].config.scaling_factor
        for name, arr in (("latents_mean", mean), ("latents_std", std)):
            with atomic_path(out / f"{name}.npy") as tmp:
                np.save(tmp, arr)
        write_json(out / "vae_done.json", {"scaling_factor": scaling, "l1": _vae_l1(comps["vae"], frames)})
    comps["vae"].load_state_dict(torch.load(out / "ckpt_vae.pt", weights_only=False)["vae"])
    scaling = json.loads((out / "vae_done.json").read_text())["scaling_factor"]
    comps["vae"].register_to_config(scaling_factor=scaling)
    latents = (np.load(out / "latents_mean.npy"), np.load(out / "latents_std.npy"))

    # 3. UNet + adapter + text encoder
    def tok(texts: list[str]) -> torch.Tensor:
        return tokenizer(
            texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids

    ids, empty_ids = tok(prompts), tok([""])[0]

    def export_fn(ema: dict, dest: Path, info: dict) -> None:
        wall = wall_before + (time.monotonic() - t_start) / 60
        write_json(wall_file, {"minutes": wall})
        live = {n: {k: v.clone() for k, v in comps[n].state_dict().items()} for n in ema}
        for n, sd in ema.items():
            comps[n].load_state_dict(sd)
        export_model(
            dest,
            comps,
            out / "tokenizer",
            {
                **info,
                "config": asdict(cfg),
                "vae": json.loads((out / "vae_done.json").read_text()),
                "wall_minutes": wall,
            },
        )
        for n, sd in live.items():
            comps[n].load_state_dict(sd)

    train_unet(out, cfg, comps, latents, poses, figure, detail, ids, empty_ids, scaling, losses, export_fn)
    return out / "model"


@torch.no_grad()
def _vae_l1(vae: torch.nn.Module, frames: np.ndarray, n: int = 256) -> float:
    """Mean |x - decode(encode(x))| on [-1, 1] images over the first ``n`` frames."""
    vae.eval()
    x = _to_unit(frames[:n]) * 2 - 1
    return float((vae.decode(vae.encode(x).latent_dist.mean).sample - x).abs().mean())


def main(argv: list[str] | None = None) -> int:
    """``python -m vidtune.demo.train --out DIR`` (the `vidtune train-demo` command)."""
    ap = argparse.ArgumentParser(prog="vidtune train-demo", description=__doc__.split("\n")[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run_from_args(args)


def install_model(model: Path, dest: Path) -> Path:
    """Replace the model folder ``dest`` with ``model``, atomically, keeping what training does not write:
    the README and the presets (`vidtune.toml`)."""
    from vidtune.model_choice import PRESETS_FILE

    kept = {name: (dest / name).read_text() for name in ("README.md", PRESETS_FILE) if (dest / name).is_file()}
    with atomic_dir(dest) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
        for name, text in kept.items():
            (tmp / name).write_text(text)
    return dest


def run_from_args(args: argparse.Namespace, log: Callable[[str], None] = print) -> int:
    """Train (and with ``--install`` install) the demo model from parsed options; `log` receives the messages."""
    model = train_demo(
        args.out,
        vae_minutes=args.vae_minutes,
        unet_minutes=args.unet_minutes,
        resume=not args.fresh,
        seed=args.seed,
        log=log,
        num_frames=args.num_frames,
        unet_batch=args.unet_batch,
        unet_lr=args.unet_lr,
        embedding_lr=args.embedding_lr,
        figure_weight=args.figure_weight,
        detail_weight=args.detail_weight,
        warm_start=args.warm_start,
        pair_share=args.pair_share,
    )
    log(f"model written to {model}")
    if args.install:
        dest = install_model(model, Path(__file__).parent / "model")
        log(f"installed into {dest}")
    return 0


# --------------------------------------------------------------------------------------------
# Checks of a trained model: frame-by-frame sampling on the library's code path
# --------------------------------------------------------------------------------------------


def load_demo_components(path: str | Path):
    """A demo-model folder loaded as `vidtune demo` loads it (`vidtune.models.load_components`: fp32 on
    the CPU, the adapter from ``<path>/adapter``)."""
    from vidtune.models import load_components

    return load_components(path)


@torch.no_grad()
def sample_frames(
    comps: Components,
    prompts: list[str],
    pose_images: np.ndarray,
    *,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
    adapter_scale: float = 1.0,
) -> np.ndarray:
    """Frame-by-frame generation as stage 1 of `vidtune demo` runs it: DDIM (eta 0) on the model's
    schedule, classifier-free guidance and adapter residuals (`vidtune.sampling`).

    Args:
        comps: `vidtune.models.Components` (`load_demo_components`).
        prompts: one prompt per frame.
        pose_images: ``(B, H, W, 3)`` uint8 OpenPose images at the model resolution.
        seed: frame ``i`` starts from the noise of ``torch.Generator().manual_seed(seed + i)``.

    Returns:
        ``(B, H, W, 3)`` uint8 RGB frames.
    """
    from vidtune.sampling import (
        adapter_features,
        decode,
        denoise,
        frame_eps_fn,
        initial_noise,
        make_prompt_bank,
        prepare_scheduler,
    )

    pose_images = np.asarray(pose_images)
    bank = make_prompt_bank(comps.tokenizer, comps.text_encoder, list(prompts))
    feats = adapter_features(comps.adapter, pose_images, adapter_scale)
    scheduler = make_scheduler("ddim", comps.scheduler)
    timesteps = prepare_scheduler(scheduler, steps, comps.device)
    f = comps.vae_scale_factor
    shape = (comps.latent_channels, pose_images.shape[1] // f, pose_images.shape[2] // f)
    z = initial_noise(len(prompts), shape, seed, device=comps.device, dtype=comps.unet.dtype)
    eps_fn = frame_eps_fn(comps.unet, bank, feats, guidance, batch_frames=len(prompts))
    x0 = denoise(z * scheduler.init_noise_sigma, scheduler, timesteps, eps_fn, progress=False)
    return np.concatenate(list(decode(comps.vae, x0)))


def evaluate_demo(
    model_dir: str | Path,
    *,
    samples: int = 100,
    steps: int = 20,
    guidance: float = 5.0,
    seed: int = 1_000_000,
    batch: int = 10,
    flicker_frames: int = 16,
    default_identity: bool = False,
) -> dict[str, float]:
    """Adherence and flicker of frame-by-frame generation with a demo model (weight-free checks).

    ``default_identity``: the ground truth wears the default identity (plain shirt, dark trousers, no
    hat) where the prompt leaves it open, as every figure did before identities existed: the check of
    a model trained before them (the pose IoU keys the prompt's colour, which a model that knows only
    dark trousers paints on the legs too).

    ``samples`` random unseen (prompt, motion, pose, scene) frames: mean pose IoU and colour /
    scene / time-of-day accuracy (`vidtune.demo.synthetic.adherence`); and the flicker (mean |dI| of
    consecutive frames, 0-255, `vidtune.evaluation.metrics.Flicker`) of a ``flicker_frames``-frame
    walk generated frame by frame (its own noise per frame) against the rendered ground truth's.
    """
    from vidtune.demo.synthetic.adherence import frame_adherence, summarize
    from vidtune.demo.synthetic.world import make_sequence
    from vidtune.evaluation.metrics import compute_flicker

    comps = load_demo_components(model_dir)
    rng = np.random.default_rng(seed)
    truths, prompts = [], []
    for i in range(samples):
        attrs = sample_attributes(rng)
        n = int(rng.integers(1, 40))
        prompts.append(format_prompt(attrs))
        if default_identity:
            attrs = replace(attrs, **{k: attrs.named[k] or v for k, v in Identity().as_dict().items()})
        truths.append(make_sequence(attrs.motion or str(rng.choice(list(MOTIONS))), n, attrs, seed=seed + i))
    results = []
    for s in range(0, samples, batch):
        group = truths[s : s + batch]
        frames = sample_frames(
            comps,
            prompts[s : s + batch],
            np.stack([t.pose_images[-1] for t in group]),
            steps=steps,
            guidance=guidance,
            seed=seed + s,
        )
        results += [frame_adherence(f, t.masks[-1], t.attrs, t.clothes_masks[-1]) for f, t in zip(frames, group)]
    out = summarize(results)
    walk = make_sequence("walk", flicker_frames, "a red figure walking on a grassy meadow during the day", seed=seed)
    gen = np.concatenate(
        [
            sample_frames(
                comps, [walk.prompt] * len(chunk), chunk, steps=steps, guidance=guidance, seed=seed + 7 + k * batch
            )
            for k, chunk in enumerate(np.array_split(walk.pose_images, max(1, flicker_frames // batch)))
        ]
    )

    def flicker(x: np.ndarray) -> float:
        return float(compute_flicker(x)["metrics"]["mean_abs_diff"])

    out.update(
        flicker_generated=flicker(gen),
        flicker_ground_truth=flicker(walk.frames),
        steps=float(steps),
        guidance=float(guidance),
    )
    return out


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
