"""`vidtune ablate`: the baselines and the ablation of the four stages, on the synthetic world.

For every sequence (a motion, a prompt and a seed of the synthetic world, rendered with its
ground truth), the same poses, prompt and seeds go through every variant below, and each
variant's video is scored with the weight-free metrics (consistency paired with motion
following, design §6) against the ground truth's exact masks and the pose images.

Variants (`VARIANTS`)::

    per_frame               stage 1 only: every frame from its own noise (SD frame by frame)
    per_frame_shared_noise  stage 1 with one shared initial noise (separate.noise_mode = shared)
    t2v_zero                Text2Video-Zero-style: base UNet, the whole video as ONE clip with
                            first-frame cross-frame attention, shared noise, from pure noise
    gen_l_video             Gen-L-Video: base UNet, overlapping clips co-denoised, uniform merge
                            weights, middle-frame anchor, independent noise per frame (as its code)
    freenoise               FreeNoise-style: gen_l_video's clips and anchor with the noise
                            rescheduled across windows (each window a shuffle of the previous one's)
    stages_1_2              the stage-2 frames (average fusion at step t, denoised on)
    stages_1_2_sdedit       the base UNet re-denoising the stage-2 frames exactly as stages_1_2_3
                            does (full's init: fused, SDEdit strength, shared noise; clips of one
                            frame, no cross-frame attention): stages_1_2_3 minus the tuning
    stages_1_2_3            the tuned UNet without co-denoising: stage 4 with clips of one frame,
                            no cross-frame attention, the full method's init (fused, shared noise)
    full                    all four stages with the demo presets
    full_global             `full` with one global anchor frame (codenoise.attention = global)
    ground_truth            the rendered video: the consistency ceiling

Reuse: one base run folder per sequence holds stages 1-3; each stage-4 variant has its own run
folder holding hard links (copies where links fail) of the base's inputs/ and stage1/ (and
stage2/, stage3/ only where it uses them) and runs `pipeline.run(..., stages=[4])`. The
base-model variants never see a stage3/ folder and run on components that stage 3 never
touched (stage 3 tunes a private copy of the UNet per sequence), so their done.json says
``"unet": "base"``; the tuned variants' says ``"tuned"``. Reruns skip what is done.

Suites (no config file): ``default`` = `DEFAULT_SEQUENCES` x every variant; ``benchmark`` =
`BENCHMARK_SEQUENCES` (12 sequences: all 7 motions, 5 scenes, 3 times of day, 24 to 96 frames,
three prompt schedules of 2-3 segments) x `BENCHMARK_VARIANTS` (the baselines against the
defaults). Every metric has a 95% bootstrap interval over sequences; schedules add the
transition ratio and the worst segment's prompt adherence.

Config (TOML, every part optional; no file = the suite's sequences on the embedded demo model)::

    [ablation]
    frames = 24                         # default length of every sequence
    variants = ["per_frame", "full"]    # a subset of VARIANTS (default: all), in table order

    [[sequences]]                       # one table per sequence (default: DEFAULT_SEQUENCES)
    name = "walk"                       # folder / row name (default: the motion)
    motion = "walk"                     # vidtune.demo.synthetic.motions: walk, run, wave, jump, dance, ...
    prompt = "a blue figure walking on a beach at sunset"   # a sentence of the synthetic grammar
    seed = 11                           # scene + motion seed (offset past the training seeds) and
                                        # the seed of every stage
    frames = 24                         # optional, overrides [ablation] frames

    [run.sampling]                      # optional: run-config fields over the demo presets, with
    steps = 20                          # the sections and keys of a run TOML ([run.model] path =
                                        # "..." picks another model; relative to this file)

Command-line `--set section.key=value` overrides apply to the base run config after the file,
and each variant's own settings (e.g. t2v_zero's clip length) apply last.

Outputs in OUT: ablation.json (every number per sequence, mean and std over sequences),
ablation.md (variants x metrics, mean [95% bootstrap interval]), metrics.png (bar charts), flicker_curves.png,
sequences/<name>/grid.mp4 (every variant tiled and labelled), report.html (all of it embedded).
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vidtune import atomic
from vidtune import config as C
from vidtune.errors import VidtuneError

# --------------------------------------------------------------------------------------------
# What is compared
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: where its frames come from and what it changes.

    source: "stage1" | "stage2" | "stage4" | "gt"; overrides: run-config `section.key=value` over
    the base config (stage1 / stage4 variants); unet: "base" | "tuned" (stage-4 variants);
    links: the base stages its stage-4 run folder gets; seams: it has co-denoising clips (seam_ratio
    on its own windows; every other variant is scored at the base config's windows, as a control).
    """

    name: str
    description: str
    source: str
    overrides: tuple[str, ...] = ()
    unet: str = "base"
    links: tuple[int, ...] = ()
    seams: bool = False
    own_folder: bool = False


def _variants() -> dict[str, Variant]:
    v = [
        Variant("per_frame", "stage 1 only, independent noise per frame", "stage1",
                overrides=("separate.noise_mode=independent",), own_folder=True),
        Variant("per_frame_shared_noise", "stage 1 only, one shared initial noise", "stage1",
                overrides=("separate.noise_mode=shared",), own_folder=True),
        Variant("t2v_zero", "base UNet, whole video as one clip, first-frame attention, shared noise", "stage4",
                overrides=("codenoise.attention=first", "codenoise.init=noise", "codenoise.noise_mode=shared",
                           "codenoise.background=free",
                           "codenoise.weighting=uniform", "codenoise.fg_gain=0.0"),  # clip_length = stride = N
                links=(1,)),
        Variant("gen_l_video", "base UNet, co-denoised clips, uniform weights, middle anchor, independent noise",
                "stage4", overrides=("codenoise.attention=middle", "codenoise.init=noise", "codenoise.background=free",
                                     "codenoise.noise_mode=independent", "codenoise.weighting=uniform",
                                     "codenoise.fg_gain=0.0"),
                links=(1,), seams=True),
        Variant("freenoise", "FreeNoise-style: base UNet, co-denoised clips, middle anchor, noise rescheduled "
                "across windows", "stage4",
                overrides=("codenoise.attention=middle", "codenoise.init=noise", "codenoise.noise_mode=rescheduled",
                           "codenoise.background=free", "codenoise.weighting=uniform", "codenoise.fg_gain=0.0"),
                links=(1,), seams=True),
        Variant("stages_1_2", "stage-2 frames (background fusion at step t)", "stage2"),
        Variant("stages_1_2_sdedit", "base UNet re-denoising the stage-2 frames with full's init (no tuning, "
                "clips of 1 frame, no cross-frame attention): isolates stage 3", "stage4",
                overrides=("codenoise.clip_length=1", "codenoise.stride=1", "codenoise.attention=none",
                           "codenoise.fg_gain=0.0", "codenoise.init=fused"),
                links=(1, 2)),
        Variant("stages_1_2_3", "tuned UNet, clips of 1 frame, no cross-frame attention, full's init", "stage4",
                overrides=("codenoise.clip_length=1", "codenoise.stride=1", "codenoise.attention=none",
                           "codenoise.fg_gain=0.0"),
                unet="tuned", links=(1, 2, 3)),
        Variant("full", "all four stages (demo presets)", "stage4", unet="tuned", links=(1, 2, 3), seams=True),
        Variant("full_global", "full with one global anchor frame", "stage4",
                overrides=("codenoise.attention=global",), unet="tuned", links=(1, 2, 3), seams=True),
        Variant("ground_truth", "the rendered video (ceiling)", "gt"),
    ]
    return {x.name: x for x in v}


VARIANTS: dict[str, Variant] = _variants()


@dataclass(frozen=True)
class SequenceSpec:
    """One synthetic sequence: motion, grammar prompt, seed (scene, motion and every stage), length."""

    name: str
    motion: str
    prompt: str
    seed: int
    frames: int = 24
    prompts: tuple[tuple[int, str], ...] = ()  # a prompt schedule (first frame, prompt); () = `prompt` throughout

    @property
    def schedule(self) -> dict[int, str] | None:
        return dict(self.prompts) if self.prompts else None


# Motions, prompts and seeds the demo model never saw as sequences (it trains on single frames
# of small seeds; these seeds are offset past them, see demo.UNSEEN_SEED_OFFSET).
DEFAULT_SEQUENCES: tuple[SequenceSpec, ...] = (
    SequenceSpec("walk", "walk", "a blue figure walking on a beach at sunset", 11),
    SequenceSpec("dance", "dance", "a green figure dancing in a city street during the day", 12),
    SequenceSpec("wave", "wave", "a yellow figure waving on a grassy meadow during the day", 13),
)


def _scheduled(motion: str, colour: str, parts: Sequence[tuple[int, str, str]]) -> tuple[tuple[int, str], ...]:
    word = {"walk": "walking", "run": "running", "wave": "waving", "jump": "jumping", "dance": "dancing",
            "squat": "squatting", "turn": "turning"}[motion]
    return tuple((k, f"a {colour} figure {word} {scene} {time}") for k, scene, time in parts)


# The benchmark (`vidtune ablate --suite benchmark`): every motion, scene and time of day, 24 and 96
# frames, three prompt schedules (2-3 segments; the 96-frame one is also the long video). Seeds 101-112, outside the demo's training range and the default
# ablation's. The same comparison is also run on sequences kept outside the repository.
BENCHMARK_SEQUENCES: tuple[SequenceSpec, ...] = (
    SequenceSpec("walk_beach", "walk", "a blue figure walking on a beach at sunset", 101),
    SequenceSpec("run_meadow", "run", "a pink figure running on a grassy meadow during the day", 102),
    SequenceSpec("wave_city", "wave", "a yellow figure waving in a city street at night", 103),
    SequenceSpec("jump_desert", "jump", "a green figure jumping in a desert during the day", 104),
    SequenceSpec("dance_snow", "dance", "a purple figure dancing on a snowy field at sunset", 105),
    SequenceSpec("squat_beach", "squat", "a red figure squatting on a beach during the day", 106),
    SequenceSpec("turn_meadow", "turn", "a blue figure turning on a grassy meadow at night", 107),
    SequenceSpec("walk_city", "walk", "a red figure walking in a city street during the day", 108),
    SequenceSpec("dance_desert", "dance", "a green figure dancing in a desert at sunset", 109),
    SequenceSpec("schedule_walk", "walk", "a red figure walking on a snowy field during the day", 110, 24,
                 _scheduled("walk", "red", [(0, "on a snowy field", "during the day"),
                                            (12, "on a beach", "at sunset")])),
    SequenceSpec("schedule_run_3", "run", "a yellow figure running on a grassy meadow during the day", 111, 24,
                 _scheduled("run", "yellow", [(0, "on a grassy meadow", "during the day"),
                                              (8, "in a desert", "at sunset"), (16, "in a city street", "at night")])),
    SequenceSpec("schedule_wave_96", "wave", "a pink figure waving on a beach during the day", 112, 96,
                 _scheduled("wave", "pink", [(0, "on a beach", "during the day"),
                                             (48, "on a snowy field", "at night")])),
)
BENCHMARK_STEPS = 16  # every variant alike: the demo presets' 20 steps do not fit 20 minutes on 2 CPU cores
BENCHMARK_VARIANTS: tuple[str, ...] = ("per_frame", "per_frame_shared_noise", "t2v_zero", "gen_l_video", "freenoise",
                                       "stages_1_2", "full", "ground_truth")


@dataclass(frozen=True)
class AblationSpec:
    """What `run_ablation` runs: the sequences, the variants (table order) and the base run-config
    fields over the demo presets (nested {section: {key: value}})."""

    sequences: tuple[SequenceSpec, ...] = DEFAULT_SEQUENCES
    variants: tuple[str, ...] = tuple(VARIANTS)
    run: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"


# The table: (metric key in the results, column header, multiplier for display, "lower"/"higher" is better).
TABLE_METRICS: list[tuple[str, str, float, str]] = [
    ("flicker.mean_abs_diff", "flicker", 1.0, "lower"),
    ("flicker.mean_abs_diff_bg", "flicker bg", 1.0, "lower"),
    ("warp_err_dis.all", "warp all x1e3", 1e3, "lower"),
    ("warp_err_dis.fg", "warp fg x1e3", 1e3, "lower"),
    ("warp_err_dis.bg", "warp bg x1e3", 1e3, "lower"),
    ("bg_stability.std", "bg std", 1.0, "lower"),
    ("drift_bg.mean", "drift bg", 1.0, "lower"),
    ("drift_fg_color.mean", "drift fg colour", 1.0, "lower"),
    ("seam_ratio.ratio", "seam ratio", 1.0, "1 = seamless"),
    ("motion_epe.epe", "motion EPE px", 1.0, "lower"),
    ("transition.ratio", "transition ratio", 1.0, "lower (schedules)"),
    ("segment_adherence.min", "segment adh. min", 1.0, "higher (schedules)"),
]
SCHEDULE_METRICS = ("transition.ratio", "segment_adherence.min")  # measured on prompt-schedule sequences only
PLOT_METRICS = ["flicker.mean_abs_diff", "flicker.mean_abs_diff_bg", "warp_err_dis.all", "bg_stability.std",
                "motion_epe.epe"]


# --------------------------------------------------------------------------------------------
# The config file
# --------------------------------------------------------------------------------------------


def _check_keys(table: dict[str, Any], valid: Sequence[str], where: str) -> None:
    unknown = [k for k in table if k not in valid]
    if unknown:
        raise VidtuneError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")


def _typed(value: Any, kind: type, key: str, where: str) -> Any:
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise VidtuneError(f"{where}: {key} must be an integer, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise VidtuneError(f"{where}: {key} must be a string, got {value!r}")
    return value


def parse_spec(data: dict[str, Any], source: str = "config", base: Path | None = None) -> AblationSpec:
    """An `AblationSpec` from the parsed TOML (see the module docstring); errors name the key and the fix."""
    from vidtune.demo.synthetic.grammar import parse_prompt
    from vidtune.demo.synthetic.motions import MOTIONS

    _check_keys(data, ["ablation", "sequences", "run"], source)
    head = data.get("ablation", {})
    _check_keys(head, ["frames", "variants"], f"{source}: [ablation]")
    frames = _typed(head.get("frames", 24), int, "ablation.frames", source)
    variants = head.get("variants", list(VARIANTS))
    if not isinstance(variants, list) or not variants:
        raise VidtuneError(f"{source}: ablation.variants must be a non-empty list of names from {', '.join(VARIANTS)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise VidtuneError(f"{source}: ablation.variants: unknown variant {bad[0]!r}; "
                           f"choose from {', '.join(VARIANTS)}")
    sequences = []
    for i, table in enumerate(data.get("sequences", [])):
        where = f"{source}: [[sequences]] #{i + 1}"
        _check_keys(table, ["name", "motion", "prompt", "seed", "frames"], where)
        missing = [k for k in ("motion", "prompt") if k not in table]
        if missing:
            raise VidtuneError(f"{where}: missing {missing[0]!r}; give motion, prompt (and seed)")
        motion = _typed(table["motion"], str, "motion", where)
        if motion not in MOTIONS:
            raise VidtuneError(f"{where}: unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
        prompt = _typed(table["prompt"], str, "prompt", where)
        parse_prompt(prompt)  # a clear error when the prompt is outside the synthetic grammar
        n = _typed(table.get("frames", frames), int, "frames", where)
        if n < 2:
            raise VidtuneError(f"{where}: frames must be >= 2 (consistency needs frame pairs), got {n}")
        sequences.append(SequenceSpec(_typed(table.get("name", motion), str, "name", where), motion, prompt,
                                      _typed(table.get("seed", i), int, "seed", where), n))
    names = [s.name for s in sequences]
    if len(set(names)) != len(names):
        raise VidtuneError(f"{source}: two sequences share a name ({names}); give each a distinct name")
    run = data.get("run", {})
    if not isinstance(run, dict) or not all(isinstance(v, dict) for v in run.values()):
        raise VidtuneError(f"{source}: [run] must hold run-config sections, e.g. [run.sampling] steps = 20")
    C.from_dict(run, source=f"{source} [run]")  # unknown sections / keys / types fail here
    if base is not None and "path" in run.get("model", {}):
        path = Path(run["model"]["path"])
        if not path.is_absolute() and (base / path).exists():
            run = {**run, "model": {**run["model"], "path": str((base / path).resolve())}}
    if not sequences:
        sequences = [replace(s, frames=frames) for s in DEFAULT_SEQUENCES]
    return AblationSpec(sequences=tuple(sequences), variants=tuple(variants), run=run, source=source)


SUITES: dict[str, Callable[[], "AblationSpec"]] = {
    "default": lambda: AblationSpec(),
    "benchmark": lambda: AblationSpec(sequences=BENCHMARK_SEQUENCES, variants=BENCHMARK_VARIANTS,
                                      run={"sampling": {"steps": BENCHMARK_STEPS}}, source="benchmark"),
}


def load_spec(path: str | Path | None, suite: str = "default") -> AblationSpec:
    """Read the ablation TOML (None = the suite: `default`, the three sequences, or `benchmark`)."""
    if path is None:
        if suite not in SUITES:
            raise VidtuneError(f"--suite {suite!r}: choose one of {', '.join(SUITES)}")
        return SUITES[suite]()
    p = Path(path)
    data = C.read_toml(p, what="ablation config", fix="omit it for the defaults")
    return parse_spec(data, source=str(p), base=p.parent)


def base_config(spec: AblationSpec, overrides: Sequence[str]) -> C.RunConfig:
    """Demo presets (and the demo model unless [run.model] path is given), then [run.*], then --set."""
    from vidtune.demo.command import DEMO_OVERRIDES

    cfg = C.apply_overrides(C.RunConfig(), list(DEMO_OVERRIDES))
    if "path" not in spec.run.get("model", {}):
        from vidtune.demo.command import demo_model_path

        cfg = replace(cfg, model=replace(cfg.model, path=str(demo_model_path())))
    data = C.to_dict(cfg)
    for section, values in spec.run.items():
        data[section].update(values)
    return C.apply_overrides(C.from_dict(data, source=f"{spec.source} [run]"), list(overrides))


def sequence_config(base: C.RunConfig, seq: SequenceSpec, poses: Path) -> C.RunConfig:
    """The base config for one sequence: its poses, prompt and seed (every stage's seed)."""
    cfg = replace(base, inputs=replace(base.inputs, poses=str(poses), prompt=seq.prompt, frames=0,
                                       prompts={str(k): p for k, p in seq.prompts}, clip_prompts=[]))
    return C.apply_overrides(cfg, C.seed_overrides(seq.seed))


def variant_config(cfg: C.RunConfig, variant: Variant, num_frames: int) -> C.RunConfig:
    """The sequence config with the variant's own settings (t2v_zero: one clip of N frames)."""
    extra = list(variant.overrides)
    if variant.name == "t2v_zero":
        extra += [f"codenoise.clip_length={num_frames}", f"codenoise.stride={num_frames}"]
    return C.apply_overrides(cfg, extra) if extra else cfg


# --------------------------------------------------------------------------------------------
# Running the variants of one sequence
# --------------------------------------------------------------------------------------------


def write_source(out: Path, seq: SequenceSpec, height: int, width: int, fps: float, transition: int = 0):
    """Render the ground truth of `seq` into out/source/: poses/ (+ keypoints.npz), gt_frames/, gt_masks/."""
    from vidtune.demo import command as demo

    return demo.write_source(out, seq.motion, seq.frames, seq.prompt, seq.seed, height=height, width=width, fps=fps,
                             schedule=seq.schedule, transition=transition)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of `src` into `dst` (a copy where the file system refuses links)."""
    for path in src.rglob("*"):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def link_base(base: Path, folder: Path, stages: Sequence[int]) -> None:
    """Give a variant's run folder the base's inputs/ and `stages` (linked); relink when the base changed.

    The variant's own stage-4 result is invalidated on a relink (its config hash cannot see that
    the base stages were recomputed)."""
    signature = {"stages": list(stages),
                 **{str(k): (base / f"stage{k}" / "done.json").read_text() for k in stages}}
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


def fresh_unet_copy(components):
    """Components sharing everything but a private copy of the UNet (stage 3 tunes it in place)."""
    return replace(components, unet=copy.deepcopy(components.unet),
                   sources={k: v for k, v in components.sources.items() if k != "tuned"})


@dataclass
class SequenceRun:
    """Where one sequence's variants put their frames, and what each cost (seconds of its stages)."""

    spec: SequenceSpec
    root: Path
    truth: Any
    frames: dict[str, Path] = field(default_factory=dict)
    windows: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    unet: dict[str, str] = field(default_factory=dict)
    transition: int = 0  # the schedule's transition width (codenoise.transition) the truth was rendered with


def _stage_seconds(folder: Path, k: int) -> float:
    try:
        return float(json.loads((folder / f"stage{k}" / "done.json").read_text()).get("seconds", 0.0))
    except (OSError, json.JSONDecodeError):
        return 0.0


def run_sequence(seq: SequenceSpec, base_cfg: C.RunConfig, variants: Sequence[str], root: Path, components,
                 progress: bool = True, log: Callable[[str], None] = print) -> SequenceRun:
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
    pipeline.run(cfg, base_dir, stages=sorted(needs), progress=progress, components=components, log=quiet)
    for v in chosen:
        same_as_base = C.stage_hash(variant_config(cfg, v, seq.frames), 1) == C.stage_hash(cfg, 1)
        if v.source == "stage1" and v.own_folder and not same_as_base:
            folder = root / v.name
            log(f"vidtune ablate [{seq.name}]: {v.name} (stage 1) in {folder}")
            pipeline.run(variant_config(cfg, v, seq.frames), folder, stages=[1], progress=progress,
                         components=components, log=quiet)
            result.frames[v.name] = folder / "stage1" / "frames"
            result.seconds[v.name] = _stage_seconds(folder, 1)
        elif v.source in ("stage1", "stage2"):
            k = 1 if v.source == "stage1" else 2
            result.frames[v.name] = base_dir / f"stage{k}" / "frames"
            result.seconds[v.name] = sum(_stage_seconds(base_dir, i) for i in range(1, k + 1))
        elif v.source == "gt":
            result.frames[v.name] = root / "source" / "gt_frames"
            result.seconds[v.name] = 0.0

    def run_stage4(v: Variant, comps) -> None:
        vcfg = variant_config(cfg, v, seq.frames)
        folder = root / v.name
        links = tuple(v.links) + ((2,) if vcfg.codenoise.init == "fused" and 2 not in v.links else ())
        link_base(base_dir, folder, sorted(links))
        log(f"vidtune ablate [{seq.name}]: {v.name} (stage 4, {v.unet} UNet) in {folder}")
        pipeline.run(vcfg, folder, stages=[4], progress=progress, components=comps, log=quiet)
        done = json.loads((folder / "stage4" / "done.json").read_text())
        if done.get("unet") != v.unet:
            raise VidtuneError(f"{folder}: variant {v.name} ran on the {done.get('unet')} UNet, expected {v.unet}")
        result.frames[v.name] = folder / "stage4" / "frames"
        result.unet[v.name] = done["unet"]
        result.seconds[v.name] = sum(_stage_seconds(base_dir, k) for k in links) + _stage_seconds(folder, 4)
        if v.seams:
            result.windows[v.name] = pipeline.windows_for(vcfg)(seq.frames)

    for v in stage4:
        if v.unet == "base":
            run_stage4(v, components)
    if tuned:
        tuning = fresh_unet_copy(components)
        log(f"vidtune ablate [{seq.name}]: stage 3 (combined tuning) in {base_dir}")
        pipeline.run(cfg, base_dir, stages=[3], progress=progress, components=tuning, log=quiet)
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
# Metrics
# --------------------------------------------------------------------------------------------


def _flatten(value: Any, prefix: str, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    elif isinstance(value, (bool, np.bool_)):
        return
    elif isinstance(value, (int, float, np.integer, np.floating)):
        out[prefix] = float(value)


def adherence_metrics(frames: np.ndarray, truth) -> dict[str, float]:
    """Pose adherence (figure-mask IoU vs the ground truth) and prompt adherence, flattened to
    `pose_adherence.<key>` / `prompt_adherence.<key>`; {} while vidtune.demo.synthetic.adherence is absent."""
    from vidtune.evaluation import metrics as M

    out: dict[str, float] = {}
    for name in ("pose_adherence", "prompt_adherence"):
        try:
            value = M.METRICS[name](list(frames), truth)
        except ImportError:
            continue
        value = value.get("metrics", value) if isinstance(value, dict) else value
        _flatten(value, name, out)
    return out


SEGMENT_KEYS = ("flicker.", "warp_err_dis.", "bg_stability.", "drift_bg.", "drift_fg_color.", "motion_epe.")


def segment_cores(starts: Sequence[int], num_frames: int, transition: int) -> list[tuple[int, int]]:
    """Each prompt segment without the frames of its transitions: the frames one prompt alone holds
    (`vidtune.segments.transition_frames`), the same frames for every variant."""
    from vidtune.segments import transition_frames

    bounds = list(starts) + [num_frames]
    segments = list(zip(bounds[:-1], bounds[1:]))
    between = transition_frames(num_frames, segments, transition).tolist()
    cores = []
    for s, e in segments:
        held = [f for f in range(s, e) if not between[f]]
        if held:
            cores.append((held[0], held[-1] + 1))
    return cores


def segment_consistency(folder: Path, masks: Path, poses: Path, starts: Sequence[int], num_frames: int,
                        transition: int = 0) -> dict:
    """A prompt schedule's consistency metrics measured within each segment's core (`segment_cores`:
    a scene meant to change at a boundary, or cross-fading into the next, is not flicker or drift)
    and averaged over the segments, weighted by their frame pairs. The frame files are hard-linked
    (copied where links fail) into one folder per segment."""
    import tempfile

    from vidtune.evaluation.evaluate import evaluate_video

    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for s, e in segment_cores(starts, num_frames, transition):
            if e - s < 2:
                continue
            parts = {}
            for kind, src in (("frames", folder), ("masks", masks), ("poses", poses)):
                files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg"))[s:e]
                dst = Path(tmp) / f"{s}_{kind}"
                dst.mkdir()
                for f in files:
                    try:
                        os.link(f, dst / f.name)
                    except OSError:
                        shutil.copy2(f, dst / f.name)
                parts[kind] = str(dst)
            flat: dict[str, float] = {}
            _flatten(evaluate_video(parts["frames"], masks=parts["masks"], reference=parts["poses"])["metrics"], "", flat)
            for k, v in flat.items():
                if k.startswith(SEGMENT_KEYS) and math.isfinite(v):
                    sums[k] = sums.get(k, 0.0) + v * (e - s - 1)
                    weights[k] = weights.get(k, 0.0) + (e - s - 1)
    return {k: sums[k] / weights[k] for k in sums}


def transition_ratio(curve: Sequence[float], boundaries: Sequence[int], width: int) -> float:
    """The largest frame-to-frame change at a schedule boundary against the median within segments.

    Pair p is frames (p, p + 1). A boundary b (a segment's first frame) owns the pairs within
    max(1, width / 2) frames of it; the ratio is max |dI| over those pairs / median |dI| over
    every other pair. A cut gives a ratio far above 1; a transition over `width` frames about 1.
    """
    curve = np.asarray(curve, dtype=np.float64)
    half = max(1.0, width / 2.0)
    centres = np.arange(len(curve)) + 1.0  # pair p sits between frames p and p + 1
    near = np.zeros(len(curve), bool)
    for b in boundaries:
        near |= np.abs(centres - b) <= half
    if not near.any() or near.all():
        return float("nan")
    return float(curve[near].max() / max(np.median(curve[~near]), 1e-6))


def schedule_metrics(frames: np.ndarray, truth, starts: Sequence[int], width: int) -> dict[str, float]:
    """A prompt schedule's metrics: `transition.ratio` (`transition_ratio`, over the truth's transition
    width) and `segment_adherence.min` (the worst segment's worst accuracy of colour, scene and time,
    judged on the frames outside the transitions)."""
    from vidtune.demo.synthetic import adherence

    attrs = truth.frame_attrs
    out = {"transition.ratio": transition_ratio(flicker_curve(frames), starts[1:], width)}
    bounds = list(starts) + [len(frames)]
    worst = 1.0
    for s, e in zip(bounds[:-1], bounds[1:]):
        judged = [adherence.frame_adherence(frames[i], truth.masks[i], attrs[i], gt_clothes=truth.clothes_masks[i])
                  for i in range(s, e) if attrs[i] is not None]
        if judged:
            summary = adherence.summarize(judged)
            worst = min(worst, summary["colour_accuracy"], summary["scene_accuracy"], summary["time_accuracy"])
    out["segment_adherence.min"] = worst
    return out


def mask_iou(masks: Path, truth: Path) -> float | None:
    """Mean IoU of stage 1's foreground masks (the segmenter's) with the ground-truth figure masks."""
    from vidtune.video import read_frames

    if not masks.is_dir():
        return None
    ious = [float(((a[..., 0] > 127) & (b[..., 0] > 127)).sum() / max(1, ((a[..., 0] > 127) | (b[..., 0] > 127)).sum()))
            for a, b in zip(read_frames(masks), read_frames(truth))]
    return float(np.mean(ious)) if ious else None


def flicker_curve(frames: np.ndarray) -> list[float]:
    """Mean |dI| (0-255) of each consecutive frame pair: (N,) frames -> N - 1 values."""
    x = frames.astype(np.int16)
    return [float(v) for v in np.abs(x[1:] - x[:-1]).mean(axis=(1, 2, 3))]


def score_sequence(run: SequenceRun) -> tuple[dict[str, dict[str, float]], dict[str, list[float]]]:
    """Every metric of every variant of one sequence (flat `metric.key` dicts) and the flicker curves."""
    from vidtune.evaluation.evaluate import evaluate_video
    from vidtune.video import read_frames

    masks, poses = run.root / "source" / "gt_masks", run.root / "source" / "poses"
    metrics, curves = {}, {}
    for name, folder in run.frames.items():
        result = evaluate_video(str(folder), masks=str(masks), reference=str(poses), windows=run.windows.get(name))
        flat: dict[str, float] = {}
        _flatten(result["metrics"], "", flat)
        if run.spec.prompts:  # consistency within each prompt's segment; the changes between them: transition.ratio
            flat.update(segment_consistency(folder, masks, poses, [k for k, _ in run.spec.prompts], run.spec.frames,
                                            run.transition))
        frames = np.stack(list(read_frames(folder)))
        if len(frames) != run.spec.frames:
            raise VidtuneError(f"{folder}: {len(frames)} frames, expected {run.spec.frames}")
        flat.update(adherence_metrics(frames, run.truth))
        if run.spec.prompts:
            flat.update(schedule_metrics(frames, run.truth, [k for k, _ in run.spec.prompts], run.transition))
        flat["seconds"] = run.seconds.get(name, 0.0)
        metrics[name] = {k: (v if math.isfinite(v) else None) for k, v in flat.items()}
        curves[name] = flicker_curve(frames)
    return metrics, curves


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 4000,
                       seed: int = 0) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean over sequences (resampled with replacement, seeded)."""
    if not values:
        return None, None
    x = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def summarize(per_sequence: dict[str, dict[str, dict[str, float | None]]], variants: Sequence[str]) -> dict:
    """{variant: {metric: {"mean", "std", "n"}}} over sequences (None values left out; std ddof 0)."""
    out: dict[str, dict[str, dict[str, float | int | None]]] = {}
    for v in variants:
        keys = sorted({k for seq in per_sequence.values() for k in seq.get(v, {})})
        out[v] = {}
        for k in keys:
            vals = [seq[v][k] for seq in per_sequence.values() if seq.get(v, {}).get(k) is not None]
            lo, hi = bootstrap_interval(vals)
            out[v][k] = {"mean": float(np.mean(vals)) if vals else None,
                         "std": float(np.std(vals)) if vals else None, "n": len(vals), "lo": lo, "hi": hi}
    return out


def table_columns(summary: dict) -> list[tuple[str, str, float, str]]:
    """TABLE_METRICS plus the adherence keys that were measured, plus the cost."""
    keys = {k for v in summary.values() for k in v}
    cols = [c for c in TABLE_METRICS if c[0] in keys]
    for k in sorted(keys):
        if k.startswith(("pose_adherence.", "prompt_adherence.")):
            cols.append((k, k.replace("_adherence.", " adh. "), 1.0, "higher"))
    cols.append(("seconds", "seconds", 1.0, "cost"))
    return cols


def _cell(stat: dict | None, scale: float, spread: bool = True) -> str:
    if not stat or stat.get("mean") is None:
        return "-"
    m = stat["mean"] * scale
    text = f"{m:.3g}" if abs(m) < 100 else f"{m:.0f}"
    if spread and stat.get("n", 0) > 1 and stat.get("lo") is not None:
        text += f" [{stat['lo'] * scale:.3g}, {stat['hi'] * scale:.3g}]"
    elif spread and stat.get("n", 0) > 1:
        s = stat["std"] * scale
        text += f" ± {s:.2g}" if abs(s) < 100 else f" ± {s:.0f}"
    return text


def markdown_table(summary: dict, variants: Sequence[str]) -> str:
    """Variants x metrics, `mean [95% bootstrap interval]` over sequences."""
    cols = table_columns(summary)
    lines = ["| variant | " + " | ".join(c[1] for c in cols) + " |",
             "|---|" + "---:|" * len(cols),
             "| *better* | " + " | ".join(c[3] for c in cols) + " |"]
    for v in variants:
        lines.append(f"| {v} | " + " | ".join(_cell(summary[v].get(c[0]), c[2]) for c in cols) + " |")
    return "\n".join(lines)


def per_sequence_table(per_sequence: dict, variants: Sequence[str], key: str, scale: float = 1.0) -> str:
    """One metric: variants x sequences."""
    names = list(per_sequence)
    lines = ["| variant | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for v in variants:
        cells = [_cell({"mean": per_sequence[s].get(v, {}).get(key), "n": 1}, scale) for s in names]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots, grid videos, report
# --------------------------------------------------------------------------------------------


def plot_bars(summary: dict, variants: Sequence[str], path: Path) -> Path:
    """Bar charts of the key metrics (mean, std over sequences as error bars); PNG."""
    from matplotlib.figure import Figure

    keys = [k for k in PLOT_METRICS if any(summary[v].get(k, {}).get("mean") is not None for v in variants)]
    keys += sorted({k for v in variants for k in summary[v] if k.startswith("pose_adherence.")})[:1]
    keys += sorted({k for v in variants for k in summary[v] if k.startswith("prompt_adherence.")})
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colours = [f"C{i % 10}" for i in range(len(variants))]
    for ax, key in zip(axes, keys):
        means = [summary[v].get(key, {}).get("mean") for v in variants]
        stds = [summary[v].get(key, {}).get("std") or 0.0 for v in variants]
        x = np.arange(len(variants))
        ax.bar(x, [m if m is not None else 0.0 for m in means], yerr=stds, color=colours, capsize=3)
        ax.set_xticks(x, variants, rotation=45, ha="right", fontsize=8)
        ax.set_title(key, fontsize=10)
    for ax in axes[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_flicker_curves(curves: dict[str, dict[str, list[float]]], variants: Sequence[str], path: Path) -> Path:
    """Per sequence: mean |dI| of every frame pair, one line per variant; PNG."""
    from matplotlib.figure import Figure

    names = list(curves)
    fig = Figure(figsize=(6.5 * len(names), 4.2), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, seq in zip(axes, names):
        for i, v in enumerate(variants):
            if v in curves[seq]:
                style = "--" if v == "ground_truth" else "-"
                ax.plot(range(len(curves[seq][v])), curves[seq][v], style, color=f"C{i % 10}", lw=1.3, label=v)
        ax.set_title(seq)
        ax.set_xlabel("frame pair t (frames t, t+1)")
        ax.set_ylabel("mean |dI| (0-255)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _label(panel: np.ndarray, text: str, bar: int) -> np.ndarray:
    """A white label bar with `text` above an RGB panel."""
    top = np.full((bar, panel.shape[1], 3), 255, np.uint8)
    scale = max(0.3, min(0.5, panel.shape[1] / 420))
    cv2.putText(top, text, (3, bar - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([top, panel], axis=0)


def grid_video(out_path: Path, panels: list[tuple[str, Path]], fps: float, scale: int = 4, cols: int = 5) -> Path:
    """Every variant's frames tiled (rows of `cols`), each upscaled (nearest) and labelled; mp4."""
    from vidtune.video import VideoWriter, read_frames

    streams = [read_frames(p) for _, p in panels]
    rows = math.ceil(len(panels) / cols)
    with VideoWriter(out_path, fps=fps) as writer:
        for frames in zip(*streams):
            tiles = [_label(cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST), name, 20)
                     for (name, _), f in zip(panels, frames)]
            blank = np.zeros_like(tiles[0])
            tiles += [blank] * (rows * cols - len(tiles))
            grid = np.concatenate([np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0)
            writer.write(grid)
    return out_path


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


def check_model(root: Path, fingerprint: str) -> None:
    """Start over (remove OUT/sequences) when OUT was made with other weights; record the fingerprint."""
    marker = root / "model.json"
    if marker.is_file() and (root / "sequences").is_dir():
        old = json.loads(marker.read_text()).get("fingerprint")
        if old != fingerprint:
            print(f"vidtune ablate: {root} was made with other model weights ({old} -> {fingerprint}); "
                  f"recomputing every sequence")
            shutil.rmtree(root / "sequences")
    atomic.write_json(marker, {"fingerprint": fingerprint})


def stage_compute_seconds(root: Path, variants: Sequence[str]) -> float:
    """Seconds every stage of every sequence took when it was computed (each stage once, linked copies
    not counted): the cost of the whole ablation, also when this invocation resumed most of it."""
    total = 0.0
    for seq in sorted(p for p in (root / "sequences").iterdir() if p.is_dir()):
        total += sum(_stage_seconds(seq / "base", k) for k in (1, 2, 3))
        for v in variants:
            if VARIANTS[v].own_folder:
                total += _stage_seconds(seq / v, 1)
            elif VARIANTS[v].source == "stage4":
                total += _stage_seconds(seq / v, 4)
    return total


def _machine() -> str:
    from vidtune.evaluation.report import cpu_name

    cpu = cpu_name()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        threads = torch.get_num_threads()
    except Exception:  # noqa: BLE001 - a description only
        gpu, threads = None, None
    return (f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores visible"
            f"{f', torch threads {threads}' if threads else ''}{f', GPU {gpu}' if gpu else ', no GPU'}")


def _command(config: str | None, out: str, overrides: Sequence[str], suite: str = "default") -> str:
    parts = ["vidtune", "ablate"] + ([config] if config else []) + (["--suite", suite] if suite != "default" else [])
    parts += ["--out", out]
    for o in overrides:
        parts += ["--set", o]
    return " ".join(parts)


def _variant_settings(name: str) -> str:
    v = VARIANTS[name]
    bits = list(v.overrides) + (["codenoise.clip_length=N", "codenoise.stride=N"] if name == "t2v_zero" else [])
    unet = f"{v.unet} UNet; " if v.source == "stage4" else ""
    return unet + (", ".join(f"`{b}`" for b in bits) if bits else "base config")


PAIRED_METRICS = [("flicker.mean_abs_diff", "flicker", 1.0), ("flicker.mean_abs_diff_bg", "flicker bg", 1.0),
                  ("warp_err_dis.all", "warp all x1e3", 1e3), ("drift_bg.mean", "drift bg", 1.0),
                  ("bg_stability.std", "bg std", 1.0), ("pose_adherence.pose_iou", "pose IoU", 1.0)]
BASELINES = ("per_frame", "per_frame_shared_noise", "t2v_zero", "gen_l_video", "freenoise")


def paired_table(per_sequence: dict, variants: Sequence[str], target: str = "full") -> str:
    """Per-sequence differences target - baseline: mean [95% bootstrap interval] per metric and baseline."""
    bases = [b for b in BASELINES if b in variants]
    if target not in variants or not bases:
        return ""
    lines = ["| full - | " + " | ".join(t for _, t, _ in PAIRED_METRICS) + " |", "|---|" + "---:|" * len(PAIRED_METRICS)]
    for b in bases:
        cells = []
        for key, _, scale in PAIRED_METRICS:
            d = [seq[target][key] - seq[b][key] for seq in per_sequence.values()
                 if seq.get(target, {}).get(key) is not None and seq.get(b, {}).get(key) is not None]
            lo, hi = bootstrap_interval(d)
            cells.append("-" if not d else f"{np.mean(d) * scale:+.3g} [{lo * scale:+.3g}, {hi * scale:+.3g}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, result: dict, variants: Sequence[str]) -> Path:
    """ablation.md: how it was made, the variants, the table (mean [95% interval]), per-sequence flicker and EPE."""
    lines = [
        "# vidtune ablation",
        "",
        f"Regenerate: `{result['command']}`  ",
        f"Machine: {result['machine']}  ",
        f"Time: {result['seconds']:.0f} s wall for this invocation "
        f"({time.strftime('%Y-%m-%d', time.localtime(result['finished']))}); the stages themselves took "
        f"{result['stage_seconds']:.0f} s when computed (a resumed run skips the done ones)  ",
        f"Model: `{result['model']}` (weights fingerprint {result.get('model_fingerprint') or '-'})  ",
        f"Sequences ({len(result['sequences'])}): "
        + "; ".join(f"{s['name']}: {s['motion']}, \"{s['prompt']}\", seed {s['seed']}, {s['frames']} frames"
                    for s in result["sequences"]),
        "",
        "## Variants",
        "",
        "| variant | what | settings over the base config |",
        "|---|---|---|",
    ]
    lines += [f"| {v} | {VARIANTS[v].description} | {_variant_settings(v)} |" for v in variants]
    lines += [
        "",
        "## Results (mean [95% bootstrap interval] over sequences)",
        "",
        "Metrics on the 64x64 frames (design §6): flicker = mean |dI| of consecutive frames (0-255), whole "
        "frame and ground-truth background; warp = DIS-flow warping error (squared, colours in [0, 1], x1000); "
        "bg std = per-pixel temporal std of the background; drift bg = mean |I_t - I_0| over the background; "
        "drift fg colour = foreground colour-histogram distance to frame 0; seam ratio = |dI| of the frame "
        "pairs across the co-denoising clip boundaries / of the other pairs (for the variants without those "
        "clips, a control: what the content's own motion gives at the same pairs); motion EPE = flow difference to the pose images' "
        "flow on the figure (px); adherence from vidtune.demo.synthetic.adherence; seconds = the stages the "
        "variant needs (shared stages counted in each).",
        "",
        markdown_table(result["summary"], variants),
        "",
        "### Flicker per sequence (mean |dI|)",
        "",
        per_sequence_table(result["per_sequence"], variants, "flicker.mean_abs_diff"),
        "",
        "### Motion EPE per sequence (px)",
        "",
        per_sequence_table(result["per_sequence"], variants, "motion_epe.epe"),
        "",
    ]
    pose_keys = sorted({k for v in result["summary"].values() for k in v if k.startswith("pose_adherence.")})
    if pose_keys:
        lines += [f"### {pose_keys[0]} per sequence", "", per_sequence_table(result["per_sequence"], variants,
                                                                              pose_keys[0]), ""]
    paired = paired_table(result["per_sequence"], variants)
    if paired:
        lines += ["### full against each baseline, sequence by sequence", "",
                  "Mean of (full - baseline) over the sequences with its 95% bootstrap interval (sequences "
                  "resampled together): an interval below 0 is a consistent gain, whatever the spread between "
                  "sequences that the intervals of the table above include.", "", paired, ""]
    ious = {k: v for k, v in result.get("mask_iou", {}).items() if v is not None}
    if ious:
        lines += [f"Segmenter (stage 1's masks against the ground-truth figure masks): mean IoU "
                  f"{np.mean(list(ious.values())):.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in ious.items()) + ")",
                  ""]
    lines += ["Plots: `metrics.png` (bars: mean, std over sequences), `flicker_curves.png` (mean |dI| per frame "
              "pair). Videos: `sequences/<name>/grid.mp4`. Everything: `report.html`.", ""]
    atomic.write_text(path, "\n".join(lines))
    return path


def write_html(path: Path, result: dict, variants: Sequence[str], images: list[tuple[str, Path]],
               videos: list[tuple[str, Path]]) -> Path:
    from vidtune.evaluation.report import table_html, write_report

    cols = table_columns(result["summary"])
    rows = [[v] + [_cell(result["summary"][v].get(c[0]), c[2]) for c in cols] for v in variants]
    defs = [[v, VARIANTS[v].description, _variant_settings(v).replace("`", "")] for v in variants]
    meta = (f"<p>Regenerate: <code>{result['command']}</code><br>Machine: {result['machine']}<br>"
            f"Time: {result['seconds']:.0f} s wall (stages: {result['stage_seconds']:.0f} s when computed)<br>"
            f"Model: {result['model']}</p>")
    return write_report(path, "vidtune ablation", [
        ("How this was made", meta),
        ("Results (mean [95% bootstrap interval] over sequences; " + ", ".join(f"{c[1]}: {c[3]}" for c in cols) + ")",
         table_html(["variant"] + [c[1] for c in cols], rows)),
        ("Variants", table_html(["variant", "what", "settings"], defs)),
    ], videos=videos, images=images)


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------


def run_ablation(config: str | None, out: str = "runs/ablation", overrides: list[str] | None = None,
                 progress: bool = True, components=None, suite: str = "default") -> Path:
    """Run every variant on every sequence, score them, write ablation.json / .md, plots, grids, report.html.

    `components`: already loaded models of the configured model (else loaded here); never
    modified (stage 3 tunes a private copy of the UNet). Returns the output folder."""
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
    check_model(root, fingerprint)
    variants = list(spec.variants)
    if components is None:
        components = pipeline.load_components(cfg)
    print(f"vidtune ablate: {len(spec.sequences)} sequences x {len(variants)} variants on {cfg.model.path} "
          f"({components.device}); output in {root}")

    per_sequence, curves, videos, folders, masks_iou = {}, {}, [], {}, {}
    for seq in spec.sequences:
        seq_root = root / "sequences" / seq.name
        run = run_sequence(seq, cfg, variants, seq_root, components, progress=progress)
        per_sequence[seq.name], curves[seq.name] = score_sequence(run)
        masks_iou[seq.name] = mask_iou(seq_root / "base" / "stage1" / "masks", seq_root / "source" / "gt_masks")
        folders[seq.name] = {"frames": {v: str(p) for v, p in run.frames.items()}, "grid": str(seq_root / "grid.mp4"),
                             "unet": run.unet, "windows": run.windows}
        panels = [("pose", seq_root / "source" / "poses")] + [(v, run.frames[v]) for v in variants]
        grid = grid_video(seq_root / "grid.mp4", panels, cfg.inputs.fps or 8.0, cols=math.ceil(len(panels) / 2))
        videos.append((f"{seq.name}: {seq.prompt} ({seq.motion}, {seq.frames} frames) - "
                       + " | ".join(name for name, _ in panels), grid))
        print(f"vidtune ablate [{seq.name}]: scored; grid video {grid}")

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
        "variants": {v: {"description": VARIANTS[v].description, "settings": _variant_settings(v)} for v in variants},
        "base_config": C.to_dict(cfg),
        "per_sequence": per_sequence,
        "summary": summary,
        "mask_iou": masks_iou,
        "flicker_curves": curves,
        "outputs": folders,
    }
    atomic.write_json(root / "ablation.json", result)
    md = write_markdown(root / "ablation.md", result, variants)
    bars = plot_bars(summary, variants, root / "metrics.png")
    flick = plot_flicker_curves(curves, variants, root / "flicker_curves.png")
    report = write_html(root / "report.html", result, variants,
                        [("key metrics: mean over sequences, std as error bars (lower is more consistent; "
                          "adherence: higher is better)", bars),
                         ("mean |dI| per frame pair, per sequence and variant", flick)], videos)
    print(f"vidtune ablate: {result['seconds']:.0f}s. Table {md}; numbers {root / 'ablation.json'}; "
          f"plots {bars}, {flick}; grid videos {root / 'sequences'}/*/grid.mp4; report {report}")
    return root
