"""`vidtune demo`'s method against frame-by-frame generation, timed side by side in one process.

    python bench/demo_cost.py [--repeats 3] [--frames 24] [--set KEY=VALUE ...] > bench/results/demo_cost.md

The demo's walk (its default prompt and seed) is rendered once; then, on one loaded demo model, each
repeat times frame-by-frame generation (stage 1 denoised to the end: `separate.stop=end`) and the whole
method with the defaults (stage 1 stopping at the fusion step, stages 2-4), in alternating order so that
neither gets the warmer caches. In memory, no run folder: the seconds are the stages' computation, not
video encoding. The ratio is the median over the repeats of the method's time over frame-by-frame's in
the same repeat (issue 33's bound: at most 2x): a shared machine's speed drifts by 20-30% between
minutes, which paired ratios divide out and a ratio of two medians does not. `--set` applies to both
(e.g. `tuning.steps=40`).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from vidtune import config as C
from vidtune.api import VidtunePipeline
from vidtune.demo.command import DEFAULT_PROMPT, demo_config, write_source

STAGES = (1, 2, 3, 4)


def time_runs(
    pipe: VidtunePipeline, configs: dict[str, tuple[C.RunConfig, tuple[int, ...]]], repeats: int
) -> dict[str, list[dict[int, float]]]:
    """Each label's per-stage seconds in every repeat; the order of the labels alternates by repeat."""
    labels = list(configs)
    out: dict[str, list[dict[int, float]]] = {k: [] for k in labels}
    for r in range(repeats):
        for label in labels if r % 2 == 0 else labels[::-1]:
            cfg, stages = configs[label]
            start = time.perf_counter()
            result = pipe(config=cfg, stages=stages, progress=False, log=lambda _m: None)
            timings = {k: float(v) for k, v in result.timings.items()}
            timings[0] = time.perf_counter() - start  # the call's wall time
            out[label].append(timings)
    return out


def paired_ratios(times: dict[str, list[dict[int, float]]], label: str) -> list[float]:
    """Each repeat's wall time of `label` over frame by frame's in the same repeat: the two ran back to
    back, so a slow spell of a shared machine (seconds to minutes long) divides out."""
    return [r[0] / b[0] for r, b in zip(times[label], times["frame by frame"], strict=True)]


def table(times: dict[str, list[dict[int, float]]]) -> list[str]:
    """Markdown: median seconds per stage, the wall time of the call, and the median of the repeats' paired
    ratios to frame by frame (with their range)."""
    rows = [
        "| run | stage 1 | stage 2 | stage 3 | stage 4 | stages (sum) | call wall | x frame by frame (wall) | range |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, runs in times.items():
        cells = [f"{statistics.median(t[k] for t in runs):.2f}" if k in runs[0] else "-" for k in STAGES]
        total = statistics.median(sum(t[k] for k in STAGES if k in t) for t in runs)
        wall = statistics.median(t[0] for t in runs)
        ratios = paired_ratios(times, label)
        rows.append(
            f"| {label} | " + " | ".join(cells) + f" | {total:.2f} | {wall:.2f} | {statistics.median(ratios):.2f}x "
            f"| {min(ratios):.2f}-{max(ratios):.2f}x |"
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    import torch

    with tempfile.TemporaryDirectory(prefix="vidtune-demo-cost-") as tmp:
        root = Path(tmp)
        write_source(root, "walk", args.frames, DEFAULT_PROMPT, 0)
        fbf = demo_config(root, DEFAULT_PROMPT, None, 0, [*C.FRAME_BY_FRAME, *args.overrides])
        method = demo_config(root, DEFAULT_PROMPT, None, 0, ["separate.stop=fusion", *args.overrides])
        pipe = VidtunePipeline.from_config(method)
        pipe(config=fbf, stages=(1,), progress=False, log=lambda _m: None)  # warm-up, not timed
        times = time_runs(pipe, {"frame by frame": (fbf, (1,)), "method": (method, STAGES)}, args.repeats)
    print("# `vidtune demo`: the method against frame-by-frame generation, one process\n")
    print(
        f"Regenerate: `python bench/demo_cost.py --repeats {args.repeats} --frames {args.frames}"
        + "".join(f" --set {o}" for o in args.overrides)
        + "`  "
    )
    print(f"Machine: {torch.get_num_threads()} torch threads, {'CUDA' if torch.cuda.is_available() else 'CPU'}  ")
    print(
        f"The demo's walk, {args.frames} frames, demo presets; median of {args.repeats} repeats in alternating "
        "order after one untimed warm-up. Frame by frame = stage 1 denoised to the end; method = stages 1-4 "
        "with stage 1 stopping at the fusion step (the default). Seconds of computation, no video encoding. "
        "The ratio: the median of each repeat's method time over its frame-by-frame time (the two run back to "
        "back), and their range.\n"
    )
    print("\n".join(table(times)))


if __name__ == "__main__":
    main()
