"""Where a variant's pose IoU is lost: the keyed pixels of the prompt's colour against the truth's parts.

    vidtune ablate bench/stages.toml --out runs/stages
    python bench/pose_parts.py runs/stages bench/stages.toml > /tmp/pose_parts.md

The pose IoU (`vidtune.demo.synthetic.adherence.pose_iou`) keys the prompt's colour and compares it with
the truth's clothes drawn in that colour. The world leaves the outfit open (trousers, hat), so a figure that
wears the prompt's colour where the truth's random outfit has another one loses IoU without leaving its
pose. Per frame (`adherence.pose_iou_parts`), averaged over each sequence's judged frames: the clothes'
pixels hit and missed, the keyed pixels on the truth's figure but off its clothes (by body part: ``leg`` is
trousers of another colour, ``skin`` the face and hands) and those off the figure; then the paired
differences between the stages (mean over sequences, 95% bootstrap interval). A pose error shows as
missed clothes and pixels off the figure; an outfit choice as pixels on it.

The truth is rendered again from the TOML's sequences (as `vidtune ablate` rendered it); the frames are
read from the run folder: stage 2's (`stages_1_2`) from base/stage2, every stage-4 variant's from its own
folder. Reads PNGs only; no model.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

KEYS = ("iou", "iou_on_figure_void", "hit", "missed", "off", "on_figure", "on_leg", "on_skin", "on_hat", "on_torso")
PAIRS = (
    ("stages_1_2", "stages_1_2_sdedit"),
    ("stages_1_2_sdedit", "stages_1_2_3"),
    ("stages_1_2", "stages_1_2_3"),
    ("stages_1_2_3", "full"),
    ("stages_1_2", "full"),
)


def frames_dir(run: Path, sequence: str, variant: str) -> Path:
    """Where `vidtune ablate` put a variant's frames (stage 2's in the shared base folder)."""
    root = run / "sequences" / sequence
    if variant == "stages_1_2":
        return root / "base" / "stage2" / "frames"
    if variant == "ground_truth":
        return root / "source" / "gt_frames"
    return root / variant / "stage4" / "frames"


def sequence_parts(frames: list[np.ndarray], truth) -> dict[str, float]:
    """`pose_iou_parts` averaged over the judged frames of one video (a schedule's transitions are not judged)."""
    from vidtune.demo.synthetic.adherence import pose_iou_parts

    attrs = list(truth.frame_attrs) or [truth.attrs] * len(truth.masks)
    rows = [
        pose_iou_parts(f, m, c, p, a.colour)
        for f, m, c, p, a in zip(frames, truth.masks, truth.clothes_masks, truth.parts, attrs, strict=True)
        if a is not None
    ]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def paired(per: dict[str, dict[str, dict[str, float]]], a: str, b: str, key: str) -> str:
    """b - a over the sequences that have both: mean [95% bootstrap interval]."""
    from vidtune.benchmark.scoring import bootstrap_interval

    d = [per[s][b][key] - per[s][a][key] for s in per if a in per[s] and b in per[s]]
    if not d:
        return "-"
    lo, hi = bootstrap_interval(d)
    fmt = "{:+.3f}" if key.startswith("iou") else "{:+.1f}"  # IoUs, then pixels a frame
    return f"{fmt.format(np.mean(d))} [{fmt.format(lo)}, {fmt.format(hi)}]"


def report(per: dict[str, dict[str, dict[str, float]]], variants: list[str]) -> str:
    """Markdown: each variant's means over the sequences, then the paired differences of `PAIRS`."""
    head = "| " + " | ".join(KEYS) + " |"
    rule = "|---|" + "---:|" * len(KEYS)
    lines = ["| variant " + head, rule]
    for v in variants:
        cells = [np.mean([per[s][v][k] for s in per if v in per[s]]) for k in KEYS]
        lines.append(
            f"| {v} | "
            + " | ".join(f"{c:.3f}" if k.startswith("iou") else f"{c:.1f}" for k, c in zip(KEYS, cells))
            + " |"
        )
    lines += ["", "| paired difference " + head, rule]
    for a, b in PAIRS:
        if a in variants and b in variants:
            lines.append(f"| {b} - {a} | " + " | ".join(paired(per, a, b, k) for k in KEYS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from vidtune.benchmark.runner import write_source
    from vidtune.benchmark.spec import base_config, load_spec
    from vidtune.video import read_frames

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a `vidtune ablate` output folder")
    ap.add_argument("config", help="the ablation TOML it ran")
    args = ap.parse_args(argv)
    spec = load_spec(args.config)
    cfg = base_config(spec, [])
    variants = [
        v
        for v in ("stages_1_2", "stages_1_2_sdedit", "stages_1_2_3", "full", "ground_truth")
        if v in spec.variants or v == "stages_1_2"
    ]
    per: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="vidtune-pose-parts-") as tmp:
        for seq in spec.sequences:
            truth = write_source(
                Path(tmp) / seq.name,
                seq,
                cfg.inputs.height,
                cfg.inputs.width,
                cfg.inputs.fps or 8.0,  # as `vidtune ablate` renders it (`benchmark.runner.run_sequence`)
                cfg.codenoise.transition,
            )
            for v in variants:
                folder = frames_dir(args.run, seq.name, v)
                if folder.is_dir():
                    per.setdefault(seq.name, {})[v] = sequence_parts(list(read_frames(folder)), truth)
    print(f"# Where the pose IoU is lost: {args.run} ({args.config}, {len(per)} sequences)\n")
    print("Pixels a frame (64 x 64); `python bench/pose_parts.py " + f"{args.run} {args.config}`.\n")
    print(report(per, [v for v in variants if any(v in per[s] for s in per)]), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
