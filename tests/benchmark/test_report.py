"""vidtune.benchmark.report's stage-by-stage table: every stage's numbers and the paired step rows."""

from __future__ import annotations

from vidtune.benchmark import report
from vidtune.benchmark.scoring import summarize


def test_stage_table_pairs_each_stage_with_the_one_before():
    variants = ["per_frame_shared_noise", "stages_1_2", "stages_1_2_sdedit", "stages_1_2_3", "full"]
    colour = {"per_frame_shared_noise": 9.0, "stages_1_2": 8.0, "stages_1_2_sdedit": 8.0, "stages_1_2_3": 6.0}
    per_sequence = {
        f"s{i}": {v: {"fg_appearance.color": colour.get(v, 5.0) + i, "pose_adherence.pose_iou": 0.8} for v in variants}
        for i in range(4)
    }
    table = report.stage_table(summarize(per_sequence, variants), per_sequence, variants)
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("|")}
    assert "after stage 1" in rows and "after stage 4" in rows
    assert "-1 [-1, -1]" in rows["stage 2 - stage 1"]  # every sequence: 8 - 9
    assert "-2 [-2, -2]" in rows["stage 3 - control (the tuning alone)"]
    assert "-1 [-1, -1]" in rows["stage 4 - stage 3"]
    assert "+0 [+0, +0]" in rows["stage 4 - stage 3"]  # the pose IoU column
    assert report.stage_table(summarize(per_sequence, ["full"]), per_sequence, ["full"]) == ""
