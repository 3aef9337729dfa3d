"""Self-contained HTML reports: videos and images embedded as base64, tables as HTML.

A report written at the root of a run folder (``report.html`` beside ``config.toml`` and
``inputs/``) also shows what the run folder holds (:func:`run_sections`): the per-frame-pair
flicker of every stage on one plot, the metrics as a table and as bars against the ground truth,
a strip of frames from each stage, the stage times, the resolved config, the machine and the
command that reproduces the run. Plots are drawn with matplotlib (no pyplot, so it is safe in the
app's worker thread), written as PNGs under ``<run>/plots/`` (the app shows them too) and
embedded, so the page works offline.
"""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidtune import artifacts as A
from vidtune import atomic

# The frame folders of a run, in stage order, and how they are labelled.
STAGE_FOLDERS: tuple[tuple[str, str], ...] = (
    ("stage 1 (per frame)", "stage1/frames"),
    ("stage 2 (fused)", "stage2/frames"),
    ("final (stage 4)", "stage4/frames"),
    ("ground truth", "source/gt_frames"),
)
METRICS_FILE = "metrics.json"
# One colour per video in every plot (metrics.json names; the frame folders' labels map to them).
VIDEO_COLOURS = {"stage1": "C0", "stage2": "C1", "final": "C2", "ground_truth": "#777777"}
LABEL_VIDEOS = {
    "stage 1 (per frame)": "stage1",
    "stage 2 (fused)": "stage2",
    "final (stage 4)": "final",
    "ground truth": "ground_truth",
}
STRIP_FRAMES = 6
# Metrics shown as bars: (metrics.json name.key, label, lower is better)
BAR_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("flicker.mean_abs_diff", "flicker |dI|", True),
    ("flicker.mean_abs_diff_bg", "background flicker", True),
    ("warp_err_dis.all", "warp error", True),
    ("bg_stability.std", "background std", True),
    ("motion_epe.epe", "motion EPE", True),
)


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def table_html(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """An HTML table; floats shown with 4 significant digits."""

    def cell(v: object) -> str:
        return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(
    path: str | Path,
    title: str,
    sections: Sequence[tuple[str, str]],
    videos: Sequence[tuple[str, Path]] = (),
    images: Sequence[tuple[str, Path]] = (),
    run_dir: str | Path | None = None,
) -> Path:
    """Write one HTML file: title, videos (mp4, embedded), images (png, embedded), then HTML sections.

    ``run_dir``: the run folder whose plots, times, config, machine and command are added after
    the sections (:func:`run_sections`); by default the report's own folder when it is one.
    """
    root = Path(run_dir) if run_dir is not None else Path(path).parent
    if is_run_folder(root):
        sections = list(sections) + run_sections(root)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for caption, video in videos:
        if Path(video).is_file():
            parts.append(
                f"<figure><video controls loop autoplay muted playsinline "
                f'src="{_data_uri(Path(video), "video/mp4")}"></video>'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    for caption, image in images:
        if Path(image).is_file():
            parts.append(
                f'<figure><img src="{_data_uri(Path(image), "image/png")}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><div class='scroll'>{body}</div>")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
        "video,img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}"
        "pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px}.scroll{overflow-x:auto}"
    )
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    atomic.write_text(path, doc)
    return Path(path)


# --- the run folder's sections ---------------------------------------------------------------


def is_run_folder(root: Path) -> bool:
    """Whether ``root`` is a run folder (a resolved config.toml and an inputs/ folder)."""
    return (root / A.CONFIG).is_file() and (root / "inputs").is_dir()


def frame_folders(root: Path) -> list[tuple[str, Path]]:
    """The run's frame folders that exist, labelled, in stage order."""
    return [(label, root / rel) for label, rel in STAGE_FOLDERS if (root / rel).is_dir()]


def pair_flicker(frames: np.ndarray) -> np.ndarray:
    """Mean |I_t+1 - I_t| of each consecutive frame pair, 0-255 (`metrics.flicker_curve`):
    uint8 ``(N, H, W, 3)`` -> float64 ``(N - 1,)``."""
    from vidtune.evaluation.metrics import flicker_curve

    return np.asarray(flicker_curve(frames), dtype=np.float64)


def _read(folder: Path) -> np.ndarray:
    from vidtune.video import read_frames

    return np.stack(list(read_frames(folder)))


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def plot_flicker(curves: Sequence[tuple[str, np.ndarray]], out: Path) -> Path:
    """One plot: the per-frame-pair flicker of every stage."""
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    for label, curve in curves:
        ax.plot(
            np.arange(1, len(curve) + 1),
            curve,
            label=f"{label} (mean {curve.mean():.1f})",
            color=VIDEO_COLOURS.get(LABEL_VIDEOS.get(label, ""), None),
            lw=2.2 if label.startswith("final") else 1.4,
            ls="--" if label == "ground truth" else "-",
        )
    ax.set_xlabel("frame pair (t-1, t)")
    ax.set_ylabel("mean |dI| (0-255)")
    ax.set_title("Flicker between consecutive frames (lower is steadier)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def _metric(metrics: dict, dotted: str) -> float | None:
    name, key = dotted.split(".")
    value = metrics.get(name, {}).get(key) if isinstance(metrics.get(name), dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def plot_metric_bars(metrics: dict[str, dict], out: Path) -> Path | None:
    """Bars of each metric per video (the ground truth's bar, when there is one, is the target)."""
    shown = [(k, label) for k, label, _ in BAR_METRICS if any(_metric(m, k) is not None for m in metrics.values())]
    if not shown:
        return None
    videos = [v for v in VIDEO_COLOURS if v in metrics] + [v for v in metrics if v not in VIDEO_COLOURS]
    fig = _figure(min(2.2 * len(shown) + 1, 11), 3.0)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    for ax, (key, label) in zip(axes, shown):
        values = [_metric(metrics[v], key) for v in videos]
        colours = [VIDEO_COLOURS.get(v, f"C{3 + i}") for i, v in enumerate(videos)]
        ax.bar(range(len(videos)), [np.nan if v is None else v for v in values], color=colours)
        ax.set_xticks(range(len(videos)), [v.replace("_", " ") for v in videos], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{label} (lower better)", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def plot_strips(folders: Sequence[tuple[str, Path]], out: Path, count: int = STRIP_FRAMES) -> Path | None:
    """A row of ``count`` evenly spaced frames from each stage, stages top to bottom."""
    rows = [(label, _read(folder)) for label, folder in folders]
    rows = [(label, frames) for label, frames in rows if len(frames)]
    if not rows:
        return None
    n = min(len(frames) for _, frames in rows)
    picks = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))
    fig = _figure(1.3 * len(picks) + 1.2, 1.35 * len(rows))
    axes = fig.subplots(len(rows), len(picks), squeeze=False)
    for r, (label, frames) in enumerate(rows):
        for c, t in enumerate(picks):
            ax = axes[r][c]
            ax.imshow(frames[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"frame {t}", fontsize=8)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


def stage_times(root: Path) -> list[list[object]]:
    """Rows (stage, seconds) from each finished stage's done.json."""
    from vidtune.config import STAGE_NUMBERS
    from vidtune.rundir import RunDir

    rd = RunDir(root)
    rows = []
    for k in STAGE_NUMBERS:
        info = rd.done_info(k)
        if info is not None:
            rows.append([f"stage {k}", float(info.get("seconds", 0.0))])
    return rows


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ]
        return names[0] if names else cpu
    except OSError:
        return cpu


def machine() -> str:
    """The CPU model, cores, GPU (or none) and the torch / Python versions."""
    cpu = cpu_name()
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_version = torch.__version__
    except Exception:  # noqa: BLE001 - a description only
        gpu, torch_version = "GPU unknown", "not importable"
    return (
        f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, {gpu}; torch {torch_version}, "
        f"Python {platform.python_version()}"
    )


def reproduce_commands(root: Path) -> list[tuple[str, str]]:
    """(where, command): the command that reruns the run from its resolved config in the run folder
    (portable: the config names the demo model ``demo`` and its paths relative to the folder), and the
    command as it was typed (when it came from the `vidtune` command line; its paths are the working
    folder's)."""
    commands = [(f"In the run folder ({root.name}/)", f"vidtune run {A.CONFIG} --out .")]
    if Path(sys.argv[0]).name == "vidtune" and len(sys.argv) > 1 and sys.argv[1] != "serve":
        commands.append(("As typed, in the folder it was run from", shlex.join(["vidtune", *sys.argv[1:]])))
    return commands


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.is_file():
        return ""
    return f'<img alt="{html.escape(alt)}" src="{_data_uri(path, "image/png")}">'


def write_plots(root: Path) -> dict[str, Path]:
    """Draw the run's plots into ``<root>/plots/``: flicker.png, metrics.png, strip.png (those that apply)."""
    folders = frame_folders(root)
    plots: dict[str, Path] = {}
    curves = [(label, pair_flicker(_read(folder))) for label, folder in folders]
    curves = [(label, c) for label, c in curves if len(c)]
    if curves:
        plots["flicker"] = plot_flicker(curves, root / "plots" / "flicker.png")
    metrics_path = root / METRICS_FILE
    if metrics_path.is_file():
        bars = plot_metric_bars(json.loads(metrics_path.read_text()), root / "plots" / "metrics.png")
        if bars is not None:
            plots["metrics"] = bars
    strip = plot_strips(folders, root / "plots" / "strip.png") if folders else None
    if strip is not None:
        plots["strip"] = strip
    return plots


def metrics_table(metrics: dict[str, dict]) -> str:
    """Every scalar metric (dotted name) as a row, one column per video: it stays readable with many metrics."""
    keys: list[str] = []
    for m in metrics.values():
        for name, values in m.items():
            if isinstance(values, dict):
                keys += [
                    f"{name}.{k}"
                    for k, v in values.items()
                    if isinstance(v, (int, float)) and f"{name}.{k}" not in keys
                ]
    rows = [[k] + ["-" if _metric(m, k) is None else _metric(m, k) for m in metrics.values()] for k in keys]
    return table_html(["metric"] + list(metrics), rows)


def run_sections(root: Path) -> list[tuple[str, str]]:
    """The run folder's sections: plots, metrics, stage times, config, machine, command."""
    plots = write_plots(root)
    sections = []
    if "flicker" in plots:
        sections.append(("Flicker per frame pair, every stage", _img(plots["flicker"], "flicker curves")))
    metrics_path = root / METRICS_FILE
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text())
        body = _img(plots.get("metrics"), "metric bars") + metrics_table(metrics)
        sections.append(
            ("Metrics of every video" + (" (grey: ground truth)" if "ground_truth" in metrics else ""), body)
        )
    if "strip" in plots:
        sections.append(("Frames from each stage", _img(plots["strip"], "frame strip")))
    times = stage_times(root)
    if times:
        total = sum(float(s) for _, s in times)
        sections.append(("Stage times", table_html(["stage", "seconds"], times + [["total", total]])))
    commands = "".join(
        f"<p>{html.escape(where)}:</p><pre>{html.escape(c)}</pre>" for where, c in reproduce_commands(root)
    )
    sections.append(("Reproduce", commands + f"<p>Machine: {html.escape(machine())}</p>"))
    config = html.escape((root / A.CONFIG).read_text())
    sections.append(
        ("Resolved config", f"<details><summary>config.toml (every field)</summary><pre>{config}</pre></details>")
    )
    return sections
