"""The `vidtune` command: run, plan, demo, evaluate, ablate, poses, models, train-demo.

User errors (VidtuneError) and the system's refusals (OSError: a read-only or full disk, a
path under a file) print one line naming the path or key and the fix and exit with status 2;
no traceback.

Under torchrun (`torchrun --nproc-per-node K --no-python vidtune run ...`) `vidtune run` joins the
process group (`vidtune.distributed.launch`); rank 0 alone prints. An error on any rank, whatever its
kind, prints its one line (with the rank) and every rank exits with status 2 (`distributed.fail`).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from vidtune.errors import VidtuneError

DEFAULT_FPS = 8.0  # vidtune.inputs.DEFAULT_FPS (that module imports numpy; the parser stays light)
DEMO_PROMPT = "a red figure walking on a snowy field during the day"  # vidtune.demo.command.DEFAULT_PROMPT
DEMO_STEPS = 20  # sampling.steps in src/vidtune/demo/model/vidtune.toml
DEMO_MOTIONS = ("walk", "run", "wave", "jump", "dance", "squat", "turn")  # vidtune.demo.synthetic.MOTIONS


def _stages(text: str) -> list[int]:
    from vidtune.config import STAGE_NUMBERS

    known = ",".join(map(str, STAGE_NUMBERS))
    try:
        stages = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stages expects numbers like {known}, got {text!r}") from None
    if not stages or any(s not in STAGE_NUMBERS for s in stages):
        raise argparse.ArgumentTypeError(f"--stages expects numbers among {known}, got {text!r}")
    return stages


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags `run` and `plan` share; each names the config field it sets and that field's default."""
    from vidtune import config as C

    m, i, s, c = C.ModelConfig, C.InputConfig, C.SamplingConfig, C.CodenoiseConfig
    p.add_argument(
        "config",
        nargs="?",
        help="TOML run config (optional: omitted, every field takes its default; vidtune run --print-config "
        "shows them all)",
    )
    _add_set(p, "after the config file and the flags")
    p.add_argument(
        "--model",
        metavar="PATH",
        help=f"SD 1.x model: diffusers folder, hub id or cached id (model.path; default: {m.path})",
    )
    p.add_argument(
        "--adapter",
        metavar="PATH",
        help="T2I-Adapter (OpenPose) folder or hub id (model.adapter; default: the model folder's adapter/ "
        f"when it has one, else {m.adapter})",
    )
    p.add_argument(
        "--sam",
        metavar="PATH",
        help="SAM folder or hub id for the foreground masks (model.sam; default: the model folder's sam/ "
        "when it has one, else the weight-free GrabCut segmenter)",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="also load .bin/.ckpt weights, pickles that can run code (model.allow_pickle; default: safetensors only)",
    )
    p.add_argument(
        "--poses",
        metavar="PATH",
        help="pose source: OpenPose JSON folder, pose-image folder, pose video or RGB video of a person "
        "(inputs.poses; required unless the config sets it)",
    )
    p.add_argument("--prompt", metavar="TEXT", help="text prompt of the whole video (inputs.prompt; default: empty)")
    p.add_argument(
        "--prompts",
        metavar="FILE",
        help='prompt schedule: a JSON or TOML file of first frame -> prompt, e.g. {"0": "a man walking", '
        '"48": "a man running"} (inputs.prompts; default: none, --prompt for every frame)',
    )
    p.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help="what classifier-free guidance steers away from (inputs.negative_prompt; default: empty)",
    )
    p.add_argument(
        "--guidance",
        type=float,
        metavar="SCALE",
        help=f"classifier-free guidance scale (sampling.guidance; default: {s.guidance:g})",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        help=f"where the models run (model.device; default: {m.device}: CUDA when there is one)",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "fp32", "fp16", "bf16"),
        help=f"weights' precision (model.dtype; default: {m.dtype}: fp16 on CUDA, fp32 on the CPU)",
    )
    p.add_argument(
        "--clip-length",
        type=int,
        metavar="M",
        help=f"stage 4's clip length in frames (codenoise.clip_length; default: {c.clip_length})",
    )
    p.add_argument(
        "--stride",
        type=int,
        metavar="S",
        help=f"stage 4's clip stride in frames (codenoise.stride; default: {c.stride})",
    )
    p.add_argument(
        "--attention",
        choices=("none", "first", "sparse-causal", "middle", "global"),
        help=f"stage 4's cross-frame attention: whose keys and values each frame reads (codenoise.attention; "
        f"default: {c.attention})",
    )
    p.add_argument(
        "--frames",
        type=int,
        metavar="N",
        help="resample the poses to N frames (inputs.frames; default: every frame of the pose source)",
    )
    p.add_argument(
        "--fps",
        type=float,
        metavar="FPS",
        help=f"frames per second of the output video, > 0; the poses are resampled to it (inputs.fps; "
        f"default: the pose source's, {DEFAULT_FPS:g} when it has none)",
    )
    p.add_argument("--steps", type=int, metavar="N", help=f"sampling steps (sampling.steps; default: {s.steps})")
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help=f"seed of every stage ({'/'.join(C.SEEDED_SECTIONS)}.seed; default: {C.SeparateConfig.seed})",
    )
    p.add_argument(
        "--height",
        type=int,
        metavar="PX",
        help=f"frame height in pixels, a multiple of 8 (inputs.height; default: {i.height})",
    )
    p.add_argument(
        "--width",
        type=int,
        metavar="PX",
        help=f"frame width in pixels, a multiple of 8 (inputs.width; default: {i.width})",
    )


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


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with a command list that reads as options do: one line per command, no metavar above."""

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return "".join(self._format_action(command) for command in action._get_subactions())
        return super()._format_action(action)


def _commands(parser: argparse.ArgumentParser, dest: str) -> argparse._SubParsersAction:
    """A required command under `parser`, listed one line each under "commands"."""
    return parser.add_subparsers(dest=dest, required=True, title="commands", metavar="COMMAND")


def _add_set(p: argparse.ArgumentParser, applies: str) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help=f"override one config field, repeatable, e.g. --set sampling.steps=20 (see vidtune run --print-config); "
        f"applied {applies}",
    )


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _version() -> str:
    """The installed package's version (from its metadata: no torch import)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vidtune")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that was never installed
        return "unknown (not installed)"


def make_parser() -> argparse.ArgumentParser:
    """The whole `vidtune` command line (every command and option, with its help); imports no torch."""
    parser = argparse.ArgumentParser(
        prog="vidtune",
        description="Long, temporally consistent, pose-guided video "
        "generation: separate tuning, average fusion, combined tuning, co-denoising.",
        epilog="vidtune COMMAND --help lists the options of a command.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vidtune {_version()}")
    sub = _commands(parser, "command")

    def command(name: str, help: str, parent: argparse._SubParsersAction = sub) -> argparse.ArgumentParser:
        return parent.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", formatter_class=_HelpFormatter
        )

    p = command("run", "run the four stages into a run folder (a rerun resumes it)")
    _add_run_flags(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        help="run folder, new or an earlier run's to resume (default: runs/<config file name>, runs/run "
        "without a config)",
    )
    p.add_argument(
        "--stages",
        type=_stages,
        default=None,
        metavar="LIST",
        help="the stages to run, comma-separated, e.g. 1,2 (default: all, 1,2,3,4)",
    )
    _add_quiet(p)
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config (every field, as TOML) and exit; loads nothing",
    )
    p.set_defaults(func=cmd_run)

    p = command("plan", "print stage 4's clips, prompts, merge weights and cost (loads no model)")
    _add_run_flags(p)
    p.add_argument(
        "--measure",
        action="store_true",
        help="load the model and time one UNet evaluation on the run's device: adds a time estimate per stage",
    )
    p.set_defaults(func=cmd_plan)

    p = command("demo", "the whole method on the embedded demo model and a synthetic pose sequence")
    p.add_argument(
        "--out",
        default="runs/demo",
        metavar="DIR",
        help="run folder; also gets final.mp4, side_by_side.mp4, metrics.json, report.html (default: %(default)s)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=24,
        metavar="N",
        help="frames of the synthetic pose sequence (default: %(default)s)",
    )
    p.add_argument(
        "--motion",
        default="walk",
        metavar="NAME",
        help=f"motion of the synthetic figure: {', '.join(DEMO_MOTIONS)} (default: %(default)s)",
    )
    p.add_argument(
        "--prompt",
        default=None,
        metavar="TEXT",
        help=f"text prompt; the ground truth is drawn to it too (default: {DEMO_PROMPT!r})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the pose sequence and every stage (default: %(default)s)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"sampling steps (default: the demo model's preset, {DEMO_STEPS})",
    )
    _add_set(p, "after the demo model's presets")
    _add_quiet(p)
    p.set_defaults(func=cmd_demo)

    p = command("evaluate", "consistency metrics of a video or frame folder (a table; --json for a file)")
    p.add_argument("video", help="video file (mp4, gif, ...) or folder of png/jpg frames")
    p.add_argument(
        "--masks",
        metavar="DIR",
        help="folder of foreground masks, one png per frame (white = foreground): foreground/background metrics",
    )
    p.add_argument("--prompt", metavar="TEXT", help="text for CLIP's text alignment (needs --clip)")
    p.add_argument(
        "--reference",
        metavar="PATH",
        help="pose renders or ground-truth frames (video or folder) for motion_epe",
    )
    p.add_argument("--clip", metavar="DIR", help="local CLIP model folder: CLIP consistency and text alignment")
    p.add_argument("--dino", metavar="DIR", help="local DINO ViT folder: subject consistency")
    p.add_argument(
        "--bucket", type=int, default=16, metavar="N", help="frames per time bucket of the table (default: %(default)s)"
    )
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON to FILE")
    p.set_defaults(func=cmd_evaluate)

    p = command("ablate", "run the baselines and ablations and write a report")
    p.add_argument("config", nargs="?", help="TOML ablation config (default: the --suite's sequences and variants)")
    p.add_argument(
        "--suite",
        default="default",
        choices=["default", "benchmark"],
        help="default: 3 sequences, every variant; benchmark: 12 sequences (24-96 frames, prompt "
        "schedules), the baselines against the defaults, 95%% bootstrap intervals (default: %(default)s)",
    )
    p.add_argument(
        "--out",
        default="runs/ablation",
        metavar="DIR",
        help="folder of every run and of the report (ablation.md/.json, report.html) (default: %(default)s)",
    )
    _add_set(p, "to every variant, after the demo presets and the config's [run.*]")
    _add_quiet(p)
    p.set_defaults(func=cmd_ablate)

    poses = _commands(
        command("poses", "pose utilities: render skeletons, extract keypoints from footage"), "poses_command"
    )
    p = command("render", "render a pose source to OpenPose-style skeleton PNGs (+ keypoints.npz)", poses)
    p.add_argument("src", help="pose source: OpenPose JSON file or folder, pose-image folder or pose video")
    p.add_argument("out", help="output folder: new, empty or an earlier render (replaced)")
    p.add_argument(
        "--height", type=int, default=512, metavar="PX", help="frame height in pixels (default: %(default)s)"
    )
    p.add_argument("--width", type=int, default=512, metavar="PX", help="frame width in pixels (default: %(default)s)")
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="resample to N frames (default: the source's count, or what --fps gives)",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="FPS",
        help="resample to FPS frames per second, > 0 (default: the source's rate; with --frames alone, the rate "
        "that keeps the duration)",
    )
    p.add_argument(
        "--framing",
        choices=["fit", "person"],
        default="fit",
        help="fit: the whole source canvas, letterboxed; person: a box around the person over the whole "
        "sequence (default: %(default)s)",
    )
    p.set_defaults(func=cmd_poses_render)

    p = command("extract", "RGB video or frames -> OpenPose *_keypoints.json (MediaPipe, offline)", poses)
    p.add_argument("src", help="video file or folder of png/jpg frames of a person")
    p.add_argument("out", help="output folder for the *_keypoints.json files")
    p.add_argument(
        "--format", choices=["body25", "coco18"], default="body25", help="keypoint layout (default: %(default)s)"
    )
    p.add_argument("--smooth", action="store_true", help="One-Euro filter the keypoints through time")
    p.add_argument(
        "--min-cutoff",
        type=float,
        default=1.0,
        metavar="HZ",
        help="with --smooth: One-Euro cutoff of a still joint, Hz; lower = smoother (default: %(default)s)",
    )
    p.add_argument(
        "--beta",
        type=float,
        default=0.02,
        help="with --smooth: One-Euro speed coefficient; higher = less lag (default: %(default)s)",
    )
    p.add_argument(
        "--min-visibility",
        type=float,
        default=0.5,
        metavar="V",
        help="joints whose MediaPipe visibility (0-1) is below V are missing (default: %(default)s)",
    )
    p.set_defaults(func=cmd_poses_extract)

    p = command("serve", "the local web app (Gradio): upload poses or footage, run, watch, compare")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default: %(default)s)")
    p.add_argument(
        "--runs",
        default="runs/app",
        metavar="DIR",
        help="folder of the app's run folders, listed and reopened (default: %(default)s)",
    )
    p.add_argument(
        "--model",
        default="demo",
        metavar="PATH",
        help="the model every job runs on: 'demo', a diffusers folder or a hub id, with its presets "
        "(default: %(default)s, the embedded demo model)",
    )
    p.set_defaults(func=cmd_serve)

    models = _commands(command("models", "model utilities: tiny random components for tests"), "models_command")
    p = command("make-tiny", "write tiny random components in the diffusers folder layout", models)
    p.add_argument("dir", help="output folder of the model")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random weights (default: %(default)s)")
    p.set_defaults(func=cmd_models_make_tiny)

    p = command("train-demo", "train the embedded demo model on the synthetic world")
    from vidtune.demo.train_options import add_arguments as add_train_demo_arguments

    add_train_demo_arguments(p)
    p.set_defaults(func=cmd_train_demo)
    return parser


# What to do about an OSError, by errno.
_OS_FIXES = {
    errno.ENOSPC: "free some space or write elsewhere (--out)",
    errno.EDQUOT: "free some space or write elsewhere (--out)",
    errno.EROFS: "the file system is read-only; write elsewhere (--out)",
    errno.EACCES: "no permission; write elsewhere or fix the permissions",
    errno.EPERM: "not permitted; write elsewhere or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.ENOENT: "check that the path exists",
    errno.EISDIR: "the path is a folder; give a file path",
}


def os_error_line(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an OSError: the path (or the output folder when the error names none), what, the fix."""
    where = exc.filename or getattr(args, "out", None) or getattr(args, "json", None)
    what = exc.strerror or str(exc)
    fix = _OS_FIXES.get(exc.errno or 0, "check the path and try again")
    return f"{where}: {what}; {fix}" if where else f"{what}; {fix}"


def _distributed() -> bool:
    """Whether this process runs in a torch.distributed group (without importing torch when it cannot)."""
    if "torch" not in sys.modules:
        return False
    from vidtune import distributed

    return distributed.current().enabled


def _error(message: str) -> int:
    """Print the one-line error (under torchrun: with the rank, after telling the other ranks) -> status 2."""
    if _distributed():
        from vidtune import distributed

        message = distributed.fail(message)
    print(f"vidtune: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VidtuneError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(os_error_line(exc, args))
    except Exception as exc:
        if not _distributed():
            raise
        return _error(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
    except KeyboardInterrupt:
        print("vidtune: interrupted; finished stages are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
