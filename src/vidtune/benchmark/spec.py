"""What an ablation compares: the variants, the sequences, the suites and the config file.

`VARIANTS` are the rows (baselines and ablations, see the package docstring), `DEFAULT_SEQUENCES`
and `BENCHMARK_SEQUENCES` the synthetic sequences of the two `SUITES`; `parse_spec` / `load_spec`
read the ablation TOML into an `AblationSpec` (errors name the key and the fix), and
`base_config` / `sequence_config` / `variant_config` derive the run config of one variant of one
sequence from the demo presets. No I/O beyond reading the TOML (and finding the demo model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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


# The published video baselines run stage 4 on the base UNet as their papers do: from noise, overlapping
# clips, no stage-2 background, flat merge weights, classifier-free guidance at every step, every sampling step.
PUBLISHED = (
    "codenoise.mode=overlap",
    "codenoise.init=noise",
    "codenoise.steps=0",  # the whole sampling schedule, whatever stage 4's own in the presets
    "codenoise.background=free",
    "codenoise.weighting=uniform",
    "codenoise.fg_gain=0.0",
    "codenoise.figure_pull=0.0",
    "codenoise.unguided_below=0.0",
)

# Stage 3 alone (the stage table's control and stage-3 rows): stage 4's start and background kept (up to the
# figure's mask: the margin around it is stage 4's to draw, with its attention), but one
# frame per clip, nothing read from other frames (attention, fg_gain, the figure pull) and guidance at
# every step as in stage 2, so that with `init = "trajectory"` the control ends at stage 2's own frames and
# the tuned row differs from them by the tuned UNet alone.
STAGE_3_ALONE = (
    "codenoise.clip_length=1",
    "codenoise.stride=1",
    "codenoise.attention=none",
    "codenoise.fg_gain=0.0",
    "codenoise.figure_pull=0.0",
    "codenoise.unguided_below=0.0",
    "codenoise.background_margin=0",
)


def _variants() -> dict[str, Variant]:
    v = [
        Variant(
            "per_frame",
            "stage 1 only, independent noise per frame",
            "stage1",
            overrides=("separate.noise_mode=independent", *C.FRAME_BY_FRAME),
            own_folder=True,
        ),
        Variant(
            "per_frame_shared_noise",
            "stage 1 only, one shared initial noise",
            "stage1",
            overrides=("separate.noise_mode=shared", *C.FRAME_BY_FRAME),
            own_folder=True,
        ),
        Variant(
            "t2v_zero",
            "base UNet, whole video as one clip, first-frame attention, shared noise",
            "stage4",
            overrides=(*PUBLISHED, "codenoise.attention=first", "codenoise.noise_mode=shared"),  # one clip of N
            links=(1,),
        ),
        Variant(
            "gen_l_video",
            "base UNet, co-denoised clips, uniform weights, middle anchor, independent noise",
            "stage4",
            overrides=(*PUBLISHED, "codenoise.attention=middle", "codenoise.noise_mode=independent"),
            links=(1,),
            seams=True,
        ),
        Variant(
            "freenoise",
            "FreeNoise-style: base UNet, co-denoised clips, middle anchor, noise rescheduled across windows",
            "stage4",
            overrides=(*PUBLISHED, "codenoise.attention=middle", "codenoise.noise_mode=rescheduled"),
            links=(1,),
            seams=True,
        ),
        Variant("stages_1_2", "stage-2 frames (background fusion at step t)", "stage2"),
        Variant(
            "stages_1_2_sdedit",
            "base UNet re-denoising the stage-2 frames with full's init and stage 2's guidance (no tuning, "
            "clips of 1 frame, nothing read from other frames): isolates stage 3",
            "stage4",
            overrides=STAGE_3_ALONE,
            links=(1, 2),
        ),
        Variant(
            "stages_1_2_3",
            "tuned UNet, clips of 1 frame, nothing read from other frames, full's init, stage 2's guidance",
            "stage4",
            overrides=STAGE_3_ALONE,
            unet="tuned",
            links=(1, 2, 3),
        ),
        Variant("full", "all four stages (demo presets)", "stage4", unet="tuned", links=(1, 2, 3), seams=True),
        Variant(
            "full_global",
            "full with one global anchor frame",
            "stage4",
            overrides=("codenoise.attention=global",),
            unet="tuned",
            links=(1, 2, 3),
            seams=True,
        ),
        Variant("ground_truth", "the rendered video (ceiling)", "gt"),
    ]
    return {x.name: x for x in v}


VARIANTS: dict[str, Variant] = _variants()
ONE_CLIP = ("t2v_zero",)  # the whole video as one clip of N frames


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
    """A prompt schedule of the grammar's sentences: (first frame, scene, time of day) -> (frame, prompt)."""
    from vidtune.demo.synthetic.grammar import PromptAttributes, format_prompt

    return tuple((k, format_prompt(PromptAttributes(colour, scene, time, motion))) for k, scene, time in parts)


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
    SequenceSpec(
        "schedule_walk",
        "walk",
        "a red figure walking on a snowy field during the day",
        110,
        24,
        _scheduled("walk", "red", [(0, "snow", "day"), (12, "beach", "sunset")]),
    ),
    SequenceSpec(
        "schedule_run_3",
        "run",
        "a yellow figure running on a grassy meadow during the day",
        111,
        24,
        _scheduled(
            "run",
            "yellow",
            [(0, "grass", "day"), (8, "desert", "sunset"), (16, "city", "night")],
        ),
    ),
    SequenceSpec(
        "schedule_wave_96",
        "wave",
        "a pink figure waving on a beach during the day",
        112,
        96,
        _scheduled("wave", "pink", [(0, "beach", "day"), (48, "snow", "night")]),
    ),
)
BENCHMARK_STEPS = 16  # every variant alike, as the demo presets
# The long videos (`vidtune ablate --suite long`): two 480-frame sequences, one prompt each (a walk, and a
# dance, whose limbs cross the figure); does the drift of figure and background against frame 0 grow with
# the length? (`bench/long_drift.py` gives the slopes per 100 frames next to the ground truth's.)
LONG_SEQUENCES: tuple[SequenceSpec, ...] = (
    SequenceSpec("walk_beach_480", "walk", "a blue figure walking on a beach at sunset", 113, 480),
    SequenceSpec("dance_city_480", "dance", "a green figure dancing in a city street at night", 114, 480),
)
LONG_VARIANTS: tuple[str, ...] = ("per_frame_shared_noise", "stages_1_2", "stages_1_2_3", "full", "ground_truth")
BENCHMARK_VARIANTS: tuple[str, ...] = (
    "per_frame",
    "per_frame_shared_noise",
    "t2v_zero",
    "gen_l_video",
    "freenoise",
    "stages_1_2",
    "full",
    "ground_truth",
)


@dataclass(frozen=True)
class AblationSpec:
    """What `run_ablation` runs: the sequences, the variants (table order) and the base run-config
    fields over the demo presets (nested {section: {key: value}})."""

    sequences: tuple[SequenceSpec, ...] = DEFAULT_SEQUENCES
    variants: tuple[str, ...] = tuple(VARIANTS)
    run: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"


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


def _schedule(table: Any, frames: int, where: str) -> tuple[tuple[int, str], ...]:
    """A sequence's ``prompts`` table ({"first frame" = "prompt"}) as `SequenceSpec.prompts`, checked as
    `inputs.prompts` is (first key 0, keys inside the video, no empty prompt); () when absent."""
    from vidtune.method.prompts import schedule_segments

    if table is None:
        return ()
    if not isinstance(table, dict):
        raise VidtuneError(
            f'{where}: prompts must be a table of first frame -> prompt, e.g. {{ "0" = "...", "12" = "..." }}'
        )
    try:
        return tuple((start, prompt) for start, _, prompt in schedule_segments(table, frames))
    except VidtuneError as e:
        raise VidtuneError(f"{where}: {str(e).replace('inputs.prompts', 'prompts', 1)}") from None


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
        raise VidtuneError(
            f"{source}: ablation.variants: unknown variant {bad[0]!r}; choose from {', '.join(VARIANTS)}"
        )
    sequences = []
    for i, table in enumerate(data.get("sequences", [])):
        where = f"{source}: [[sequences]] #{i + 1}"
        _check_keys(table, ["name", "motion", "prompt", "prompts", "seed", "frames"], where)
        required = ("motion",) if "prompts" in table else ("motion", "prompt")  # a schedule names the prompts
        missing = [k for k in required if k not in table]
        if missing:
            raise VidtuneError(f"{where}: missing {missing[0]!r}; give motion, prompt or prompts (and seed)")
        motion = _typed(table["motion"], str, "motion", where)
        if motion not in MOTIONS:
            raise VidtuneError(f"{where}: unknown motion {motion!r}; choose from {', '.join(MOTIONS)}")
        n = _typed(table.get("frames", frames), int, "frames", where)
        if n < 2:
            raise VidtuneError(f"{where}: frames must be >= 2 (consistency needs frame pairs), got {n}")
        schedule = _schedule(table.get("prompts"), n, where)
        prompt = _typed(table["prompt"], str, "prompt", where) if "prompt" in table else schedule[0][1]
        for text in [prompt] + [p for _, p in schedule]:
            parse_prompt(text)  # a clear error when a prompt is outside the synthetic grammar
        sequences.append(
            SequenceSpec(
                _typed(table.get("name", motion), str, "name", where),
                motion,
                prompt,
                _typed(table.get("seed", i), int, "seed", where),
                n,
                schedule,
            )
        )
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


SUITES: dict[str, Callable[[], AblationSpec]] = {
    "default": lambda: AblationSpec(),
    "benchmark": lambda: AblationSpec(
        sequences=BENCHMARK_SEQUENCES,
        variants=BENCHMARK_VARIANTS,
        run={"sampling": {"steps": BENCHMARK_STEPS}},
        source="benchmark",
    ),
    "long": lambda: AblationSpec(
        sequences=LONG_SEQUENCES,
        variants=LONG_VARIANTS,
        run={"sampling": {"steps": BENCHMARK_STEPS}},
        source="long",
    ),
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
    cfg = replace(
        base,
        inputs=replace(
            base.inputs,
            poses=str(poses),
            prompt=seq.prompt,
            frames=0,
            prompts={str(k): p for k, p in seq.prompts},
            clip_prompts=[],
        ),
    )
    return C.apply_overrides(cfg, C.seed_overrides(seq.seed))


def variant_config(cfg: C.RunConfig, variant: Variant, num_frames: int) -> C.RunConfig:
    """The sequence config with the variant's own settings (t2v_zero: one clip of N frames)."""
    extra = list(variant.overrides)
    if variant.name in ONE_CLIP:
        extra += [f"codenoise.clip_length={num_frames}", f"codenoise.stride={num_frames}"]
    return C.apply_overrides(cfg, extra) if extra else cfg


def variant_settings(name: str) -> str:
    """What a variant sets over the base config, for the tables (markdown: the settings in backticks)."""
    v = VARIANTS[name]
    bits = list(v.overrides) + (["codenoise.clip_length=N", "codenoise.stride=N"] if name in ONE_CLIP else [])
    unet = f"{v.unet} UNet; " if v.source == "stage4" else ""
    return unet + (", ".join(f"`{b}`" for b in bits) if bits else "base config")
