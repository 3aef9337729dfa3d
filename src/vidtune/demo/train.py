"""Train the embedded demo model on single frames of the synthetic world (as SD is trained on images).

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.train`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vidtune.atomic import atomic_dir, atomic_path, write_json
from vidtune.demo.train_options import DemoTrainConfig, add_arguments
from vidtune.errors import VidtuneError

if TYPE_CHECKING:
    pass


from vidtune.demo.check import (
    evaluate_demo,
    load_demo_components,
    sample_frames,
)
from vidtune.demo.train_components import (
    RESOLUTION,
    VAE_FACTOR,
    _make_tokenizer,
    build_components,
    extend_text_encoder,
    shipped_model_path,
    warm_start_components,
)
from vidtune.demo.train_data import (
    _render_chunk,
    _sample_spec,
    _to_unit,
    build_dataset,
)
from vidtune.demo.train_loops import (
    _batch_layout,
    _LossLog,
    _lr_at,
    _min_snr_weight,
    _save_ckpt,
    encode_dataset,
    export_model,
    figure_crop_origins,
    figure_shares,
    train_unet,
    train_vae,
    weighted_eps_loss,
)

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
    latents, scaling = _vae_phase(out, cfg, comps["vae"], frames, losses, warm is not None)

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


def _vae_phase(
    out: Path, cfg: DemoTrainConfig, vae: torch.nn.Module, frames: np.ndarray, losses: _LossLog, warm: bool
) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """Train (or, on a warm start with 0 minutes, keep) the VAE, encode the dataset once and fix the
    latents' scaling factor (a warm start keeps its own). Returns ((posterior means, stds), scaling)."""
    if not (out / "vae_done.json").exists():
        if not warm or cfg.vae_minutes > 0:
            masks, details = np.load(out / "data" / "masks.npy"), np.load(out / "data" / "details.npy")
            train_vae(out, cfg, vae, frames, losses, cfg.warm_vae_lr if warm else cfg.vae_lr, masks, details)
        else:
            _save_ckpt(out / "ckpt_vae.pt", {"vae": vae.state_dict(), "config": asdict(cfg)})
        mean, std = encode_dataset(vae, frames)
        scaling = vae.config.scaling_factor if warm else float(1.0 / mean.astype(np.float32).std())
        for name, arr in (("latents_mean", mean), ("latents_std", std)):
            with atomic_path(out / f"{name}.npy") as tmp:
                np.save(tmp, arr)
        write_json(out / "vae_done.json", {"scaling_factor": scaling, "l1": _vae_l1(vae, frames)})
    vae.load_state_dict(torch.load(out / "ckpt_vae.pt", weights_only=False)["vae"])
    scaling = json.loads((out / "vae_done.json").read_text())["scaling_factor"]
    vae.register_to_config(scaling_factor=scaling)
    return (np.load(out / "latents_mean.npy"), np.load(out / "latents_std.npy")), scaling


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
    the README and the presets (`vidtune.toml`). The configs lose diffusers' ``_name_or_path`` (the
    folder the weights were saved from, a path of this machine)."""
    from vidtune.model_choice import PRESETS_FILE

    kept = {name: (dest / name).read_text() for name in ("README.md", PRESETS_FILE) if (dest / name).is_file()}
    with atomic_dir(dest) as tmp:
        shutil.copytree(model, tmp, dirs_exist_ok=True)
        for name, text in kept.items():
            (tmp / name).write_text(text)
        for config in tmp.glob("*/config.json"):
            data = json.loads(config.read_text())
            if data.pop("_name_or_path", None) is not None:
                config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
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
        name_prob=args.name_prob,
    )
    log(f"model written to {model}")
    if args.install:
        dest = install_model(model, Path(__file__).parent / "model")
        log(f"installed into {dest}")
    return 0


__all__ = [
    "DemoTrainConfig",
    "RESOLUTION",
    "VAE_FACTOR",
    "_LossLog",
    "_batch_layout",
    "_lr_at",
    "_make_tokenizer",
    "_min_snr_weight",
    "_render_chunk",
    "_sample_spec",
    "_save_ckpt",
    "_to_unit",
    "build_components",
    "build_dataset",
    "encode_dataset",
    "evaluate_demo",
    "export_model",
    "extend_text_encoder",
    "figure_crop_origins",
    "figure_shares",
    "install_model",
    "load_demo_components",
    "main",
    "run_from_args",
    "sample_frames",
    "shipped_model_path",
    "train_demo",
    "train_unet",
    "train_vae",
    "warm_start_components",
    "weighted_eps_loss",
]


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
