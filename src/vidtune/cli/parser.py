"""The whole `vidtune` command line: every command and option, with its help; imports no torch."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from vidtune.cli.commands import (
    DEFAULT_FPS,
    DEMO_MOTIONS,
    DEMO_PROMPT,
    DEMO_STEPS,
    cmd_ablate,
    cmd_demo,
    cmd_evaluate,
    cmd_models_make_tiny,
    cmd_plan,
    cmd_poses_extract,
    cmd_poses_render,
    cmd_run,
    cmd_serve,
    cmd_train_demo,
)


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
    _add_source_flags(p)
    _add_generation_flags(p)
    _add_video_flags(p)


def _add_source_flags(p: argparse.ArgumentParser) -> None:
    """The config file, the model, adapter and SAM, and the pose source."""
    from vidtune import config as C

    m = C.ModelConfig
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


def _add_generation_flags(p: argparse.ArgumentParser) -> None:
    """Prompts, guidance, device and dtype, and stage 4's clips and attention."""
    from vidtune import config as C

    m, s, c = C.ModelConfig, C.SamplingConfig, C.CodenoiseConfig
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


def _add_video_flags(p: argparse.ArgumentParser) -> None:
    """Frames, frame rate, steps, seed and frame size."""
    from vidtune import config as C

    i, s = C.InputConfig, C.SamplingConfig
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

    _add_run_command(command)
    _add_plan_command(command)
    _add_demo_command(command)
    _add_evaluate_command(command)
    _add_ablate_command(command)
    _add_poses_command(command)
    _add_serve_command(command)
    _add_models_command(command)
    _add_train_demo_command(command)
    return parser


def _add_run_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune run`."""
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


def _add_plan_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune plan`."""
    p = command("plan", "print stage 4's clips, prompts, merge weights and cost (loads no model)")
    _add_run_flags(p)
    p.add_argument(
        "--measure",
        action="store_true",
        help="load the model and time one UNet evaluation on the run's device: adds a time estimate per stage",
    )
    p.set_defaults(func=cmd_plan)


def _add_demo_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune demo`."""
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


def _add_evaluate_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune evaluate`."""
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


def _add_ablate_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune ablate`."""
    p = command("ablate", "run the baselines and ablations and write a report")
    p.add_argument("config", nargs="?", help="TOML ablation config (default: the --suite's sequences and variants)")
    p.add_argument(
        "--suite",
        default="default",
        choices=["default", "benchmark", "long"],
        help="default: 3 sequences, every variant; benchmark: 12 sequences (24-96 frames, prompt "
        "schedules), the baselines against the defaults, 95%% bootstrap intervals; long: one 480-frame "
        "video, frame by frame against the method (default: %(default)s)",
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


def _add_poses_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune poses`."""
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


def _add_serve_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune serve`."""
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


def _add_models_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune models`."""
    models = _commands(command("models", "model utilities: tiny random components for tests"), "models_command")
    p = command("make-tiny", "write tiny random components in the diffusers folder layout", models)
    p.add_argument("dir", help="output folder of the model")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random weights (default: %(default)s)")
    p.set_defaults(func=cmd_models_make_tiny)


def _add_train_demo_command(command: Callable[..., argparse.ArgumentParser]) -> None:
    """`vidtune train-demo`."""
    p = command("train-demo", "train the embedded demo model on the synthetic world")
    from vidtune.demo.train_options import add_arguments as add_train_demo_arguments

    add_train_demo_arguments(p)
    p.set_defaults(func=cmd_train_demo)
