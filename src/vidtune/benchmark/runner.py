"""Running an ablation: every variant of every sequence through the pipeline, then `run_ablation`.

One base run folder per sequence holds stages 1-3; each stage-4 variant has its own run folder
holding hard links (`link_base`) of the base's inputs/ and the stages it uses, and runs
`run_stages(..., stages=[4])`; base-UNet variants run before stage 3, tuned ones on a private
copy of the UNet that stage 3 tunes (`fresh_unet_copy`). Reruns skip what is done; other model
weights at the same path start the sequences over (`model_fingerprint`, `check_model`).
`run_ablation` scores what `run_sequence` made (`scoring`) and writes the outputs (`report`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from vidtune import artifacts as A
from vidtune import atomic
from vidtune import config as C
from vidtune.benchmark.report import write_outputs
from vidtune.benchmark.scoring import mask_iou, score_sequence, summarize
from vidtune.benchmark.sequence import SequenceRun, link_or_copy
from vidtune.benchmark.spec import (
    VARIANTS,
    SequenceSpec,
    Variant,
    base_config,
    load_spec,
    sequence_config,
    variant_config,
    variant_settings,
)
from vidtune.errors import VidtuneError
from vidtune.evaluation.report import plot_strips
from vidtune.video import grid_video

if TYPE_CHECKING:
    from vidtune.models import Components


# --------------------------------------------------------------------------------------------
# Running the variants of one sequence
# --------------------------------------------------------------------------------------------


def write_source(out: Path, seq: SequenceSpec, height: int, width: int, fps: float, transition: int = 0):
    """Render the ground truth of `seq` into out/source/: poses/ (+ keypoints.npz), gt_frames/, gt_masks/."""
    from vidtune.demo import command as demo

    return demo.write_source(
        out,
        seq.motion,
        seq.frames,
        seq.prompt,
        seq.seed,
        height=height,
        width=width,
        fps=fps,
        schedule=seq.schedule,
        transition=transition,
    )


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (`link_or_copy`)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        link_or_copy(path, target)


def link_base(base: Path, folder: Path, stages: Sequence[int]) -> None:
    """Give a variant's run folder the base's inputs/ and `stages` (linked); relink when the base changed.

    The variant's own stage-4 result is invalidated on a relink (its config hash cannot see that
    the base stages were recomputed)."""
    signature = {"stages": list(stages), **{str(k): (base / A.stage_dir(k) / A.DONE).read_text() for k in stages}}
    marker = folder / "linked.json"
    if marker.is_file() and json.loads(marker.read_text()) == signature:
        return
    for name in ["inputs", "stage4", *(f"stage{k}" for k in (1, 2, 3))]:
        if (folder / name).exists():
            shutil.rmtree(folder / name)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ["inputs", *(f"stage{k}" for k in stages)]:
        _link_tree(base / name, folder / name)
    atomic.write_json(marker, signature)


def fresh_unet_copy(components: Components):
    """Components sharing everything but a private copy of the UNet (stage 3 tunes it in place)."""
    return replace(components, unet=copy.deepcopy(components.unet))


def stage_seconds(folder: Path, k: int) -> float:
    """The seconds stage `k` took in a run folder when it was computed (its done.json; 0 when absent)."""
    try:
        return float(json.loads((folder / A.stage_dir(k) / A.DONE).read_text()).get("seconds", 0.0))
    except (OSError, json.JSONDecodeError):
        return 0.0


def run_stages(cfg: C.RunConfig, folder: Path, stages, progress: bool, components: Components, log) -> None:
    """Run `stages` of `cfg` in `folder` through the Python API on the given components (shared by variants;
    no copy of the base weights: the ablation tunes a private UNet copy instead)."""
    from vidtune.api import VidtunePipeline

    VidtunePipeline(components, cfg)(config=cfg, run_dir=folder, stages=stages, progress=progress, log=log)


def run_sequence(
    seq: SequenceSpec,
    base_cfg: C.RunConfig,
    variants: Sequence[str],
    root: Path,
    components: Components,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SequenceRun:
    """Every variant of one sequence: source -> base stages 1-2 -> base-UNet variants -> stage 3 ->
    tuned variants. `components` are never modified (stage 3 tunes a private copy)."""
    from vidtune import pipeline

    h, w, fps = base_cfg.inputs.height, base_cfg.inputs.width, base_cfg.inputs.fps or 8.0
    truth = write_source(root, seq, h, w, fps, transition=base_cfg.codenoise.transition)
    cfg = sequence_config(base_cfg, seq, root / "source" / "poses")
    chosen = [VARIANTS[v] for v in variants]
    stage4 = [v for v in chosen if v.source == "stage4"]
    tuned = [v for v in stage4 if v.unet == "tuned"]
    base_dir = root / "base"
    needs = {1} | ({2} if any(v.source == "stage2" or 2 in v.links for v in chosen) else set())
    result = SequenceRun(spec=seq, root=root, truth=truth, transition=base_cfg.codenoise.transition)
    quiet = (lambda s: None) if not progress else log

    log(f"vidtune ablate [{seq.name}]: base stages {sorted(needs)} in {base_dir}")
    run_stages(cfg, base_dir, stages=sorted(needs), progress=progress, components=components, log=quiet)
    for v in chosen:
        same_as_base = C.stage_hash(variant_config(cfg, v, seq.frames), 1) == C.stage_hash(cfg, 1)
        if v.source == "stage1" and v.own_folder and not same_as_base:
            folder = root / v.name
            log(f"vidtune ablate [{seq.name}]: {v.name} (stage 1) in {folder}")
            run_stages(
                variant_config(cfg, v, seq.frames),
                folder,
                stages=[1],
                progress=progress,
                components=components,
                log=quiet,
            )
            result.frames[v.name] = folder / A.stage_dir(1) / A.FRAMES
            result.seconds[v.name] = stage_seconds(folder, 1)
        elif v.source in ("stage1", "stage2"):
            k = 1 if v.source == "stage1" else 2
            result.frames[v.name] = base_dir / A.stage_dir(k) / A.FRAMES
            result.seconds[v.name] = sum(stage_seconds(base_dir, i) for i in range(1, k + 1))
        elif v.source == "gt":
            result.frames[v.name] = root / "source" / "gt_frames"
            result.seconds[v.name] = 0.0

    def run_stage4(v: Variant, comps: Components) -> None:
        vcfg = variant_config(cfg, v, seq.frames)
        folder = root / v.name
        links = tuple(v.links) + ((2,) if vcfg.codenoise.init != "noise" and 2 not in v.links else ())
        link_base(base_dir, folder, sorted(links))
        log(f"vidtune ablate [{seq.name}]: {v.name} (stage 4, {v.unet} UNet) in {folder}")
        run_stages(vcfg, folder, stages=[4], progress=progress, components=comps, log=quiet)
        done = json.loads((folder / A.stage_dir(4) / A.DONE).read_text())
        if done.get("unet") != v.unet:
            raise VidtuneError(f"{folder}: variant {v.name} ran on the {done.get('unet')} UNet, expected {v.unet}")
        result.frames[v.name] = folder / A.stage_dir(4) / A.FRAMES
        result.unet[v.name] = done["unet"]
        result.seconds[v.name] = sum(stage_seconds(base_dir, k) for k in links) + stage_seconds(folder, 4)
        if v.seams:
            result.windows[v.name] = pipeline.windows_for(vcfg)(seq.frames)

    for v in stage4:
        if v.unet == "base":
            run_stage4(v, components)
    if tuned:
        tuning = fresh_unet_copy(components)
        log(f"vidtune ablate [{seq.name}]: stage 3 (combined tuning) in {base_dir}")
        run_stages(cfg, base_dir, stages=[3], progress=progress, components=tuning, log=quiet)
        for v in tuned:
            run_stage4(v, tuning)
        del tuning
    try:  # the control: what the content alone gives at the co-denoising clip boundaries
        control = pipeline.windows_for(cfg)(seq.frames)
    except VidtuneError:
        control = None
    for v in chosen:
        if v.name not in result.windows and control is not None:
            result.windows[v.name] = control
    return result


# --------------------------------------------------------------------------------------------
# The model's weights, the cost, how it was made
# --------------------------------------------------------------------------------------------


def model_fingerprint(path: str) -> str:
    """A hash of a local model folder's weight files and configs ("" for a hub id): the run folders'
    stage hashes name the model's path, not its weights, so a retrained model needs this."""
    import hashlib

    root = Path(path)
    if not root.is_dir():
        return ""
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt")):
        digest.update(str(f.relative_to(root)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def check_model(root: Path, fingerprint: str, log: Callable[[str], None] = print) -> None:
    """Start over (remove OUT/sequences) when OUT was made with other weights; record the fingerprint."""
    marker = root / "model.json"
    if marker.is_file() and (root / "sequences").is_dir():
        old = json.loads(marker.read_text()).get("fingerprint")
        if old != fingerprint:
            log(
                f"vidtune ablate: {root} was made with other model weights ({old} -> {fingerprint}); "
                f"recomputing every sequence"
            )
            shutil.rmtree(root / "sequences")
    atomic.write_json(marker, {"fingerprint": fingerprint})


def stage_compute_seconds(root: Path, variants: Sequence[str]) -> float:
    """Seconds every stage of every sequence took when it was computed (each stage once, linked copies
    not counted): the cost of the whole ablation, also when this invocation resumed most of it."""
    total = 0.0
    for seq in sorted(p for p in (root / "sequences").iterdir() if p.is_dir()):
        total += sum(stage_seconds(seq / "base", k) for k in (1, 2, 3))
        for v in variants:
            if VARIANTS[v].own_folder:
                total += stage_seconds(seq / v, 1)
            elif VARIANTS[v].source == "stage4":
                total += stage_seconds(seq / v, 4)
    return total


def _machine() -> str:
    """The machine line of ablation.md: OS, CPU, visible cores, torch threads, GPU."""
    from vidtune.evaluation.report import cpu_name

    cpu = cpu_name()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - a description only
        gpu, threads = None, None
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores visible"
        f"{f', torch threads {threads}' if threads else ''}{f', GPU {gpu}' if gpu else ', no GPU'}"
    )


def _command(config: str | None, out: str, overrides: Sequence[str], suite: str = "default") -> str:
    """The `vidtune ablate` command line that regenerates this output."""
    parts = ["vidtune", "ablate"] + ([config] if config else []) + (["--suite", suite] if suite != "default" else [])
    parts += ["--out", out]
    for o in overrides:
        parts += ["--set", o]
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def run_ablation(
    config: str | None,
    out: str = "runs/ablation",
    overrides: list[str] | None = None,
    progress: bool = True,
    components: Components = None,
    suite: str = "default",
    log: Callable[[str], None] = print,
) -> Path:
    """Run every variant on every sequence, score them, write ablation.json / .md, plots, grids, report.html.

    `components`: already loaded models of the configured model (else loaded here); never
    modified (stage 3 tunes a private copy of the UNet). `log` receives every message, one line
    each. Returns the output folder."""
    from vidtune import pipeline

    start = time.perf_counter()
    overrides = list(overrides or [])
    spec = load_spec(config, suite)
    cfg = base_config(spec, overrides)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise VidtuneError(f"{root}: the output folder is a file; pass --out with a folder path")
    root.mkdir(parents=True, exist_ok=True)
    fingerprint = model_fingerprint(cfg.model.path)
    check_model(root, fingerprint, log)
    variants = list(spec.variants)
    if components is None:
        components = pipeline.load_components(cfg)
    log(
        f"vidtune ablate: {len(spec.sequences)} sequences x {len(variants)} variants on {cfg.model.path} "
        f"({components.device}); output in {root}"
    )

    per_sequence, curves, videos, folders, masks_iou = {}, {}, [], {}, {}
    for seq in spec.sequences:
        seq_root = root / "sequences" / seq.name
        run = run_sequence(seq, cfg, variants, seq_root, components, progress=progress, log=log)
        per_sequence[seq.name], curves[seq.name] = score_sequence(run)
        masks_iou[seq.name] = mask_iou(seq_root / "base" / A.stage_dir(1) / A.MASKS, seq_root / "source" / "gt_masks")
        folders[seq.name] = {
            "frames": {v: str(p) for v, p in run.frames.items()},
            "grid": str(seq_root / "grid.mp4"),
            "unet": run.unet,
            "windows": run.windows,
        }
        panels = [("pose", seq_root / "source" / "poses")] + [(v, run.frames[v]) for v in variants]
        grid = grid_video(seq_root / "grid.mp4", panels, cfg.inputs.fps or 8.0, cols=math.ceil(len(panels) / 2))
        plot_strips([(v.replace("_", " "), run.frames[v]) for v in variants], seq_root / "strip.png", count=8)
        videos.append(
            (
                f"{seq.name}: {seq.prompt} ({seq.motion}, {seq.frames} frames) - "
                + " | ".join(name for name, _ in panels),
                grid,
            )
        )
        log(f"vidtune ablate [{seq.name}]: scored; grid video {grid}")

    summary = summarize(per_sequence, variants)
    result = {
        "command": _command(config, out, overrides, suite),
        "machine": _machine(),
        "python": sys.version.split()[0],
        "model": cfg.model.path,
        "model_fingerprint": fingerprint,
        "seconds": time.perf_counter() - start,
        "stage_seconds": stage_compute_seconds(root, variants),
        "finished": time.time(),
        "sequences": [vars(s) for s in spec.sequences],
        "variants": {v: {"description": VARIANTS[v].description, "settings": variant_settings(v)} for v in variants},
        "base_config": C.to_dict(cfg),
        "per_sequence": per_sequence,
        "summary": summary,
        "mask_iou": masks_iou,
        "flicker_curves": curves,
        "outputs": folders,
    }
    paths = write_outputs(root, result, variants, videos)
    log(
        f"vidtune ablate: {result['seconds']:.0f}s. Table {paths['markdown']}; numbers {paths['json']}; "
        f"plots {paths['bars']}, {paths['flicker']}; grid videos {root / 'sequences'}/*/grid.mp4; "
        f"report {paths['report']}"
    )
    return root
