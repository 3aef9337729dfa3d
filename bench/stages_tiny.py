"""Time every stage on the tiny random model and a real OpenPose sequence, and measure what
average fusion does to the weight-free background flicker (stage 2 vs stage 1 frames).

    python bench/stages_tiny.py [--frames 125] [--size 64] [--steps 10] [--out /tmp/bench_stages]

Needs ../shared (the real OpenPose data). Prints a markdown table; the flicker numbers are
mean |dI| on the 0-255 scale over the background pixels of stage 1's masks (the same masks for
both rows, so the comparison is like for like), and over the whole frame.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from vidtune import config as C
from vidtune import pipeline
from vidtune.evaluation.evaluate import evaluate_video
from vidtune.testing import make_tiny

SEQUENCE = Path(__file__).resolve().parents[2] / "shared/data/openpose/DurhamARC__raga-pose-estimation/example_1person"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=0, help="0 = all 125")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default="/tmp/bench_stages")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    model = make_tiny(out / "tiny", seed=0, sample_size=args.size)
    make_tiny_s = time.perf_counter() - start
    cfg = C.apply_overrides(
        C.RunConfig(),
        [
            f"model.path={model}",
            "model.adapter=",
            f"inputs.poses={SEQUENCE}",
            f"inputs.frames={args.frames}",
            "inputs.prompt=a person singing on a stage",
            f"inputs.height={args.size}",
            f"inputs.width={args.size}",
            f"sampling.steps={args.steps}",
            "separate.batch_frames=32",
            "tuning.steps=50",
            "tuning.trainable=lora",
            "codenoise.max_batch_frames=64",
        ],
    )
    summary = pipeline.run(cfg, out / "run", progress=False, log=lambda s: None)
    rows = [f"| make-tiny | {make_tiny_s:.1f} |"]
    rows += [f"| stage {k} | {secs:.1f} |" for k, (_, secs) in sorted(summary.stages.items())]
    run = out / "run"
    flicker = {}
    for k in (1, 2, 4):
        r = evaluate_video(
            str(run / f"stage{k}" / "frames"), masks=str(run / "stage1" / "masks"), metrics=["flicker", "bg_stability"]
        )
        flicker[k] = r["metrics"]
    n = json.loads((run / "stage1" / "done.json").read_text())["frames"]
    print(f"tiny model ({args.size}px, {args.steps} steps), {n} frames of {SEQUENCE.name}\n")
    print("| step | seconds |\n|---|---:|\n" + "\n".join(rows) + "\n")
    print("| frames | mean abs dI (all) | mean abs dI (background) | bg temporal std |\n|---|---:|---:|---:|")
    for k, m in flicker.items():
        print(
            f"| stage {k} | {m['flicker']['mean_abs_diff']:.2f} | {m['flicker'].get('mean_abs_diff_bg', float('nan')):.2f} "
            f"| {m['bg_stability']['std']:.2f} |"
        )


if __name__ == "__main__":
    main()
