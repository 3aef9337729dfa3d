"""The ablation's outputs: ablation.md (tables), report.html, the bar and flicker plots, the grid videos.

Tables show `mean [95% bootstrap interval]` over sequences per variant and metric (`TABLE_METRICS`
and the adherence keys that were measured), one metric per sequence, and `full` against each
baseline sequence by sequence (`paired_table`). Plots are matplotlib figures without pyplot;
every file is written atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vidtune import atomic
from vidtune.benchmark.scoring import bootstrap_interval
from vidtune.benchmark.spec import VARIANTS, variant_settings

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
    ("fg_appearance.color", "fg colour", 1.0, "lower"),
    ("fg_appearance.texture", "fg texture x1e2", 1e2, "lower"),
    ("fg_appearance.color_vs_first", "fg colour vs 0", 1.0, "lower"),
    ("drift_long.fg_color_mean", "fg clip drift", 1.0, "lower (2+ clips)"),
    ("drift_long.bg_mean", "bg clip drift", 1.0, "lower (2+ clips)"),
    ("seam_ratio.ratio", "seam ratio", 1.0, "1 = seamless"),
    ("motion_epe.epe", "motion EPE px", 1.0, "lower"),
    ("transition.ratio", "transition ratio", 1.0, "lower (schedules)"),
    ("segment_adherence.min", "segment adh. min", 1.0, "higher (schedules)"),
]
SCHEDULE_METRICS = ("transition.ratio", "segment_adherence.min")  # measured on prompt-schedule sequences only
LONG_METRICS = ("drift_long.fg_color_mean", "drift_long.bg_mean")  # need 2+ clips of drift_long's 16 frames
PLOT_METRICS = [
    "flicker.mean_abs_diff",
    "flicker.mean_abs_diff_bg",
    "warp_err_dis.all",
    "bg_stability.std",
    "motion_epe.epe",
]
# `full` against each baseline, sequence by sequence: (metric key, column header, multiplier for display).
PAIRED_METRICS = [
    ("flicker.mean_abs_diff", "flicker", 1.0),
    ("flicker.mean_abs_diff_bg", "flicker bg", 1.0),
    ("warp_err_dis.all", "warp all x1e3", 1e3),
    ("drift_bg.mean", "drift bg", 1.0),
    ("bg_stability.std", "bg std", 1.0),
    ("fg_appearance.color", "fg colour", 1.0),
    ("fg_appearance.texture", "fg texture x1e2", 1e2),
    ("identity.consistency", "identity", 1.0),
    ("pose_adherence.pose_iou", "pose IoU", 1.0),
]
BASELINES = ("per_frame", "per_frame_shared_noise", "t2v_zero", "gen_l_video", "freenoise")
# The video after each stage (the stage-by-stage table): (row, variant), in stage order.
STAGE_ROWS: tuple[tuple[str, str], ...] = (
    ("after stage 1", "per_frame_shared_noise"),
    ("after stage 2", "stages_1_2"),
    ("stage 2 re-denoised by the base UNet (control)", "stages_1_2_sdedit"),
    ("after stage 3 (the tuned UNet re-denoises stage 2)", "stages_1_2_3"),
    ("after stage 4", "full"),
)
# What each stage adds, sequence by sequence: (row, later variant, earlier variant).
STAGE_STEPS: tuple[tuple[str, str, str], ...] = (
    ("stage 2 - stage 1", "stages_1_2", "per_frame_shared_noise"),
    ("stage 3 - stage 2", "stages_1_2_3", "stages_1_2"),
    ("stage 3 - control (the tuning alone)", "stages_1_2_3", "stages_1_2_sdedit"),
    ("stage 4 - stage 3", "full", "stages_1_2_3"),
    ("stage 4 - stage 2", "full", "stages_1_2"),
)
STAGE_METRICS: tuple[tuple[str, str, float], ...] = (
    ("flicker.mean_abs_diff", "flicker", 1.0),
    ("flicker.mean_abs_diff_bg", "flicker bg", 1.0),
    ("warp_err_dis.fg", "warp fg x1e3", 1e3),
    ("fg_appearance.color", "fg colour", 1.0),
    ("fg_appearance.texture", "fg texture x1e2", 1e2),
    ("fg_appearance.color_vs_first", "fg colour vs 0", 1.0),
    ("drift_fg_color.mean", "drift fg colour", 1.0),
    ("identity.consistency", "identity", 1.0),
    ("pose_adherence.pose_iou", "pose IoU", 1.0),
)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def table_columns(summary: dict) -> list[tuple[str, str, float, str]]:
    """TABLE_METRICS plus the adherence keys that were measured, plus the cost."""
    keys = {k for v in summary.values() for k in v}
    cols = [c for c in TABLE_METRICS if c[0] in keys]
    for k in sorted(keys):
        if k.startswith(("pose_adherence.", "prompt_adherence.")):
            cols.append((k, k.replace("_adherence.", " adh. "), 1.0, "higher"))
        elif k.startswith("identity."):
            cols.append((k, k, 1.0, "higher" if k.endswith("consistency") else "lower"))
    cols.append(("seconds", "seconds", 1.0, "cost"))
    return cols


def _cell(stat: dict | None, scale: float, spread: bool = True) -> str:
    """One table cell: the mean (3 significant digits) and, over several sequences, its interval (or std)."""
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
    lines = [
        "| variant | " + " | ".join(c[1] for c in cols) + " |",
        "|---|" + "---:|" * len(cols),
        "| *better* | " + " | ".join(c[3] for c in cols) + " |",
    ]
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


def _paired_cell(per_sequence: dict, later: str, earlier: str, key: str, scale: float) -> str:
    """mean [95% bootstrap interval] of (later - earlier) over the sequences that have both."""
    d = [
        seq[later][key] - seq[earlier][key]
        for seq in per_sequence.values()
        if seq.get(later, {}).get(key) is not None and seq.get(earlier, {}).get(key) is not None
    ]
    if not d:
        return "-"
    lo, hi = bootstrap_interval(d)
    return f"{np.mean(d) * scale:+.3g} [{lo * scale:+.3g}, {hi * scale:+.3g}]"


def stage_table(summary: dict, per_sequence: dict, variants: Sequence[str]) -> str:
    """Every stage metric after each stage (mean [95% interval]), then what each stage adds: the paired
    difference against the stage before it, sequence by sequence. Empty when fewer than two stage rows ran."""
    rows = [(label, v) for label, v in STAGE_ROWS if v in variants]
    if len(rows) < 2:
        return ""
    metrics = [m for m in STAGE_METRICS if any(m[0] in summary[v] for _, v in rows)]
    lines = [
        "| video | " + " | ".join(t for _, t, _ in metrics) + " |",
        "|---|" + "---:|" * len(metrics),
    ]
    for label, v in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(summary[v].get(k), sc) for k, _, sc in metrics) + " |")
    steps = [(label, a, b) for label, a, b in STAGE_STEPS if a in variants and b in variants]
    if steps:
        lines += ["", "| paired difference | " + " | ".join(t for _, t, _ in metrics) + " |"]
        lines.append("|---|" + "---:|" * len(metrics))
        for label, a, b in steps:
            cells = [_paired_cell(per_sequence, a, b, k, sc) for k, _, sc in metrics]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_table(per_sequence: dict, variants: Sequence[str], target: str = "full") -> str:
    """Per-sequence differences target - baseline: mean [95% bootstrap interval] per metric and baseline."""
    bases = [b for b in BASELINES if b in variants]
    if target not in variants or not bases:
        return ""
    lines = [
        "| full - | " + " | ".join(t for _, t, _ in PAIRED_METRICS) + " |",
        "|---|" + "---:|" * len(PAIRED_METRICS),
    ]
    for b in bases:
        cells = []
        for key, _, scale in PAIRED_METRICS:
            d = [
                seq[target][key] - seq[b][key]
                for seq in per_sequence.values()
                if seq.get(target, {}).get(key) is not None and seq.get(b, {}).get(key) is not None
            ]
            lo, hi = bootstrap_interval(d)
            cells.append("-" if not d else f"{np.mean(d) * scale:+.3g} [{lo * scale:+.3g}, {hi * scale:+.3g}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# ablation.json, ablation.md and report.html
# --------------------------------------------------------------------------------------------


def write_outputs(root: Path, result: dict, variants: Sequence[str], videos: list[tuple[str, Path]]) -> dict[str, Path]:
    """Every file of an ablation in `root`: ablation.json (`result`), ablation.md, metrics.png,
    flicker_curves.png and report.html (the plots and the grid `videos` embedded). Returns their paths."""
    atomic.write_json(root / "ablation.json", result)
    md = write_markdown(root / "ablation.md", result, variants)
    bars = plot_bars(result["summary"], variants, root / "metrics.png")
    flick = plot_flicker_curves(result["flicker_curves"], variants, root / "flicker_curves.png")
    report = write_html(
        root / "report.html",
        result,
        variants,
        [
            (
                "key metrics: mean over sequences, std as error bars (lower is more consistent; "
                "adherence: higher is better)",
                bars,
            ),
            ("mean |dI| per frame pair, per sequence and variant", flick),
        ],
        videos,
    )
    return {"json": root / "ablation.json", "markdown": md, "bars": bars, "flicker": flick, "report": report}


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
        + "; ".join(
            f'{s["name"]}: {s["motion"]}, "{s["prompt"]}", seed {s["seed"]}, {s["frames"]} frames'
            for s in result["sequences"]
        ),
        "",
        "## Variants",
        "",
        "| variant | what | settings over the base config |",
        "|---|---|---|",
    ]
    lines += [f"| {v} | {VARIANTS[v].description} | {variant_settings(v)} |" for v in variants]
    lines += [
        "",
        "## Results (mean [95% bootstrap interval] over sequences)",
        "",
        "Metrics on the 64x64 frames (docs/benchmark.md): flicker = mean |dI| of consecutive frames (0-255), whole "
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
    pose_keys = sorted(
        {k for v in result["summary"].values() for k in v if k.startswith("pose_adherence.")},
        key=lambda k: (k != "pose_adherence.pose_iou", k),  # the pose IoU first, then the details' IoUs
    )
    if pose_keys:
        lines += [
            f"### {pose_keys[0]} per sequence",
            "",
            per_sequence_table(result["per_sequence"], variants, pose_keys[0]),
            "",
        ]
    stages = stage_table(result["summary"], result["per_sequence"], variants)
    if stages:
        lines += [
            "### Stage by stage",
            "",
            "Each stage's video (the variants above), then what each stage adds: the mean of (later - "
            "earlier) over the sequences with its 95% bootstrap interval. fg colour / texture: the figure's "
            "Lab colour (2-Wasserstein, Lab units) and gradient-texture distance (total variation, x100) "
            "between consecutive frames, inside the ground-truth mask (`vidtune.evaluation.foreground`).",
            "",
            stages,
            "",
        ]
    paired = paired_table(result["per_sequence"], variants)
    if paired:
        lines += [
            "### full against each baseline, sequence by sequence",
            "",
            "Mean of (full - baseline) over the sequences with its 95% bootstrap interval (sequences "
            "resampled together): an interval below 0 is a consistent gain, whatever the spread between "
            "sequences that the intervals of the table above include.",
            "",
            paired,
            "",
        ]
    ious = {k: v for k, v in result.get("mask_iou", {}).items() if v is not None}
    if ious:
        lines += [
            f"Segmenter (stage 1's masks against the ground-truth figure masks): mean IoU "
            f"{np.mean(list(ious.values())):.3f} (" + ", ".join(f"{k} {v:.3f}" for k, v in ious.items()) + ")",
            "",
        ]
    lines += [
        "Plots: `metrics.png` (bars: mean, std over sequences), `flicker_curves.png` (mean |dI| per frame "
        "pair). Videos: `sequences/<name>/grid.mp4`. Everything: `report.html`.",
        "",
    ]
    atomic.write_text(path, "\n".join(lines))
    return path


def write_html(
    path: Path, result: dict, variants: Sequence[str], images: list[tuple[str, Path]], videos: list[tuple[str, Path]]
) -> Path:
    from vidtune.evaluation.report import table_html, write_report

    cols = table_columns(result["summary"])
    rows = [[v] + [_cell(result["summary"][v].get(c[0]), c[2]) for c in cols] for v in variants]
    defs = [[v, VARIANTS[v].description, variant_settings(v).replace("`", "")] for v in variants]
    meta = (
        f"<p>Regenerate: <code>{result['command']}</code><br>Machine: {result['machine']}<br>"
        f"Time: {result['seconds']:.0f} s wall (stages: {result['stage_seconds']:.0f} s when computed)<br>"
        f"Model: {result['model']}</p>"
    )
    return write_report(
        path,
        "vidtune ablation",
        [
            ("How this was made", meta),
            (
                "Results (mean [95% bootstrap interval] over sequences; "
                + ", ".join(f"{c[1]}: {c[3]}" for c in cols)
                + ")",
                table_html(["variant"] + [c[1] for c in cols], rows),
            ),
            ("Variants", table_html(["variant", "what", "settings"], defs)),
        ],
        videos=videos,
        images=images,
    )


# --------------------------------------------------------------------------------------------
# Plots and grid videos
# --------------------------------------------------------------------------------------------


GROUND_TRUTH_COLOUR = "#777777"


def variant_colours(variants: Sequence[str]) -> dict[str, str]:
    """One colour per variant: the ground truth grey (and dashed in curves), the others matplotlib's
    tab10 without its own grey (C7), then three darker ones: every suite's variants (up to 12) differ."""
    palette = [f"C{i}" for i in range(10) if i != 7] + ["#000000", "#8b6508", "#00008b"]
    others = [v for v in variants if v != "ground_truth"]
    colours = {v: palette[i % len(palette)] for i, v in enumerate(others)}
    return {v: GROUND_TRUTH_COLOUR if v == "ground_truth" else colours[v] for v in variants}


def plot_bars(summary: dict, variants: Sequence[str], path: Path) -> Path:
    """Bar charts of the key metrics (mean, std over sequences as error bars); PNG."""
    from matplotlib.figure import Figure

    keys = [k for k in PLOT_METRICS if any(summary[v].get(k, {}).get("mean") is not None for v in variants)]
    keys += [k for k in ("pose_adherence.pose_iou",) if any(k in summary[v] for v in variants)]
    keys += sorted({k for v in variants for k in summary[v] if k.startswith("prompt_adherence.")})
    cols = 3
    rows = max(1, math.ceil(len(keys) / cols))
    fig = Figure(figsize=(5.2 * cols, 3.6 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colours = list(variant_colours(variants).values())
    for ax, key in zip(axes, keys):
        means = [summary[v].get(key, {}).get("mean") for v in variants]
        stds = [summary[v].get(key, {}).get("std") or 0.0 for v in variants]
        x = np.arange(len(variants))
        ax.bar(x, [m if m is not None else 0.0 for m in means], yerr=stds, color=colours, capsize=3)
        ax.set_xticks(x, variants, rotation=45, ha="right", fontsize=8)
        ax.set_title(key, fontsize=10)
    for ax in axes[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_flicker_curves(curves: dict[str, dict[str, list[float]]], variants: Sequence[str], path: Path) -> Path:
    """Per sequence: mean |dI| of every frame pair, one line per variant; PNG."""
    from matplotlib.figure import Figure

    names = list(curves)
    cols = min(3, len(names))  # readable at page width: at most 3 sequences a row
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(5.2 * cols, 3.4 * rows), dpi=100)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    colours = variant_colours(variants)
    for ax, seq in zip(axes, names):
        for v in variants:
            if v in curves[seq]:
                style = "--" if v == "ground_truth" else "-"
                ax.plot(range(len(curves[seq][v])), curves[seq][v], style, color=colours[v], lw=1.3, label=v)
        ax.set_title(seq)
        ax.set_xlabel("frame pair t (frames t, t+1)")
        ax.set_ylabel("mean |dI| (0-255)")
    for ax in axes[len(names) :]:
        ax.axis("off")
    axes[len(names) - 1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
