"""The README's picture: frames of a `vidtune demo` run, one row each for the pose, stage 1, the final
video and the ground truth.

    python bench/readme_strip.py [--run runs/demo] [--out docs/demo_strip.png] [--frames 6]

Runs `vidtune demo --out RUN` first (the default demo: 24 frames of a walk, about 30-60 s on 2 CPU
cores) unless RUN already holds a finished demo. The strip is the run report's own
(`vidtune.evaluation.report.plot_strips`, the plots/strip.png of every run folder) with the pose row
added on top.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vidtune import artifacts as A
from vidtune.evaluation.report import plot_strips

ROWS: tuple[tuple[str, str], ...] = (
    ("pose", f"{A.INPUTS}/{A.INPUT_POSES}"),
    ("stage 1 (per frame)", f"{A.stage_dir(1)}/{A.FRAMES}"),
    ("final (four stages)", f"{A.stage_dir(4)}/{A.FRAMES}"),
    ("ground truth", "source/gt_frames"),
)


def write_strip(run: Path, out: Path, frames: int = 6) -> Path:
    """Draw ``frames`` evenly spaced frames of every row of ``run`` into the PNG ``out``."""
    missing = [rel for _, rel in ROWS if not (run / rel).is_dir()]
    if missing:
        raise SystemExit(f"{run}: no {', '.join(missing)}; run `vidtune demo --out {run}` first")
    written = plot_strips([(label, run / rel) for label, rel in ROWS], out, count=frames)
    if written is None:
        raise SystemExit(f"{run}: the frame folders are empty; rerun `vidtune demo --out {run}`")
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/demo", help="a `vidtune demo` run folder (made when missing)")
    parser.add_argument("--out", default="docs/demo_strip.png")
    parser.add_argument("--frames", type=int, default=6, help="frames per row")
    args = parser.parse_args(argv)
    run = Path(args.run)
    if not (run / A.stage_dir(4) / A.FRAMES).is_dir():
        from vidtune.demo.command import run_demo

        run_demo(out=str(run))
    print(write_strip(run, Path(args.out), args.frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
