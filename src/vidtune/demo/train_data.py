"""The demo model's training set: pairs of frames of one figure (one identity, two poses), rendered
once by worker processes, with figure and identity-detail masks."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from vidtune.atomic import atomic_path, write_json
from vidtune.demo.synthetic.figure import composite
from vidtune.demo.synthetic.grammar import COLOURS, format_prompt, sample_attributes
from vidtune.demo.synthetic.identity import resolve_identity
from vidtune.demo.synthetic.motions import MOTIONS, motion_sequence
from vidtune.demo.synthetic.scenes import render_scene
from vidtune.demo.synthetic.world import draw_figure
from vidtune.poses import render_pose

if TYPE_CHECKING:
    pass


from vidtune.demo.train_components import (
    RESOLUTION,
)

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
