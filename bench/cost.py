"""The method's cost against frame-by-frame generation: UNet evaluations per stage (as `vidtune plan`
counts them, at SD's defaults) and measured seconds per variant, before and after a setting.

    vidtune ablate bench/stages.toml --out runs/before --set separate.stop=end
    vidtune ablate bench/stages.toml --out runs/after --set separate.stop=fusion
    python bench/cost.py --base separate.stop=end --set separate.stop=fusion \
        --runs runs/before runs/after > bench/results/cost.md

Before = the defaults with every --base setting, after = before with every --set setting.

The counts are pure (`vidtune.plan.unet_evaluations`; tests/test_pipeline.py checks them against a real
run's UNet hook count on the tiny model). The seconds are each variant's stages as `vidtune ablate`
timed them, mean over the sequences both runs scored, and the paired difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vidtune import config as C
from vidtune.benchmark.scoring import bootstrap_interval
from vidtune.plan import unet_evaluations

FRAMES = (24, 256)
STAGES = ("stage1", "stage2", "stage3", "stage4")


def evaluation_rows(
    overrides: list[str], frames: tuple[int, ...] = FRAMES, base: tuple[str, ...] | list[str] = ()
) -> list[str]:
    """Markdown rows: frames | setting | each stage | all four | x frame-by-frame, before (the defaults
    with `base`) and after (before with `overrides`)."""
    rows = []
    for n in frames:
        for label, extra in (("before", list(base)), ("after", [*base, *overrides])):
            cfg = C.apply_overrides(C.RunConfig(), ["inputs.prompt=a person", *extra])
            ev = unet_evaluations(cfg, n)
            cells = [f"{ev[s]:.1f}" for s in STAGES]
            rows.append(
                f"| {n} | {label} | "
                + " | ".join(cells)
                + f" | {ev['total']:.1f} | {ev['total'] / ev['frame_by_frame']:.2f}x |"
            )
    return rows


def seconds_rows(before: Path, after: Path, variants: list[str]) -> list[str]:
    """Markdown rows: variant | before | after | after - before [95% interval], seconds per sequence."""
    a, b = (json.loads((r / "ablation.json").read_text())["per_sequence"] for r in (before, after))
    rows = []
    for v in variants:
        pairs = [
            (a[s][v]["seconds"], b[s][v]["seconds"])
            for s in a
            if s in b and a[s].get(v, {}).get("seconds") is not None and b[s].get(v, {}).get("seconds") is not None
        ]
        if not pairs:
            continue
        x, y = (np.array(p) for p in zip(*pairs))
        lo, hi = bootstrap_interval(list(y - x))
        rows.append(
            f"| {v} | {x.mean():.1f} | {y.mean():.1f} | {(y - x).mean():+.1f} [{lo:+.1f}, {hi:+.1f}] | "
            f"{y.mean() / x.mean():.2f} | {len(pairs)} |"
        )
    return rows


def report(overrides: list[str], runs: list[Path] | None, variants: list[str], base: list[str] = ()) -> str:
    flags = " ".join([*("--base " + o for o in base), *("--set " + o for o in overrides)])
    lines = [
        "# Cost: UNet evaluations and seconds, before and after",
        "",
        f"Before = the defaults{' with `' + ' '.join(base) + '`' if base else ''}, after = "
        f"`{' '.join(overrides)}`. Regenerate: `python bench/cost.py {flags}"
        + (f" --runs {' '.join(str(r) for r in runs)}" if runs else "")
        + "` (the runs: `vidtune ablate bench/stages.toml`, without and with the setting).",
        "",
        "## UNet frame evaluations per video frame, SD defaults (50 DDIM steps, CFG 7.5: 100 = frame by frame)",
        "",
        "| frames | | stage 1 | stage 2 | stage 3 | stage 4 | all four | x frame by frame |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
        *evaluation_rows(overrides, base=base),
    ]
    if runs:
        lines += [
            "",
            "## Measured seconds per sequence (the runs' stages, demo model, 16 steps)",
            "",
            f"Before: `{runs[0]}`, after: `{runs[1]}`; mean over the sequences both scored, paired difference [95% interval].",
            "",
            "| variant | before s | after s | after - before | ratio | sequences |",
            "|---|---:|---:|---:|---:|---:|",
            *seconds_rows(runs[0], runs[1], variants),
        ]
    lines += [
        "",
        "`vidtune demo`'s method against frame-by-frame generation, timed side by side in one process: "
        "[demo_cost.md](demo_cost.md) (`python bench/demo_cost.py`).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="append", default=[], metavar="KEY=VALUE", help="a setting of before")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--variants", nargs="+", default=["stages_1_2", "full"])
    args = parser.parse_args()
    print(report(args.overrides, args.runs, args.variants, args.base), end="")


if __name__ == "__main__":
    main()
