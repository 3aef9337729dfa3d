"""Does the drift against the first frame grow with the video's length? The long suite's slopes.

    vidtune ablate --suite long --out runs/long
    python bench/long_drift.py runs/long > bench/results/long.md

Per variant of each sequence: the background's drift (mean |I_t - I_0| over the background, 0-255) and
the figure's colour drift (Lab-histogram distance to frame 0), their least-squares slopes against the
frame index given per 100 frames (0 = no growth), next to the ground truth's, and the seconds the
variant's stages took. Reads only the run's ablation.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# (ablation.json key, column header, scale): slopes are per frame in the metrics, shown per 100 frames
COLUMNS = (
    ("drift_bg.mean", "bg drift", 1.0),
    ("drift_bg.slope", "bg drift slope / 100 frames", 100.0),
    ("drift_fg_color.mean", "fg colour drift", 1.0),
    ("drift_fg_color.slope", "fg colour drift slope / 100 frames", 100.0),
    ("identity.consistency", "identity", 1.0),
    ("pose_adherence.pose_iou", "pose IoU", 1.0),
    ("seconds", "seconds", 1.0),
)


def slope_rows(per_sequence: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """Markdown rows: sequence | variant | every column (a missing metric is '-')."""
    rows = []
    for seq, variants in per_sequence.items():
        for variant, metrics in variants.items():
            cells = []
            for key, _, scale in COLUMNS:
                value = metrics.get(key)
                cells.append("-" if value is None else f"{value * scale:.3g}")
            rows.append(f"| {seq} | {variant} | " + " | ".join(cells) + " |")
    return rows


def report(run: Path) -> str:
    data = json.loads((run / "ablation.json").read_text())
    lines = [
        "# Drift against the first frame on a long video",
        "",
        f"Regenerate: `vidtune ablate --suite long --out {run} && python bench/long_drift.py {run}`. "
        f"Machine: {data.get('machine', 'unknown')}.",
        "",
        "| sequence | variant | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
        *slope_rows(data["per_sequence"]),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the folder of `vidtune ablate --suite long --out DIR`")
    print(report(parser.parse_args().run), end="")


if __name__ == "__main__":
    main()
