"""The instrument check from two `vidtune ablate` runs: does the demo world and
model show identity drift frame by frame (a), draw named attributes as named (b), and does its
self-attention carry appearance (c)?

    vidtune ablate bench/identity.toml --out runs/identity
    vidtune ablate bench/identity_named.toml --out runs/identity_named
    python bench/identity_check.py runs/identity runs/identity_named [--out bench/results]

Writes OUT/identity.md (the numbers, paired 95% bootstrap intervals over sequences) and
OUT/identity_strip.png (rows: ground truth, stage 1 (= attention none), stage 4 from noise with attention first;
8 frames of the sequences named by --strip). Reads only ablation.json and the frames it points to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vidtune.benchmark.scoring import bootstrap_interval

# "attention none" is stage 1 from one shared noise: stage 4 from noise as one clip with attention none runs
# the same computation (its frames equalled stage 1's to 3 decimals on every metric, 4 sequences measured).
STAGE1, GT, FIRST, NONE = "per_frame_shared_noise", "ground_truth", "t2v_zero", "per_frame_shared_noise"
FIGURE_KEYS = (
    ("identity.consistency", "identity consistency", "higher"),
    ("identity.flips", "attribute flips per frame pair", "lower"),
    ("fg_appearance.color", "figure colour distance, frame to frame", "lower"),
    ("fg_appearance.texture", "figure texture distance, frame to frame", "lower"),
    ("pose_adherence.pose_iou", "pose IoU", "higher"),
)
NAMED_KEYS = ("shirt", "trousers", "hat")


def values(per_sequence: dict, variant: str, key: str) -> dict[str, float]:
    return {s: v[variant][key] for s, v in per_sequence.items() if v.get(variant, {}).get(key) is not None}


def mean_ci(xs: list[float]) -> str:
    lo, hi = bootstrap_interval(xs)
    return f"{np.mean(xs):.3f} [{lo:.3f}, {hi:.3f}]"


def paired(per_sequence: dict, a: str, b: str, key: str) -> tuple[float, float, float, int]:
    va, vb = values(per_sequence, a, key), values(per_sequence, b, key)
    d = [va[s] - vb[s] for s in va if s in vb]
    lo, hi = bootstrap_interval(d)
    return float(np.mean(d)), lo, hi, len(d)


def strip(result: dict, names: list[str], path: Path, frames: int = 8) -> None:
    """Rows per sequence: ground truth, stage 1, stage 4 from noise (attention first, none), each
    frame 2x, the variant written on the left."""
    rows = []
    for name in names:
        folders = result["outputs"][name]["frames"]
        for v in dict.fromkeys((GT, STAGE1, FIRST, NONE)):
            if v not in folders:
                continue
            files = sorted(Path(folders[v]).glob("*.png"))
            pick = [files[round(i * (len(files) - 1) / (frames - 1))] for i in range(frames)]
            tiles = [np.asarray(Image.open(f).convert("RGB")) for f in pick]
            row = Image.fromarray(np.concatenate(tiles, 1)).resize((frames * 128, 128), Image.NEAREST)
            canvas = Image.new("RGB", (frames * 128 + 190, 128), "white")
            canvas.paste(row, (190, 0))
            ImageDraw.Draw(canvas).text((4, 56), f"{name}\n{v}", fill="black")
            rows.append(np.asarray(canvas))
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("open_run", help="vidtune ablate bench/identity.toml --out DIR")
    ap.add_argument("named_run", help="vidtune ablate bench/identity_named.toml --out DIR")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--strip", nargs="*", default=["walk_beach", "dance_snow", "wave_city"])
    args = ap.parse_args()
    result = json.loads((Path(args.open_run) / "ablation.json").read_text())
    named = json.loads((Path(args.named_run) / "ablation.json").read_text())
    per, per_named = result["per_sequence"], named["per_sequence"]
    out = Path(args.out)
    lines = [
        "# The instrument check: identity drift, named attributes, attention",
        "",
        "Regenerate: `vidtune ablate bench/identity.toml --out runs/identity && vidtune ablate "
        "bench/identity_named.toml --out runs/identity_named && python bench/identity_check.py runs/identity "
        "runs/identity_named`",
        "",
        f"Model: `{result.get('model')}` (weights fingerprint {result.get('model_fingerprint')}); machine: "
        f"{result.get('machine')}; {result.get('stage_seconds', 0) + named.get('stage_seconds', 0):.0f} s of stages.",
        "",
        f"{len(per)} sequences with every identity attribute open (bench/identity.toml), {len(per_named)} naming "
        "all three (bench/identity_named.toml); 24 frames, 16 steps, the demo model. Mean [95% bootstrap "
        "interval] over sequences; differences are paired, sequence by sequence. Identity read per frame by "
        "`vidtune.demo.synthetic.readout` (shirt, trousers, hat).",
        "",
        "## (a) Frame by frame, the identity drifts; the ground truth's does not",
        "",
        "| metric | better | ground truth | stage 1 | stage 1 - ground truth |",
        "|---|---|---:|---:|---:|",
    ]
    for key, label, better in FIGURE_KEYS:
        gt, s1 = values(per, GT, key), values(per, STAGE1, key)
        if not gt or not s1:
            continue
        m, lo, hi, _ = paired(per, STAGE1, GT, key)
        lines.append(
            f"| {label} | {better} | {mean_ci(list(gt.values()))} | {mean_ci(list(s1.values()))} | "
            f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] |"
        )
    cons = values(per, STAGE1, "identity.consistency")
    lines += [
        "",
        "Stage 1's identity consistency per sequence: "
        + ", ".join(f"{s} {v:.2f}" for s, v in cons.items())
        + f". Sequences whose identity changes at least once: {sum(v < 1.0 for v in cons.values())} of {len(cons)}.",
        "",
        "## (b) Named attributes are drawn as named (share of frames, stage 1)",
        "",
        "| attribute | ground truth | stage 1 | stage 1, worst sequence |",
        "|---|---:|---:|---:|",
    ]
    for k in NAMED_KEYS:
        key = f"prompt_adherence.{k}_accuracy"
        gt, s1 = values(per_named, GT, key), values(per_named, STAGE1, key)
        if s1:
            lines.append(
                f"| {k} | {np.mean(list(gt.values())):.3f} | {mean_ci(list(s1.values()))} | "
                f"{min(s1.values()):.3f} ({min(s1, key=s1.get)}) |"
            )
    lines += [
        "",
        "## (c) Stage 4 from noise: attention first against none (what the attention carries)",
        "",
        "| metric | better | attention none (= stage 1) | attention first (t2v_zero) | first - none | relative |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, label, better in FIGURE_KEYS:
        a, b = values(per, FIRST, key), values(per, NONE, key)
        if not a or not b:
            continue
        m, lo, hi, _ = paired(per, FIRST, NONE, key)
        rel = m / np.mean(list(b.values())) if np.mean(list(b.values())) else float("nan")
        lines.append(
            f"| {label} | {better} | {mean_ci(list(b.values()))} | {mean_ci(list(a.values()))} | "
            f"{m:+.3f} [{lo:+.3f}, {hi:+.3f}] | {rel:+.1%} |"
        )
    names = [n for n in args.strip if n in per]
    if names:
        strip(result, names, out / "identity_strip.png")
        lines += ["", f"Frames: `identity_strip.png` ({', '.join(names)}; 8 of 24 frames, evenly spaced)."]
    (out / "identity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
