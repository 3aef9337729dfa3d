"""Paired comparison of two `vidtune ablate` runs of the same sequences: a setting's effect, variant by variant.

    vidtune ablate bench/stages.toml --out runs/a
    vidtune ablate bench/stages.toml --out runs/b --set separate.stop=fusion
    python bench/compare_runs.py runs/a runs/b --variants stages_1_2 full > cmp.md

Prints, for each variant both runs have, every stage metric of A and B (mean over sequences) and the
difference B - A sequence by sequence (mean [95% bootstrap interval]); the seconds too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vidtune.benchmark.report import STAGE_METRICS
from vidtune.benchmark.scoring import bootstrap_interval

EXTRA = (("seconds", "seconds", 1.0),)


def per_sequence(run: Path) -> dict:
    return json.loads((run / "ablation.json").read_text())["per_sequence"]


def paired_rows(a: dict, b: dict, variant: str) -> list[str]:
    """Markdown rows: metric | A | B | B - A [95% interval] over the sequences both runs scored."""
    rows = []
    for key, title, scale in (*STAGE_METRICS, *EXTRA):
        pairs = [
            (a[s][variant][key], b[s][variant][key])
            for s in a
            if s in b and a[s].get(variant, {}).get(key) is not None and b[s].get(variant, {}).get(key) is not None
        ]
        if not pairs:
            continue
        va, vb = (np.array(x) * scale for x in zip(*pairs))
        lo, hi = bootstrap_interval(list(vb - va))
        rows.append(
            f"| {variant} | {title} | {va.mean():.4g} | {vb.mean():.4g} | {(vb - va).mean():+.3g} [{lo:+.3g}, {hi:+.3g}] |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="the reference run folder")
    parser.add_argument("b", type=Path, help="the run with the setting under test")
    parser.add_argument("--variants", nargs="+", default=["stages_1_2", "full"])
    args = parser.parse_args()
    a, b = per_sequence(args.a), per_sequence(args.b)
    print(f"A = {args.a}, B = {args.b}; {len(set(a) & set(b))} sequences in both\n")
    print("| variant | metric | A | B | B - A [95% interval] |")
    print("|---|---|---:|---:|---:|")
    for v in args.variants:
        print("\n".join(paired_rows(a, b, v)))


if __name__ == "__main__":
    main()
