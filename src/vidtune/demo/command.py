"""`vidtune demo`: the whole method on the embedded demo model and an unseen synthetic pose sequence.

Renders a pose sequence from the synthetic world (seeds outside the training range), runs the
four stages with the demo presets, and writes the run folder: final.mp4, a side-by-side video
(pose | stage 1 | final | ground truth), metrics.json and report.html.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from vidtune import artifacts as A
from vidtune import atomic
from vidtune import config as C
from vidtune.errors import VidtuneError
from vidtune.model_choice import DEMO_MODEL, model_presets

DEMO_SIZE = 64
DEMO_FPS = 8.0
UNSEEN_SEED_OFFSET = 1_000_000  # training sequences use small seeds; the demo never reuses them
DEFAULT_PROMPT = "a red figure walking on a snowy field during the day"

# The demo presets (every value that differs from the SD defaults, and why: see the file) ship with the
# model, so that the Python API's `VidtunePipeline.from_pretrained("demo")` starts from them too.
DEMO_OVERRIDES = model_presets(DEMO_MODEL)


def demo_model_path() -> Path:
    """The embedded demo model folder; a clear error if the package was installed without it."""
    if not (DEMO_MODEL / "model_index.json").is_file():
        raise VidtuneError(
            f"{DEMO_MODEL}: the embedded demo model is missing; reinstall vidtune or remake it with "
            "`vidtune train-demo --out DIR` (see src/vidtune/demo/model/README.md)"
        )
    return DEMO_MODEL


def write_source(
    out: Path,
    motion: str,
    frames: int,
    prompt: str,
    seed: int,
    height: int = DEMO_SIZE,
    width: int = DEMO_SIZE,
    fps: float = DEMO_FPS,
    schedule: dict[int, str] | None = None,
    transition: int = 0,
):
    """Render the ground-truth sequence and write source/poses (pose PNGs + keypoints.npz), source/gt.

    With a prompt `schedule` ({first_frame: prompt}) the ground truth follows it: each segment is
    rendered with its own prompt (`make_scheduled_sequence`)."""
    from vidtune.demo.synthetic.world import make_scheduled_sequence, make_sequence
    from vidtune.encoding import write_videos
    from vidtune.video import write_frames_png

    if schedule and len(schedule) > 1:
        seq = make_scheduled_sequence(
            motion, frames, schedule, seed=UNSEEN_SEED_OFFSET + seed, height=height, width=width, transition=transition
        )
    else:
        seq = make_sequence(motion, frames, prompt, seed=UNSEEN_SEED_OFFSET + seed, height=height, width=width)
    src = out / "source"
    with atomic.atomic_dir(src / "poses") as tmp:
        write_frames_png(seq.pose_images, tmp, prefix="pose_")
        np.savez(
            tmp / "keypoints.npz",
            keypoints=seq.keypoints.astype(np.float32),
            has_keypoints=True,
            width=width,
            height=height,
            fps=fps,
            source=f"synthetic:{motion}:{seed}",
        )
    with atomic.atomic_dir(src / "gt_frames") as tmp:
        write_frames_png(seq.frames, tmp)
    with atomic.atomic_dir(src / "gt_masks") as tmp:
        write_frames_png(np.repeat(seq.masks[..., None].astype(np.uint8) * 255, 3, axis=-1), tmp)
    write_videos(seq.frames, src / "ground_truth.mp4", C.DEFAULT_OUTPUT, fps)  # encoded as the stages' videos
    return seq


def check_model_knows(prompt: str, model: Path) -> None:
    """A prompt of the grammar whose words the demo model's tokenizer never saw (a model trained before
    the identity details: stripes, hats) is one line naming them, before any stage runs: the model would
    only spell them out in letters it never learned to draw."""
    from vidtune.demo.synthetic.grammar import parse_prompt

    parse_prompt(prompt)  # not in the grammar: its own one-line error lists the known words
    vocab_file = model / "tokenizer" / "vocab.json"
    if not vocab_file.is_file():
        return
    vocab = json.loads(vocab_file.read_text())
    unknown = [w for w in dict.fromkeys(prompt.lower().split()) if w + "</w>" not in vocab]
    if unknown:
        raise VidtuneError(
            f"the demo model in {model} was trained without the words {', '.join(map(repr, unknown))} "
            f"(identity details came later); drop them from the prompt, or retrain it: vidtune train-demo --out DIR --install"
        )


def demo_config(out: Path, prompt: str, steps: int | None, seed: int, overrides: list[str]) -> C.RunConfig:
    """The demo presets on top of the defaults, then the user's --set overrides."""
    base = C.apply_overrides(C.RunConfig(), DEMO_OVERRIDES + [*C.FRAME_BY_FRAME, f"model.path={demo_model_path()}"])
    base = replace(base, inputs=replace(base.inputs, poses=str(out / "source" / "poses"), prompt=prompt))
    extra = [f"sampling.steps={steps}"] if steps else []
    extra += C.seed_overrides(seed)
    return C.apply_overrides(base, extra + list(overrides))


def side_by_side(out_path: Path, panels: list[tuple[str, Path]], fps: float, scale: int = 4) -> Path:
    """Frame folders ``panels`` ((label, folder)) in one labelled row, upscaled (nearest); mp4."""
    from vidtune.video import grid_video

    return grid_video(out_path, panels, fps, scale=scale, cols=len(panels))


def demo_metrics(out: Path, seq) -> dict:
    """Weight-free consistency + motion-following metrics of every stage's frames and the ground truth,
    and their adherence to the poses and the prompt (`vidtune.demo.synthetic.adherence.video_adherence`)."""
    from vidtune.demo.synthetic.adherence import video_adherence
    from vidtune.evaluation.evaluate import evaluate_video
    from vidtune.video import read_frames

    videos = {
        "ground_truth": out / "source" / "gt_frames",
        "stage1": out / A.stage_dir(1) / A.FRAMES,
        "stage2": out / A.stage_dir(2) / A.FRAMES,
        "final": out / A.stage_dir(4) / A.FRAMES,
    }
    result = {}
    for name, folder in videos.items():
        if folder.is_dir():
            r = evaluate_video(
                str(folder), masks=str(out / "source" / "gt_masks"), reference=str(out / "source" / "poses")
            )
            result[name] = {**r["metrics"], "adherence": video_adherence(read_frames(folder), seq)}
    return result


def run_demo(
    out: str = "runs/demo",
    frames: int = 24,
    motion: str = "walk",
    prompt: str | None = None,
    seed: int = 0,
    steps: int | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> Path:
    """Render an unseen pose sequence, run the four stages with the demo presets, write the report.

    `log` receives every message (the pipeline's and the demo's own), one line each."""
    import time

    from vidtune.api import VidtunePipeline
    from vidtune.evaluation.report import table_html, write_report

    root = Path(out)
    if root.exists() and not root.is_dir():
        raise VidtuneError(f"{root}: the output folder is a file; pass --out with a folder path")
    start = time.perf_counter()
    text = prompt or DEFAULT_PROMPT
    cfg = demo_config(root, text, steps, seed, overrides or [])
    from vidtune.method.prompts import prompt_schedule

    schedule = prompt_schedule(cfg.inputs) if cfg.inputs.prompts else None
    for words in [text, *(schedule or {}).values()]:
        check_model_knows(words, Path(cfg.model.path))
    seq = write_source(root, motion, frames, text, seed, schedule=schedule, transition=cfg.codenoise.transition)
    summary = VidtunePipeline.from_config(cfg)(config=cfg, run_dir=root, progress=progress, log=log).summary
    side = side_by_side(
        root / "side_by_side.mp4",
        [
            ("pose", root / A.INPUTS / A.INPUT_POSES),
            ("stage 1 (per frame)", root / A.stage_dir(1) / A.FRAMES),
            ("final (four stages)", root / A.stage_dir(4) / A.FRAMES),
            ("ground truth", root / "source" / "gt_frames"),
        ],
        DEMO_FPS,
    )
    metrics = demo_metrics(root, seq)
    atomic.write_json(root / "metrics.json", metrics)
    columns = {  # metrics.json key -> a header short enough for the table to fit a page
        "flicker.mean_abs_diff": "flicker",
        "flicker.mean_abs_diff_bg": "flicker bg",
        "warp_err_dis.all": "warp error",
        "bg_stability.std": "bg std",
        "motion_epe.epe": "motion EPE",
        "adherence.pose_iou": "pose IoU",
        "adherence.identity_consistency": "identity",
        "adherence.colour_accuracy": "colour acc.",
        "adherence.scene_accuracy": "scene acc.",
    }
    rows = [[name] + [_get(m, k) for k in columns] for name, m in metrics.items()]
    timing = [[f"stage {k}", status, secs] for k, (status, secs) in summary.stages.items()]
    write_report(
        root / "report.html",
        f"vidtune demo: {text} ({motion}, {frames} frames)",
        [
            (
                "Metrics (0-255 scale for |dI|; lower is more consistent)",
                table_html(["video", *columns.values()], rows),
            ),
            ("Stages", table_html(["stage", "status", "seconds"], timing)),
        ],
        videos=[("pose | stage 1 (per frame) | final (four stages) | ground truth", side)],
    )
    log(summary.line())
    log(
        f"vidtune demo: {time.perf_counter() - start:.0f}s; final video {root / 'final.mp4'}, side by side {side}, "
        f"metrics {root / 'metrics.json'}, report {root / 'report.html'}"
    )
    return root


def _get(metrics: dict, dotted: str) -> float | str:
    name, key = dotted.split(".")
    value = metrics.get(name, {}).get(key)
    return "-" if value is None else float(value)
