"""Checks of a trained demo model on the library's code path: frame-by-frame sampling, adherence and
flicker (weight-free)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from vidtune.demo.synthetic.grammar import format_prompt, sample_attributes
from vidtune.demo.synthetic.identity import Identity
from vidtune.demo.synthetic.motions import MOTIONS
from vidtune.models import make_scheduler

if TYPE_CHECKING:
    from vidtune.models import Components


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
    from vidtune.evaluation.metrics import Flicker, compute

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
        return float(compute(Flicker(), x)["metrics"]["mean_abs_diff"])

    out.update(
        flicker_generated=flicker(gen),
        flicker_ground_truth=flicker(walk.frames),
        steps=float(steps),
        guidance=float(guidance),
    )
    return out
