"""What each `vidtune` command does (`cmd_*`, given the parsed arguments), and the run config the
`run` and `plan` flags build (`build_config`). Imports torch only inside a command."""

from __future__ import annotations

import argparse
import contextlib
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

from vidtune.errors import VidtuneError

DEFAULT_FPS = 8.0  # vidtune.inputs.DEFAULT_FPS (that module imports numpy; the parser stays light)
DEMO_PROMPT = "a red figure walking on a snowy field during the day"  # vidtune.demo.command.DEFAULT_PROMPT
DEMO_STEPS = 16  # sampling.steps in src/vidtune/demo/model/vidtune.toml
DEMO_MOTIONS = ("walk", "run", "wave", "jump", "dance", "squat", "turn")  # vidtune.demo.synthetic.MOTIONS


def read_prompt_file(path: str) -> dict[str, str]:
    """A prompt schedule file (``--prompts``): JSON or TOML, first frame -> prompt; one-line errors."""
    import json
    import tomllib

    p = Path(path)
    kind = "JSON" if p.suffix.lower() == ".json" else "TOML"
    fix = 'give a JSON or TOML table of first frame -> prompt, e.g. {"0": "a man walking", "48": "a man running"}'
    if not p.is_file():
        raise VidtuneError(f"--prompts {path}: no such file; {fix}")
    try:
        table = json.loads(p.read_text()) if kind == "JSON" else tomllib.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise VidtuneError(f"--prompts {path}: not valid {kind} ({str(exc).splitlines()[0]}); {fix}") from None
    if not isinstance(table, dict) or not table:
        raise VidtuneError(f"--prompts {path}: not a table of frames; {fix}")
    for key, value in table.items():
        if not str(key).strip().isdigit() or not isinstance(value, str):
            raise VidtuneError(f"--prompts {path}: entry {key!r} = {value!r} is not frame number -> prompt; {fix}")
    return {str(int(k)): v for k, v in table.items()}


def check_fps(fps: float | None, flag: str = "--fps") -> None:
    """A frame rate flag, when given, is a finite number > 0 (else one line naming the flag)."""
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise VidtuneError(
            f"{flag} {fps:g}: frames per second must be a number > 0, e.g. {flag} 8; "
            "omit it to keep the pose source's rate"
        )


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """Before any work: no file stands where the output folder (or a folder above it) must be."""
    out = Path(path)
    for part in (out, *out.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            what = "is a file" if part == out else f"{part} is a file"
            raise VidtuneError(
                f"{flag} {path}: {what}, not a folder; give a folder path (a new folder, or an earlier one to resume)"
            )
        return


def build_config(args: argparse.Namespace):
    """The run's config (`vidtune.model_choice.run_config`): defaults, the model folder's presets, then
    the config file, the flags and the --set overrides, in that order."""
    from vidtune import config as C
    from vidtune.model_choice import run_config

    check_fps(getattr(args, "fps", None))
    flags = []
    for flag, key in [
        ("model", "model.path"),
        ("adapter", "model.adapter"),
        ("sam", "model.sam"),
        ("poses", "inputs.poses"),
        ("prompt", "inputs.prompt"),
        ("frames", "inputs.frames"),
        ("fps", "inputs.fps"),
        ("steps", "sampling.steps"),
        ("height", "inputs.height"),
        ("width", "inputs.width"),
        ("negative_prompt", "inputs.negative_prompt"),
        ("guidance", "sampling.guidance"),
        ("device", "model.device"),
        ("dtype", "model.dtype"),
        ("clip_length", "codenoise.clip_length"),
        ("stride", "codenoise.stride"),
        ("attention", "codenoise.attention"),
    ]:
        value = getattr(args, flag, None)
        if value is not None and flag in ("model", "adapter", "sam", "poses") and Path(value).exists():
            value = str(Path(value).resolve())  # as the run folder's config.toml loads back (config.portable)
        if value is not None:
            flags.append(f"{key}={value}")
    if getattr(args, "allow_pickle", False):
        flags.append("model.allow_pickle=true")
    if getattr(args, "prompts", None) is not None:
        flags += C.as_overrides({"inputs": {"prompts": read_prompt_file(args.prompts)}})
    if getattr(args, "seed", None) is not None:
        flags += C.seed_overrides(args.seed)
    from_file = C.file_overrides(args.config) if args.config else []
    return run_config([from_file, flags, list(args.overrides)])


def cmd_run(args: argparse.Namespace) -> int:
    from vidtune import config as C
    from vidtune import validate

    cfg = build_config(args)
    if args.print_config:
        from vidtune.config import to_toml

        print(to_toml(cfg), end="")
        return 0
    out = Path(args.out or Path("runs") / (Path(args.config).stem if args.config else "run"))
    check_out_folder(out)
    validate.check_config(cfg)  # before torch is imported; the pipeline checks again against the inputs
    from vidtune import distributed
    from vidtune.api import VidtunePipeline

    with distributed.launch(cfg.model.device) as world, _cleaned_up_if_no_stage_started(out):
        result = VidtunePipeline.from_config(cfg)(
            config=cfg, run_dir=out, stages=args.stages or C.STAGE_NUMBERS, progress=not args.quiet, log=print
        )
        if world.is_main:
            print(result.summary.line())
    return 0


@contextlib.contextmanager
def _cleaned_up_if_no_stage_started(out: Path) -> Iterator[None]:
    """A run that fails before any stage began leaves no folder behind that it created itself (it
    would hold only the config and the prepared inputs, both remade in seconds); a folder that
    existed before, or one where a stage started, is kept as it is so that nothing is lost."""
    existed = out.exists()
    try:
        yield
    except BaseException:
        if not existed and out.is_dir() and not any(p.name.startswith("stage") for p in out.iterdir()):
            shutil.rmtree(out, ignore_errors=True)
        raise


def cmd_plan(args: argparse.Namespace) -> int:
    from vidtune.plan import measure_unet_seconds, plan_report

    cfg = build_config(args)
    print(plan_report(cfg, measure_unet_seconds(cfg) if args.measure else None))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    if args.steps is not None and args.steps < 1:
        raise VidtuneError(f"--steps {args.steps}: the number of sampling steps must be >= 1; e.g. --steps 20")
    if args.frames < 1:
        raise VidtuneError(f"--frames {args.frames}: the demo needs at least one frame; e.g. --frames 24")
    from vidtune.demo.command import run_demo

    run_demo(
        out=args.out,
        frames=args.frames,
        motion=args.motion,
        prompt=args.prompt,
        seed=args.seed,
        steps=args.steps,
        overrides=args.overrides,
        progress=not args.quiet,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vidtune import atomic
    from vidtune.evaluation.evaluate import evaluate_video, format_table

    if args.json:
        check_writable_file(args.json, "--json")
    result = evaluate_video(
        args.video,
        masks=args.masks,
        prompt=args.prompt,
        clip=args.clip,
        dino=args.dino,
        reference=args.reference,
        bucket=args.bucket,
    )
    print(format_table(result))
    if args.json:
        atomic.write_json(args.json, result)
        print(f"vidtune: metrics written to {args.json}")
    return 0


def check_writable_file(path: str, flag: str) -> None:
    """Before any work: the file's folder exists and a file can be created in it (else one line naming it)."""
    import tempfile

    folder = Path(path).parent
    if not folder.is_dir():
        raise VidtuneError(f"{flag} {path}: the folder {folder} does not exist; create it or write elsewhere")
    if Path(path).is_dir():
        raise VidtuneError(f"{flag} {path}: is a folder; give a file path")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise VidtuneError(
            f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc}); give a writable file path"
        ) from None


def cmd_ablate(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    from vidtune.benchmark import run_ablation

    run_ablation(args.config, out=args.out, overrides=args.overrides, progress=not args.quiet, suite=args.suite)
    return 0


def cmd_poses_render(args: argparse.Namespace) -> int:
    check_fps(args.fps)
    from vidtune.poses import render_to_folder

    print(
        render_to_folder(
            args.src,
            args.out,
            height=args.height,
            width=args.width,
            num_frames=args.frames,
            fps=args.fps,
            framing=args.framing,
        )
    )
    return 0


def cmd_poses_extract(args: argparse.Namespace) -> int:
    from vidtune.pose_extract import ExtractOptions, extract_to_folder
    from vidtune.smoothing import OneEuroParams

    options = ExtractOptions(
        layout=args.format,
        min_visibility=args.min_visibility,
        smooth=args.smooth,
        one_euro=OneEuroParams(min_cutoff=args.min_cutoff, beta=args.beta),
    )
    print(extract_to_folder(args.src, args.out, options))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from vidtune.app.server import serve

    serve(host=args.host, port=args.port, runs=args.runs, model=args.model)
    return 0


def cmd_models_make_tiny(args: argparse.Namespace) -> int:
    from vidtune.testing import make_tiny

    path = make_tiny(args.dir, seed=args.seed)
    print(f"vidtune: tiny random components written to {path}")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    check_out_folder(args.out)
    from vidtune.demo.train import run_from_args

    return run_from_args(args)
