"""Peak memory and seconds per frame against the video's length: the whole method on the demo model.

    python bench/length_curve.py                       # 24 .. 2000 frames -> bench/results/length_curve.{md,png,json}
    python bench/length_curve.py --frames 8 16 --steps 2 --tuning-steps 2 --out /tmp/curve.md   # a quick check

Each length runs in a FRESH process (its peak resident set is its own): a synthetic walk of N frames
(`vidtune.demo.command.write_source`), then `pipeline.run` of the four stages with the demo presets,
at `--steps` sampling steps and `--tuning-steps` tuning steps, so the curve takes minutes rather than
an hour; the cost per frame of every stage but the tuning is proportional to the steps. Reported per N:
the seconds of every stage, the seconds per frame of stages 1, 2 and 4 (what grows with N; stage 3's
training is a fixed number of steps), and the peak resident set over the process after loading the
model, in MiB and per frame. Long-video users ask for flat memory per frame and linear time.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "length_curve.md"
FRAMES = (24, 96, 384, 1000, 2000)
MIB = 2**20


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def worker(job: dict) -> dict:
    """One length in this process: render the poses, load the demo model, run the four stages."""
    import torch

    from vidtune import pipeline
    from vidtune.demo import command as demo
    from vidtune.models import load_components

    torch.set_num_threads(job["threads"])
    out = Path(job["dir"])
    n = job["frames"]
    demo.write_source(out, "walk", n, demo.DEFAULT_PROMPT, seed=0)
    cfg = demo.demo_config(out, demo.DEFAULT_PROMPT, job["steps"], 0, [f"tuning.steps={job['tuning_steps']}"])
    comps = load_components(cfg.model.path)
    base = _rss()
    start = time.perf_counter()
    summary = pipeline.run(cfg, out, progress=False, components=comps, log=lambda s: None)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    seconds = {str(k): round(s, 3) for k, (_, s) in sorted(summary.stages.items())}
    return {
        "frames": n,
        "seconds": seconds,
        "wall": round(wall, 3),
        "per_frame_124": (sum(summary.stages[k][1] for k in (1, 2, 4))) / n,
        "peak_over_model_mib": (peak - base) / MIB,
        "peak_per_frame_kib": (peak - base) / n / 1024,
    }


def measure(frames: int, steps: int, tuning_steps: int, threads: int) -> dict:
    """`worker` in a fresh Python process (this file with --one)."""
    with tempfile.TemporaryDirectory() as tmp:
        job = {"frames": frames, "steps": steps, "tuning_steps": tuning_steps, "threads": threads, "dir": tmp}
        done = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{frames} frames failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def write(rows: list[dict], args: argparse.Namespace, out: Path) -> None:
    """The table (md), the numbers (json) and the curve (png) beside `out`."""
    import torch
    from matplotlib.figure import Figure

    lines = [
        "# The whole method against the video's length (demo model, CPU)",
        "",
        f"`python bench/length_curve.py --steps {args.steps} --tuning-steps {args.tuning_steps}` on "
        f"{platform.machine()} {platform.processor() or ''}, torch {torch.__version__}, {args.threads} thread(s); "
        f"a synthetic walk at 64x64, the demo presets at {args.steps} sampling steps and {args.tuning_steps} "
        "tuning steps, every length in a fresh process. Peak = the process's peak resident set minus its "
        "resident set after loading the model.",
        "",
        "| frames | stage 1 s | stage 2 s | stage 3 s | stage 4 s | s / frame (stages 1, 2, 4) | peak MiB | peak KiB / frame |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["seconds"]
        lines.append(
            f"| {r['frames']} | {s.get('1', 0):.1f} | {s.get('2', 0):.1f} | {s.get('3', 0):.1f} | {s.get('4', 0):.1f} "
            f"| {r['per_frame_124']:.4f} | {r['peak_over_model_mib']:.0f} | {r['peak_per_frame_kib']:.0f} |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    fig = Figure(figsize=(10, 3.6), dpi=100)
    a, b = fig.subplots(1, 2)
    n = [r["frames"] for r in rows]
    a.plot(n, [r["per_frame_124"] for r in rows], "o-")
    a.set_xscale("log")
    a.set_ylim(bottom=0)
    a.set_xlabel("frames")
    a.set_ylabel("seconds per frame (stages 1, 2, 4)")
    b.plot(n, [r["peak_over_model_mib"] for r in rows], "o-")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("frames")
    b.set_ylabel("peak memory over the model (MiB)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, nargs="+", default=list(FRAMES), help="video lengths (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=4, help="sampling steps (default: %(default)s)")
    ap.add_argument("--tuning-steps", type=int, default=10, help="stage 3's steps (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per process (default: %(default)s)")
    ap.add_argument("--out", default=str(RESULTS), help="the table (.md; .json and .png beside it)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(worker(json.loads(args.one))))
        return 0
    rows = []
    for n in args.frames:
        rows.append(measure(n, args.steps, args.tuning_steps, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    write(rows, args, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
