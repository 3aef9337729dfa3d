"""Copy an ablation run's table and pictures into bench/results under one name, so every committed
benchmark picture comes from a command.

    python bench/publish.py runs/benchmark benchmark --strips run_meadow schedule_walk

writes bench/results/<name>.md (ablation.md), <name>_metrics.png, <name>_flicker_curves.png and, per
sequence named, <name>_<sequence>.png (the run's labelled strip: a row per variant, 8 frames;
`vidtune ablate` draws it as sequences/<sequence>/strip.png).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def publish(run: Path, name: str, strips: list[str], out: Path) -> list[Path]:
    """Copy the files; a missing one is a one-line error naming it and the command that makes it."""
    pairs = [
        (run / "ablation.md", out / f"{name}.md"),
        (run / "metrics.png", out / f"{name}_metrics.png"),
        (run / "flicker_curves.png", out / f"{name}_flicker_curves.png"),
    ]
    pairs += [(run / "sequences" / s / "strip.png", out / f"{name}_{s}.png") for s in strips]
    missing = [str(src) for src, _ in pairs if not src.is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)}: missing; run `vidtune ablate ... --out {run}` (it draws them) first")
    out.mkdir(parents=True, exist_ok=True)
    for src, dst in pairs:
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `vidtune ablate` output folder")
    parser.add_argument("name", help="the name in bench/results (benchmark, heldout, stages, ablation)")
    parser.add_argument("--strips", nargs="*", default=[], metavar="SEQUENCE", help="sequences whose strip to copy")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    for path in publish(args.run, args.name, args.strips, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
