"""The app's jobs, without any web code: a form -> a normal run folder -> videos, metrics, report.

A job is a run of the four stages on the app's model (`vidtune serve --model`, the embedded demo model
by default; the model's presets with the form's settings on top) over a normal run folder under the app's runs folder, so the CLI can
resume or rerun it (`vidtune run <run>/config.toml --out <run>`). The pose source is a synthetic
motion (with its ground truth), or an upload: a zip of OpenPose JSON or pose images, a pose
video, or an RGB video of a person (poses extracted with MediaPipe). Live progress is read from
the stages' own tqdm bars (their live instances are polled, nothing is patched) and the
pipeline's log lines.
"""

from __future__ import annotations

import re
import shutil
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import STAGE_NUMBERS
from vidtune.errors import VidtuneError

if TYPE_CHECKING:
    from vidtune.models import Components


UPLOAD_VIDEO_SUFFIXES = (".mp4", ".gif", ".webm", ".avi", ".mov", ".mkv", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
JOB_FILE = "app_job.json"  # the form that made a run (the app reopens it)


@dataclass(frozen=True)
class JobRequest:
    """The app's form. `upload` is the uploaded file's path (None = the synthetic `motion`); `model` the
    model string `vidtune serve --model` was given (`vidtune.model_choice`: "demo", a folder, a hub id)."""

    motion: str = "walk"
    upload: str | None = None
    prompt: str = "a red figure walking on a snowy field during the day"
    frames: int = 16
    steps: int = 20
    clip_length: int = 8
    stride: int = 4
    attention: str = "middle"
    trainable: str = "lora"  # the demo presets (src/vidtune/demo/model/vidtune.toml), as the page shows
    tuning_steps: int = 60
    seed: int = 0
    extra: list[str] = field(default_factory=list)  # more `section.key=value` overrides
    model: str = "demo"


@dataclass
class JobResult:
    """What a finished job shows: the run folder and its outputs (None where absent)."""

    root: Path
    final: Path | None
    side_by_side: Path | None
    report: Path | None
    metrics: dict
    plots: dict[str, Path]
    summary: str


# --- the form -> config ----------------------------------------------------------------------


def parse_prompt_schedule(text: str) -> tuple[str, dict[str, str]]:
    """One prompt, or a schedule of lines ``FIRST_FRAME: prompt`` -> (prompt, {frame: prompt})."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise VidtuneError("the prompt is empty: write one prompt, or lines like '0: a red figure ...'")
    ranges = [re.match(r"^(\d+)\s*:\s*(.+)$", ln) for ln in lines]
    if len(lines) == 1 and ranges[0] is None:
        return lines[0], {}
    if any(m is None for m in ranges):
        bad = lines[[m is None for m in ranges].index(True)]
        raise VidtuneError(
            f"prompt schedule line {bad!r}: write 'FIRST_FRAME: prompt', e.g. '0: a red figure walking ...'"
        )
    schedule = {m.group(1): m.group(2).strip() for m in ranges}
    if "0" not in schedule:
        raise VidtuneError("prompt schedule: the first line must start at frame 0, e.g. '0: a red figure ...'")
    return schedule["0"], schedule


def job_overrides(req: JobRequest) -> list[str]:
    """The form's settings as `section.key=value` overrides on the demo presets."""
    for name, value, low in (
        ("frames", req.frames, 2),
        ("steps", req.steps, 1),
        ("clip length", req.clip_length, 2),
        ("stride", req.stride, 1),
        ("tuning steps", req.tuning_steps, 0),
    ):
        if int(value) < low:
            raise VidtuneError(f"{name} = {value}: must be at least {low}")
    checkpoint = max(1, int(req.tuning_steps))
    return [
        f"inputs.frames={int(req.frames)}",
        f"codenoise.clip_length={int(req.clip_length)}",
        f"codenoise.stride={int(req.stride)}",
        f"codenoise.attention={req.attention}",
        "codenoise.shrink_clip=true",
        f"tuning.trainable={req.trainable}",
        f"tuning.steps={int(req.tuning_steps)}",
        f"tuning.checkpoint_every={checkpoint}",
        *req.extra,
    ]


def new_run_dir(runs: Path, req: JobRequest) -> Path:
    """A fresh run folder named by time and source."""
    name = Path(req.upload).stem if req.upload else req.motion
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:32].strip("-") or "run"
    root = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    suffix = 1
    while root.exists():
        suffix += 1
        root = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{suffix}"
    return root


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                target = (dest / info.filename).resolve()
                if not target.is_relative_to(dest.resolve()):
                    raise VidtuneError(
                        f"{archive.name}: holds a path outside the archive ({info.filename}); re-zip the folder"
                    )
            zf.extractall(dest)
    except zipfile.BadZipFile:
        raise VidtuneError(
            f"{archive.name}: not a valid zip file; zip the folder of *_keypoints.json or pose images"
        ) from None


def _pose_folder(dest: Path, name: str) -> Path:
    """The folder inside an unpacked zip that holds the keypoint JSON or images."""
    candidates = sorted({p.parent for p in dest.rglob("*_keypoints.json")}, key=lambda p: len(p.parts))
    if not candidates:
        candidates = sorted(
            {p.parent for p in dest.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and "__MACOSX" not in p.parts},
            key=lambda p: len(p.parts),
        )
    if not candidates:
        raise VidtuneError(f"{name}: no *_keypoints.json or png/jpg frames inside; zip the folder that holds them")
    return candidates[0]


def place_upload(upload: str | Path, root: Path) -> str:
    """Copy / unpack the upload into ``<root>/source/`` and return the pose source path for the run."""
    src = Path(upload)
    if not src.is_file():
        raise VidtuneError(f"{src.name}: the upload is missing; upload the file again")
    suffix = src.suffix.lower()
    dest = root / "source"
    dest.mkdir(parents=True, exist_ok=True)
    if suffix == ".zip":
        _safe_extract(src, dest / "upload")
        return str(_pose_folder(dest / "upload", src.name))
    if suffix in UPLOAD_VIDEO_SUFFIXES:
        target = dest / f"upload{suffix}"
        shutil.copyfile(src, target)
        return str(target)
    if suffix == ".json":
        (dest / "upload").mkdir(exist_ok=True)
        target = dest / "upload" / (src.stem if src.stem.endswith("_keypoints") else "frame_000000000000_keypoints")
        shutil.copyfile(src, target.with_suffix(".json"))
        return str(dest / "upload")
    raise VidtuneError(
        f"{src.name}: unsupported upload {suffix!r}; upload a zip of OpenPose *_keypoints.json or pose "
        f"images, a pose video or an RGB video of a person ({', '.join(UPLOAD_VIDEO_SUFFIXES)})"
    )


def job_config(req: JobRequest, root: Path, poses_path: str):
    """The model's presets (`vidtune.model_choice.run_config`) + the form's settings, with the pose source
    and prompt(s). Stage 1 runs to the end, as in `vidtune demo`: the page shows it as frame-by-frame
    generation beside the result."""
    from dataclasses import replace

    from vidtune import config as C
    from vidtune.model_choice import run_config

    prompt, schedule = parse_prompt_schedule(req.prompt)
    form = [
        f"model.path={req.model}",
        f"sampling.steps={int(req.steps)}",
        *C.seed_overrides(req.seed),
        *C.FRAME_BY_FRAME,
    ]
    cfg = run_config([form, job_overrides(req)])
    return replace(cfg, inputs=replace(cfg.inputs, poses=poses_path, prompt=prompt, prompts=schedule))


# --- running ---------------------------------------------------------------------------------


def live_bars() -> list[dict]:
    """The progress bars alive right now (the stages' tqdm bars): desc, n, total, elapsed, rate."""
    from tqdm.std import tqdm

    with tqdm.get_lock():
        bars = list(getattr(tqdm, "_instances", []))
    out = []
    for bar in bars:
        try:
            d = bar.format_dict
        except (AttributeError, RuntimeError):
            continue
        out.append(
            {
                "desc": str(d.get("prefix") or ""),
                "n": int(d.get("n") or 0),
                "total": d.get("total"),
                "elapsed": float(d.get("elapsed") or 0.0),
                "rate": d.get("rate"),
            }
        )
    return out


def progress_line(bars: list[dict], log: list[str], started: float) -> str:
    """One readable status: the stage and step now, its time left, the time so far, the last log line."""
    parts = []
    for bar in bars:
        total = bar["total"]
        step = f"{bar['n']}/{total}" if total else f"{bar['n']}"
        left = ""
        if total and bar["rate"]:
            left = f", about {max(0.0, (total - bar['n']) / bar['rate']):.0f} s left"
        parts.append(f"**{bar['desc'] or 'working'}**: {step}{left}")
    now = f"{time.perf_counter() - started:.0f} s so far"
    last = log[-1].removeprefix("vidtune: ") if log else "starting"
    return " · ".join(parts + [now]) + f"\n\n{last}"


def run_job(
    req: JobRequest, root: Path, log: Callable[[str], None] = print, components: Components = None
) -> JobResult:
    """Make the run folder, run the four stages, write side-by-side video, metrics and report."""
    from vidtune.api import VidtunePipeline
    from vidtune.demo import command as demo
    from vidtune.evaluation.report import write_plots, write_report

    root.mkdir(parents=True, exist_ok=True)
    atomic.write_json(root / JOB_FILE, {k: v for k, v in req.__dict__.items()})
    prompt, _ = parse_prompt_schedule(req.prompt)
    seq = None
    if req.upload:
        poses_path = place_upload(req.upload, root)
    else:
        seq = demo.write_source(root, req.motion, int(req.frames), prompt, req.seed)
        poses_path = str(root / "source" / "poses")
    cfg = job_config(req, root, poses_path)
    summary = VidtunePipeline(components, cfg)(config=cfg, run_dir=root, log=log).summary
    log("vidtune: writing the side-by-side video, metrics and report")
    panels = [
        ("pose", root / A.INPUTS / A.INPUT_POSES),
        ("stage 1 (per frame)", root / A.stage_dir(1) / A.FRAMES),
        ("final (four stages)", root / A.stage_dir(4) / A.FRAMES),
    ]
    if seq is not None:
        panels.append(("ground truth", root / "source" / "gt_frames"))
    side = demo.side_by_side(root / "side_by_side.mp4", panels, cfg.inputs.fps or demo.DEMO_FPS)
    metrics = demo.demo_metrics(root, seq) if seq is not None else upload_metrics(root)
    atomic.write_json(root / "metrics.json", metrics)
    caption = "pose | stage 1 (per frame) | final (four stages)" + (" | ground truth" if seq is not None else "")
    report = write_report(root / "report.html", f"vidtune app: {prompt}", [], videos=[(caption, side)])
    return open_run(root, summary=summary.line(), plots=write_plots(root), report=report)


def upload_metrics(root: Path) -> dict:
    """Weight-free metrics of every stage's frames (no ground truth for an upload)."""
    from vidtune.evaluation.evaluate import evaluate_video

    result = {}
    for name, k in (("stage1", 1), ("stage2", 2), ("final", 4)):
        frames = root / A.stage_dir(k) / A.FRAMES
        if frames.is_dir():
            result[name] = evaluate_video(str(frames), reference=str(root / A.INPUTS / A.INPUT_POSES))["metrics"]
    return result


def list_runs(runs: Path) -> list[str]:
    """The run folders under ``runs``, newest first."""
    if not runs.is_dir():
        return []
    found = [p for p in runs.iterdir() if p.is_dir() and (p / A.CONFIG).is_file()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def open_run(
    root: Path, summary: str | None = None, plots: dict[str, Path] | None = None, report: Path | None = None
) -> JobResult:
    """What a run folder holds, for the app to show (a past run, or one just finished)."""
    import json

    def existing(p: Path) -> Path | None:
        return p if p.is_file() else None

    if not (root / A.CONFIG).is_file():
        raise VidtuneError(f"{root}: not a run folder (no config.toml); pick another run")
    metrics_path = root / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if plots is None:
        plots = {p.stem: p for p in sorted((root / "plots").glob("*.png"))}
    done = [k for k in STAGE_NUMBERS if (root / A.stage_dir(k) / A.DONE).is_file()]
    return JobResult(
        root=root,
        final=existing(root / A.FINAL_VIDEO),
        side_by_side=existing(root / "side_by_side.mp4"),
        report=report or existing(root / "report.html"),
        metrics=metrics,
        plots=plots,
        summary=summary or f"{root.name}: stages done {done or 'none'}",
    )
