"""Run configuration: one frozen dataclass per stage plus `RunConfig`, loaded from TOML.

Every default is written out (the seed paper's where it gives one). Unknown keys and wrong
types are rejected at load time with the key's name and the fix; `--set section.key=value`
overrides any field; the resolved config is saved into the run folder as TOML.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vidtune.errors import VidtuneError

DEMO_ALIAS = "demo"  # the model string that names the embedded demo model (see `vidtune.model_choice`)
DEMO_MODEL = Path(__file__).resolve().parent / "demo" / "model"  # data only: the library imports no demo code


def _choice(*values: str) -> dict[str, Any]:
    return {"choices": values}


def _added(since: str, legacy: Any) -> dict[str, Any]:
    """Metadata of a field added after run folders were made: at `legacy`, the value that computes what
    those folders computed, it is left out of `stage_hash`, so their finished stages stay done (at any
    other value, the default included, the hash changes and the stage reruns)."""
    return {"added": since, "legacy": legacy}


@dataclass(frozen=True)
class ModelConfig:
    """Which weights to load. `path` is a hub id, a local diffusers folder or a cached id."""

    path: str = "CompVis/stable-diffusion-v1-4"
    adapter: str = "TencentARC/t2iadapter_openpose_sd14v1"  # "" = `<path>/adapter`
    sam: str = ""  # "" = `<path>/sam` when it exists, else no SAM (the weight-free GrabCut segmenter runs)
    allow_pickle: bool = False  # load .bin/.ckpt weights (pickle) only when asked
    device: str = field(default="auto", metadata=_choice("auto", "cpu", "cuda", "mps"))
    dtype: str = field(default="auto", metadata=_choice("auto", "fp32", "fp16", "bf16"))


@dataclass(frozen=True)
class InputConfig:
    """What to generate: the pose sequence, the prompt (or prompt schedule) and the frame size."""

    poses: str = ""  # folder of *_keypoints.json, folder of pose images, or a pose video
    prompt: str = ""  # one prompt for the whole video
    prompts: dict[str, str] = field(default_factory=dict)  # {first_frame: prompt} ranges
    clip_prompts: list[str] = field(default_factory=list)  # one prompt per stage-4 clip
    negative_prompt: str = ""
    frames: int = 0  # 0 = every frame of the pose source; else resample to this count
    fps: float = 0.0  # 0 = the pose source's fps (8 when it has none)
    height: int = 512
    width: int = 512
    framing: str = field(default="fit", metadata=_choice("fit", "person"))
    # what `poses` is: "pose" (keypoints / pose renders), "rgb" (footage: poses extracted with
    # MediaPipe into inputs/extracted/) or "auto" (JSON = pose; a video or image folder is judged by its look)
    pose_source: str = field(default="auto", metadata=_choice("auto", "pose", "rgb"))


@dataclass(frozen=True)
class SamplingConfig:
    """SD v1-4's own training schedule and the sampler (docs/method.md: DDIM 50 steps, eta 0, CFG 7.5)."""

    scheduler: str = field(default="ddim", metadata=_choice("ddim", "ddpm", "euler", "dpmpp"))
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = field(default="scaled_linear", metadata=_choice("scaled_linear", "linear"))
    num_train_timesteps: int = 1000
    steps: int = 50
    eta: float = 0.0
    guidance: float = 7.5
    adapter_scale: float = 1.0


@dataclass(frozen=True)
class SeparateConfig:
    """Stage 1: per-frame generation; keep z_t at `fusion_step` (fraction of the schedule)."""

    seed: int = 0  # frame i uses seed + i
    # shared: every frame starts from one z_T (measured: a third of the flicker of independent noise on the
    # benchmark, README); independent: frame i from seed + i (the paper's per-frame generation)
    noise_mode: str = field(default="shared", metadata=_choice("independent", "shared"))
    fusion_step: float = 0.5
    # fusion: stop at the fusion step and segment the predicted clean frame there (the paper: SAM on x0-hat
    # at step t), so the steps after t are paid once, in stage 2; stage 1's video is then that prediction.
    # end: every frame denoised to x0 and the final frames segmented (stage 1 is a full per-frame video,
    # what the frame-by-frame baselines run); the same z_t, at the cost of the steps after t (docs/method.md).
    stop: str = field(default="fusion", metadata={**_choice("end", "fusion"), **_added("0.1.1", legacy="end")})
    segmenter: str = field(default="auto", metadata=_choice("auto", "sam", "grabcut"))
    batch_frames: int = 4


# Stage 1 as frame-by-frame generation: every frame denoised to the end. What the frame-by-frame
# baselines run, and `vidtune demo` and the app, which show stage 1 beside the result.
FRAME_BY_FRAME: tuple[str, ...] = ("separate.stop=end",)


@dataclass(frozen=True)
class FusionConfig:
    """Stage 2: average fusion of backgrounds at the fusion step (docs/method.md; the paper's eq. 10-11)."""

    space: str = field(default="x0", metadata=_choice("x0", "latent"))
    num_samples: int = 0  # K; 0 = every frame
    seed: int = 0
    w_f: float = 1.0
    w_b: float = 1.0
    learn: bool = False
    learn_per_channel: bool = False
    learn_steps: int = 50
    learn_lr: float = 0.05
    fidelity: float = 1.0
    # Fuse again at every later step (x0 space): fused once at t, the later steps re-invent background
    # details frame by frame (measured: stage 2's background flicker falls by more with it, see README).
    repeat: bool = True
    dilate: int = 1  # latent pixels the foreground grows by before it weighs the average (no ghost of the figure)
    # Pixel-space background plate after decoding (stages 2 and 4; vidtune.method.plate): equal background latents
    # still decode to flickering pixels because the VAE decoder is not local. Each decoded frame's background
    # is snapped to its segment's plate where it is within `plate_key_low` grey levels of it (fully kept
    # beyond `plate_key_high`, and inside the figure's mask grown by `plate_dilate` pixels).
    plate: bool = True
    plate_dilate: int = 1
    plate_key_low: float = 12.0
    plate_key_high: float = 32.0


@dataclass(frozen=True)
class TuningConfig:
    """Stage 3: combined tuning of the UNet on the fused frames (docs/method.md; the paper's eq. 6, 15, 16, 20)."""

    trainable: str = field(default="full", metadata=_choice("full", "lora", "attention"))
    lora_rank: int = 4
    # The projections the LoRA adapts: "attention", q, k, v and out of self- and cross-attention; "cross_kv",
    # the key and value projections of cross-attention alone (Custom Diffusion's choice: what the prompt's
    # words draw changes, where the UNet draws it does not).
    lora_targets: str = field(
        default="attention", metadata={**_choice("attention", "cross_kv"), **_added("0.1.1", legacy="attention")}
    )
    lr: float = 5e-6
    steps: int = 300
    batch_size: int = 1
    warmup_steps: int = 0
    grad_clip: float = 1.0
    grad_accum: int = 1
    l_n: float = 1.0
    l_f: float = 1.0
    l_b: float = 1.0
    seed: int = 0
    # t ~ U{0, ..., max_timestep * T - 1}. 1.0 = the whole schedule (the paper). Lower keeps the UNet from
    # learning what the frames look like on average at high noise, where a frame's own noisy latent no
    # longer says where the figure is: that average is a translucent figure in every position.
    max_timestep: float = 1.0
    # Probability that a sample trains the negative prompt's embedding (the unconditional branch of CFG).
    # Tuned on the prompt alone, the two branches drift apart and guidance amplifies the gap: a washed-out,
    # translucent figure (measured, README).
    uncond_prob: float = 0.0
    # The fraction of each prompt segment's frames stage 3 trains on: those whose figure is most typical of the
    # segment (least summed part-wise distance to its other figures, `vidtune.method.anchor.typical_frames`).
    # 1.0: every frame (the paper). Below 1 the UNet learns the look most frames share instead of their average.
    typical_fraction: float = field(default=1.0, metadata=_added("0.1.1", legacy=1.0))
    checkpoint_every: int = 100
    keep_checkpoints: bool = False  # stage 3's checkpoints are removed once it is done (GBs for SD's full UNet)
    mixed_precision: str = field(default="auto", metadata=_choice("auto", "no", "fp16", "bf16"))
    gradient_checkpointing: bool = True


@dataclass(frozen=True)
class CodenoiseConfig:
    """Stage 4: temporal co-denoising over overlapping clips (Gen-L-Video) with cross-frame attention."""

    # shifted: non-overlapping clips of M frames whose boundaries move every step (1 UNet evaluation per frame
    # per step; bench/results/codenoise_speed.md: same quality as overlap, at about half its cost);
    # overlap: Gen-L-Video's overlapping clips of stride S (M / S evaluations per frame per step).
    mode: str = field(default="shifted", metadata=_choice("shifted", "overlap"))
    clip_length: int = 16  # M
    stride: int = 8  # S (overlap mode)
    shrink_clip: bool = False  # N < M: use M := N instead of failing
    weighting: str = field(default="uniform", metadata=_choice("uniform", "triangular", "gaussian"))
    fg_gain: float = 0.0  # extra pixel-wise weight on the foreground (0 = off)
    attention: str = field(default="middle", metadata=_choice("none", "first", "sparse-causal", "middle", "global"))
    # The frame `global` attention reads: the video's middle frame, or the medoid of stage 2's figures (the frame
    # whose figure looks most like all the others', `vidtune.method.anchor`; needs stage 2).
    anchor: str = field(default="middle", metadata={**_choice("middle", "medoid"), **_added("0.1.1", legacy="middle")})
    # fused: stage 2's frames noised to `strength` (SDEdit). Stage 4 refines the figure only (its background is
    # stage 2's), so a light start suffices: the committed benchmark (bench/results/benchmark.md, "full") runs
    # fused at 0.4, and it keeps the whole method at 1.70x the UNet evaluations of frame-by-frame generation
    # at 24 frames and the SD defaults (`vidtune plan`; "noise" would be about 2.3x).
    # trajectory: stage 2's own latent at that step (no new noise): with the base UNet and no guide it ends
    # exactly at stage 2's frames, so every change is the tuned UNet's, the attention's and the pull's, and
    # the figure's details are not redrawn by fresh noise (needs stage 2 from the fusion step on).
    init: str = field(default="fused", metadata=_choice("noise", "fused", "trajectory"))
    # rescheduled: FreeNoise's noise rescheduling (each window's noise a shuffle of the previous window's);
    # stage1: stage 1's own initial noise (`separate.seed`, `separate.noise_mode`): from `strength` 1 stage 4 starts
    # where stage 1 did, so the layout stage 1 drew to the pose comes back while the look is redrawn.
    noise_mode: str = field(default="independent", metadata=_choice("independent", "shared", "rescheduled", "stage1"))
    strength: float = 0.4  # `fused` / `trajectory` init: how far from the end stage 4 starts (SDEdit's strength)
    # Stage 4's own number of sampler steps (0: `sampling.steps`). A stage 4 that redraws the figure from much
    # noise needs fewer steps than the frame-by-frame stages for the same cost (`vidtune plan` counts them).
    steps: int = field(default=0, metadata=_added("0.1.1", legacy=0))
    # keep: at every step the background of the predicted x0 is pulled to stage 2's fused background (per
    # prompt segment), so stage 4 refines the figure without undoing stage 2; free: the model redraws it.
    background: str = field(default="keep", metadata=_choice("keep", "free"))
    # Latent pixels around stage 2's figure mask that `keep` leaves to stage 4 (0: it keeps everything outside
    # the mask): the figure stage 4 draws is not always stage 2's shape (a hat, a limb a pixel further out), and
    # kept there stage 2's own edge is pasted onto it every step.
    background_margin: int = field(default=0, metadata=_added("0.1.1", legacy=0))
    # The figure's look pulled to one frame's: each body part's (head, upper body, legs, from the pose) channel
    # mean and spread in the predicted x0 move this far (0-1) to those of the medoid of stage 2's figures in the
    # frame's prompt segment (`vidtune.method.appearance`; needs stage 2), in the first `figure_pull_steps`
    # (a fraction) of stage 4's steps; the later steps redraw the detail on the pulled colours. 0: off.
    figure_pull: float = field(default=0.0, metadata=_added("0.1.1", legacy=0.0))
    figure_pull_steps: float = field(default=1.0, metadata=_added("0.1.1", legacy=1.0))
    # The pull joins only at the steps whose timestep is below this fraction of the training schedule (1: from
    # stage 4's first step). With a start from more noise, where the (tuned) UNet redraws the figure, a pull at
    # high noise spreads one part's colour over the whole figure; joining at low noise it only recolours parts.
    # `figure_pull_steps` still counts from stage 4's first step: the pull acts at the steps both allow.
    figure_pull_below: float = field(default=1.0, metadata=_added("0.1.1", legacy=1.0))
    # How much of stage 3's change the UNet carries here (`tuned_weights.scaled_state`: a LoRA's output scaled,
    # full weights interpolated from the base). Classifier-free guidance multiplies the tuned conditional
    # branch's change by the guidance scale (the LoRA learns the video in that branch), so a scale below 1
    # keeps its pull toward this video's figure without overshooting its colours (docs/method.md, stage 4).
    tuned_scale: float = field(default=1.0, metadata=_added("0.1.1", legacy=1.0))
    transition: int = 8  # frames over which a prompt schedule moves from one segment to the next (0 = cut)
    # Classifier-free guidance only in an interval (Kynkaanniemi et al. 2024): the steps whose timestep is below
    # this fraction of the training schedule evaluate the conditional branch alone (one UNet row per frame, not
    # two; 0 = guidance at every step). Stage 4 refines detail at low noise, where guidance mostly amplifies
    # frame-to-frame differences: on six development sequences (seeds 401-406) 0.2 took stage 4 from 3.2% more
    # background flicker than stage 2 to 1.5% less and from -0.007 pose IoU to +0.002, at 3/4 of the cost.
    unguided_below: float = 0.2
    seed: int = 0
    max_batch_frames: int = 16


@dataclass(frozen=True)
class RuntimeConfig:
    """How to compute, not what: options that leave every result equal up to floating-point rounding,
    so no stage's resume hash covers them (a run resumes across a change of them)."""

    channels_last: bool = False  # UNet and VAE in channels_last memory format (faster convolutions on recent GPUs)
    compile: bool = False  # torch.compile the UNet in place: a slow first step, faster steps after (GPU)
    # Decode frames larger than the VAE's tile (512 px for SD) tile by tile (diffusers' `enable_tiling`):
    # memory flat in the frame size. Below the tile size nothing changes; above it the tiles' overlaps are
    # blended, so the decoded pixels (not the latents) differ slightly from a whole-frame decode.
    vae_tiling: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """How the frames become videos (stage1.mp4, stage2.mp4, final.mp4). The PNG frames are the result;
    the videos are re-encoded from them when this section changes, so no stage's resume hash covers it.

    H.264 in yuv420p keeps one colour sample per 2x2 pixels: at 64 px a small saturated figure bleeds
    into its background and the codec's noise flickers on a background the plate made equal. Frames
    whose short side is below `min_side` are therefore enlarged by an integer factor before encoding
    (`upscale = 0`: the smallest factor that reaches `min_side`, rounded up to an even one so that every
    2x2 colour sample lies inside one source pixel with `nearest`)."""

    upscale: int = 0  # integer factor; 0 = auto (see above), 1 = the frames' own size
    upscale_filter: str = field(default="nearest", metadata=_choice("nearest", "lanczos"))
    min_side: int = 256  # pixels: `upscale = 0` enlarges frames whose short side is smaller
    quality: float = 9.0  # imageio-ffmpeg quality 1..10 (H.264 crf = 51 * (1 - quality / 10))
    lossless: bool = False  # also write a lossless FFV1 video (final.mkv, ...) at the frames' own size
    gif: int = 96  # also write a GIF preview (final.gif, ...) of a video of at most this many frames; 0 = never


DEFAULT_OUTPUT = OutputConfig()  # frozen: one shared instance is safe as a default argument


@dataclass(frozen=True)
class RunConfig:
    """A whole run: one section per concern, in stage order."""

    model: ModelConfig = field(default_factory=ModelConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    separate: SeparateConfig = field(default_factory=SeparateConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    codenoise: CodenoiseConfig = field(default_factory=CodenoiseConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # not in any stage's hash (see its docstring)
    output: OutputConfig = field(default_factory=OutputConfig)  # not in any stage's hash (see its docstring)


SECTIONS: dict[str, type] = typing.get_type_hints(RunConfig)


# --- what each stage may read ------------------------------------------------------------------
# A stage function receives the view of its own sections and those of the stages before it, exactly
# the fields `stage_hash` covers: a stage that read a field outside its hash would resume wrongly when
# that field changed, and with these views it cannot (the attribute is not there).


@dataclass(frozen=True)
class SeparateStageConfig:
    """What stage 1 reads: the model, the inputs, the sampler and its own section."""

    model: ModelConfig
    inputs: InputConfig
    sampling: SamplingConfig
    separate: SeparateConfig


@dataclass(frozen=True)
class FusionStageConfig(SeparateStageConfig):
    """What stage 2 reads: stage 1's view and `fusion`."""

    fusion: FusionConfig


@dataclass(frozen=True)
class TuningStageConfig(FusionStageConfig):
    """What stage 3 reads: stage 2's view and `tuning`."""

    tuning: TuningConfig


@dataclass(frozen=True)
class CodenoiseStageConfig(TuningStageConfig):
    """What stage 4 reads: stage 3's view and `codenoise`."""

    codenoise: CodenoiseConfig


# The views in stage order: stage k reads (and its resume hash covers) the fields of STAGE_VIEWS[k - 1].
# The torch-free copy of the registry's order (`vidtune.stages.registry` checks each Stage.view against it):
# the CLI, validation and plan use it without importing the runners.
STAGE_VIEWS: tuple[type, ...] = (SeparateStageConfig, FusionStageConfig, TuningStageConfig, CodenoiseStageConfig)
STAGE_NUMBERS: tuple[int, ...] = tuple(range(1, len(STAGE_VIEWS) + 1))
CODENOISE_STAGE = STAGE_VIEWS.index(CodenoiseStageConfig) + 1


def stage_view(stage: int) -> type:
    """The view class of stage `stage` (1-4)."""
    if not 1 <= stage <= len(STAGE_VIEWS):
        raise ValueError(f"no stage {stage}: stages are 1-{len(STAGE_VIEWS)}")
    return STAGE_VIEWS[stage - 1]


def stage_sections(stage: int) -> tuple[str, ...]:
    """The config sections stage `stage` depends on: the fields of its view (its own and every earlier stage's)."""
    return tuple(f.name for f in dataclasses.fields(stage_view(stage)))


def stage_config(cfg: RunConfig, stage: int):
    """The view of `cfg` that stage `stage` receives (the sections its resume hash covers)."""
    return stage_view(stage)(**{name: getattr(cfg, name) for name in stage_sections(stage)})


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    return getattr(origin or tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check (and minimally convert) one TOML value against its field type."""
    origin = typing.get_origin(tp)
    bad = VidtuneError(f"{source}: {key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad
        return {str(k): v for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad
        return list(value)
    raise bad


def _build_section(name: str, values: dict[str, Any], source: str) -> Any:
    cls = SECTIONS[name]
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in hints:
            raise VidtuneError(f"{source}: unknown key {name}.{key}; valid keys in [{name}]: {', '.join(valid)}")
        kwargs[key] = _coerce(value, hints[key], f"{name}.{key}", source)
    section = cls(**kwargs)
    for f in fields(cls):
        choices = f.metadata.get("choices")
        if choices and getattr(section, f.name) not in choices:
            raise VidtuneError(
                f"{source}: {name}.{f.name} = {getattr(section, f.name)!r} is not one of {', '.join(choices)}"
            )
    return section


def from_dict(data: dict[str, Any], source: str = "config") -> RunConfig:
    """Build a RunConfig from nested dicts, rejecting unknown sections/keys and wrong types."""
    sections = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise VidtuneError(f"{source}: unknown section [{name}]; valid sections: {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise VidtuneError(f"{source}: [{name}] must be a table of keys, got {values!r}")
        sections[name] = _build_section(name, values, source)
    return RunConfig(**sections)


def to_dict(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts (every field written out)."""
    return dataclasses.asdict(cfg)


def read_toml(path: str | Path, what: str = "config file", fix: str = "omit it and use flags") -> dict[str, Any]:
    """Parse a TOML file; a missing file or bad syntax is one VidtuneError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise VidtuneError(f"{p}: {what} not found; pass an existing .toml file or {fix}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VidtuneError(f"{p}: not valid TOML ({exc}); fix the syntax") from None


def load(path: str | Path) -> RunConfig:
    """Load a TOML config file; missing fields take their defaults."""
    p = Path(path)
    cfg = from_dict(read_toml(p), source=str(p))
    return resolve_paths(cfg, p.parent)


def file_overrides(path: str | Path) -> list[str]:
    """A TOML config file as ``section.key=value`` overrides of just the keys it sets (relative paths
    resolved against its folder, as `load` does), to layer over a model's presets. Checked by `load`
    first, so a bad file is named in the error."""
    cfg = load(path)
    partial = read_toml(Path(path))
    return as_overrides({s: {k: getattr(getattr(cfg, s), k) for k in keys} for s, keys in partial.items()})


def resolve_paths(cfg: RunConfig, base: Path) -> RunConfig:
    """Make relative local paths in the config relative to the config file's folder."""

    def fix(value: str) -> str:
        if not value or Path(value).is_absolute():
            return value
        candidate = base / value
        return str(candidate.resolve()) if candidate.exists() else value

    return replace(
        cfg,
        inputs=replace(cfg.inputs, poses=fix(cfg.inputs.poses)),
        model=replace(cfg.model, path=fix(cfg.model.path), adapter=fix(cfg.model.adapter), sam=fix(cfg.model.sam)),
    )


def portable(cfg: RunConfig, base: Path) -> RunConfig:
    """The config as a run folder keeps it: the embedded demo model as ``"demo"``, and every local path
    (poses, model, adapter, SAM) relative to ``base`` (the run folder), so the folder's config.toml reruns
    on another machine or from another working folder (`load` resolves them against the file's folder).
    Hub ids and empty paths stay as they are."""
    root = Path(base).resolve()

    def rel(value: str) -> str:
        if not value or not Path(value).exists():
            return value
        if Path(value).resolve() == DEMO_MODEL:
            return DEMO_ALIAS
        return Path(os.path.relpath(Path(value).resolve(), root)).as_posix()

    return replace(
        cfg,
        inputs=replace(cfg.inputs, poses=rel(cfg.inputs.poses)),
        model=replace(cfg.model, path=rel(cfg.model.path), adapter=rel(cfg.model.adapter), sam=rel(cfg.model.sam)),
    )


def _parse_override_value(raw: str, tp: Any) -> Any:
    if tp is str:
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            return raw[1:-1]
        return raw
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # let the type check produce the message


def as_overrides(partial: dict[str, dict[str, Any]]) -> list[str]:
    """A partial config ({section: {key: value}}, e.g. a model's presets) as `section.key=value` overrides."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else _toml_value(value)

    return [f"{section}.{key}={text(value)}" for section, values in partial.items() for key, value in values.items()]


SEEDED_SECTIONS = ("separate", "fusion", "tuning", "codenoise")


def codenoise_steps(cfg: Any) -> int:
    """Stage 4's sampler steps: `codenoise.steps`, or `sampling.steps` where it is 0 (any config with both
    sections: the run config or stage 4's view)."""
    return cfg.codenoise.steps or cfg.sampling.steps


def seed_overrides(seed: int) -> list[str]:
    """The overrides that give every stage the seed ``seed`` (`--seed`, the demo, the ablation)."""
    return [f"{section}.seed={seed}" for section in SEEDED_SECTIONS]


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply `section.key=value` overrides (values parsed as TOML literals, strings may be bare)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise VidtuneError(f"--set {item!r}: expected section.key=value, e.g. --set sampling.steps=20")
        key, raw = item.split("=", 1)
        section, name = key.strip().split(".", 1)
        if section not in SECTIONS:
            raise VidtuneError(f"--set {item!r}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        hints = typing.get_type_hints(SECTIONS[section])
        if name not in hints:
            valid = ", ".join(hints)
            raise VidtuneError(f"--set {item!r}: unknown key {section}.{name}; valid keys in [{section}]: {valid}")
        data[section][name] = _parse_override_value(raw.strip(), hints[name])
    return from_dict(data, source="--set")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML text (every field written out)."""
    lines = ["# vidtune resolved run config (every default written out)"]
    for section, values in to_dict(cfg).items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _hashed_fields(section: Any) -> dict[str, Any]:
    """A section's fields as `stage_hash` sees them (an `_added` field at its legacy value left out)."""
    values = dataclasses.asdict(section)
    return {
        f.name: values[f.name]
        for f in dataclasses.fields(section)
        if not ("added" in f.metadata and values[f.name] == f.metadata["legacy"])
    }


def stage_hash(cfg: RunConfig, stage: int) -> str:
    """Hash of the config fields stage `stage` depends on (its sections and every earlier stage's)."""
    relevant = {s: _hashed_fields(getattr(cfg, s)) for s in stage_sections(stage)}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
