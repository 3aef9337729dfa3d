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
import errno
import sys
from dataclasses import replace
from pathlib import Path

from vidtune.errors import VidtuneError


def _stages(text: str) -> list[int]:
    try:
        stages = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--stages expects numbers like 1,2,3,4, got {text!r}") from None
    if not stages or any(s not in (1, 2, 3, 4) for s in stages):
        raise argparse.ArgumentTypeError(f"--stages expects numbers among 1,2,3,4, got {text!r}")
    return stages


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="TOML run config (optional: flags suffice)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config field, e.g. --set sampling.steps=20 (repeatable)",
    )
    p.add_argument("--model", help="model folder or hub id (model.path)")
    p.add_argument("--adapter", help="T2I-Adapter folder or hub id (model.adapter)")
    p.add_argument("--sam", help="SAM folder or hub id (model.sam); default: weight-free GrabCut masks")
    p.add_argument("--allow-pickle", action="store_true", help="allow .bin/.ckpt (pickle) weights")
    p.add_argument(
        "--poses", help="OpenPose JSON folder, pose-image folder, pose video or RGB video of a person (inputs.poses)"
    )
    p.add_argument("--prompt", help="text prompt (inputs.prompt)")
    p.add_argument("--frames", type=int, help="resample the poses to N frames (inputs.frames)")
    p.add_argument("--steps", type=int, help="sampling steps (sampling.steps)")
    p.add_argument("--seed", type=int, help="seed of every stage")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)


def build_config(args: argparse.Namespace):
    """Config file (or defaults) + flags + --set overrides, in that order."""
    from vidtune import config as C

    cfg = C.load(args.config) if args.config else C.RunConfig()
    flags = []
    for flag, key in [
        ("model", "model.path"),
        ("adapter", "model.adapter"),
        ("sam", "model.sam"),
        ("poses", "inputs.poses"),
        ("prompt", "inputs.prompt"),
        ("frames", "inputs.frames"),
        ("steps", "sampling.steps"),
        ("height", "inputs.height"),
        ("width", "inputs.width"),
    ]:
        value = getattr(args, flag, None)
        if value is not None:
            flags.append(f"{key}={value}" if not isinstance(value, str) else f"{key}={value}")
    if getattr(args, "allow_pickle", False):
        flags.append("model.allow_pickle=true")
    if getattr(args, "seed", None) is not None:
        flags += C.seed_overrides(args.seed)
    cfg = C.apply_overrides(cfg, flags + list(args.overrides))
    if not _adapter_given(args) and Path(cfg.model.path, "adapter").is_dir():
        cfg = replace(cfg, model=replace(cfg.model, adapter=""))  # the model folder's own adapter/
    return cfg


def _adapter_given(args: argparse.Namespace) -> bool:
    """Whether the user named an adapter (--adapter, --set model.adapter=..., or [model] adapter in the TOML)."""
    from vidtune import config as C

    if getattr(args, "adapter", None) is not None:
        return True
    if any(o.split("=", 1)[0].strip() == "model.adapter" for o in args.overrides):
        return True
    if args.config:
        model = C.read_toml(args.config).get("model")
        return isinstance(model, dict) and "adapter" in model
    return False


def cmd_run(args: argparse.Namespace) -> int:
    from vidtune.api import VidtunePipeline

    cfg = build_config(args)
    if args.print_config:
        from vidtune.config import to_toml

        print(to_toml(cfg), end="")
        return 0
    out = Path(args.out or Path("runs") / (Path(args.config).stem if args.config else "run"))
    from vidtune import distributed

    with distributed.launch(cfg.model.device) as world:
        result = VidtunePipeline.from_config(cfg)(
            config=cfg, run_dir=out, stages=args.stages, progress=not args.quiet, log=print
        )
        if world.is_main:
            print(result.summary.line())
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from vidtune.plan import plan_report

    print(plan_report(build_config(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from vidtune.demo.command import run_demo

    if args.steps is not None and args.steps < 1:
        raise VidtuneError(f"--steps {args.steps}: the number of sampling steps must be >= 1; e.g. --steps 20")
    if args.frames < 1:
        raise VidtuneError(f"--frames {args.frames}: the demo needs at least one frame; e.g. --frames 24")
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
    from vidtune.evaluation.ablation import run_ablation

    run_ablation(args.config, out=args.out, overrides=args.overrides, progress=not args.quiet, suite=args.suite)
    return 0


def cmd_poses_render(args: argparse.Namespace) -> int:
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

    serve(host=args.host, port=args.port, runs=args.runs)
    return 0


def cmd_models_make_tiny(args: argparse.Namespace) -> int:
    from vidtune.testing import make_tiny

    path = make_tiny(args.dir, seed=args.seed)
    print(f"vidtune: tiny random components written to {path}")
    return 0


def cmd_train_demo(args: argparse.Namespace) -> int:
    from vidtune.demo.train import run_from_args

    return run_from_args(args)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidtune",
        description="Long, temporally consistent, pose-guided video "
        "generation: separate tuning, average fusion, combined tuning, co-denoising.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the four stages (resumes a run folder)")
    _add_run_flags(p)
    p.add_argument("--out", help="run folder (default runs/<config name>)")
    p.add_argument("--stages", type=_stages, default=[1, 2, 3, 4], help="comma list, e.g. 1,2 (default 1,2,3,4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--print-config", action="store_true", help="print the resolved config (every field) and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("plan", help="print stage 4's clips, prompts, merge weights and cost (loads no model)")
    _add_run_flags(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("demo", help="the whole method on the embedded demo model and a synthetic pose sequence")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--motion", default="walk")
    p.add_argument("--prompt", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("evaluate", help="consistency metrics of a video or frame folder")
    p.add_argument("video")
    p.add_argument("--masks", help="folder of foreground masks (png, white = foreground)")
    p.add_argument("--prompt")
    p.add_argument("--reference", help="pose video/folder (or ground truth) for motion_epe")
    p.add_argument("--clip", help="local CLIP folder for CLIP metrics")
    p.add_argument("--dino", help="local DINO folder for subject consistency")
    p.add_argument("--bucket", type=int, default=16, help="frames per time bucket")
    p.add_argument("--json", help="write the metrics as JSON here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("ablate", help="run the baselines and ablations and write a report")
    p.add_argument("config", nargs="?", help="TOML ablation config (default: the --suite's sequences)")
    p.add_argument(
        "--suite",
        default="default",
        choices=["default", "benchmark"],
        help="default: 3 sequences, every variant; benchmark: 12 sequences (24-96 frames, prompt "
        "schedules), the baselines against the defaults, 95%% bootstrap intervals",
    )
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_ablate)

    poses = sub.add_parser("poses", help="pose utilities").add_subparsers(dest="poses_command", required=True)
    p = poses.add_parser("render", help="render a pose source to OpenPose-style skeleton PNGs")
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--frames", type=int, default=None)
    p.add_argument("--fps", type=float, default=None)
    p.add_argument("--framing", choices=["fit", "person"], default="fit")
    p.set_defaults(func=cmd_poses_render)

    p = poses.add_parser("extract", help="RGB video or frames -> OpenPose *_keypoints.json (MediaPipe, offline)")
    p.add_argument("src", help="video file or folder of png/jpg frames of a person")
    p.add_argument("out", help="output folder for the *_keypoints.json files")
    p.add_argument("--format", choices=["body25", "coco18"], default="body25")
    p.add_argument("--smooth", action="store_true", help="One-Euro filter the keypoints through time")
    p.add_argument(
        "--min-cutoff", type=float, default=1.0, help="One-Euro cutoff of a still joint, Hz (lower = smoother)"
    )
    p.add_argument("--beta", type=float, default=0.02, help="One-Euro speed coefficient (higher = less lag)")
    p.add_argument("--min-visibility", type=float, default=0.5, help="joints less visible than this are missing")
    p.set_defaults(func=cmd_poses_extract)

    p = sub.add_parser("serve", help="the local web app (Gradio): upload poses or footage, run, watch, compare")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--runs", default="runs/app", help="folder of the app's run folders (listed and reopened)")
    p.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="model utilities").add_subparsers(dest="models_command", required=True)
    p = models.add_parser("make-tiny", help="write tiny random components in the diffusers folder layout")
    p.add_argument("dir")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_models_make_tiny)

    p = sub.add_parser("train-demo", help="train the embedded demo model on the synthetic world")
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
