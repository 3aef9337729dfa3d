"""`vidtune demo` end to end on the embedded demo model (short: 8 frames, few steps)."""

import json

import pytest

from vidtune.demo.command import DEMO_MODEL, run_demo
from vidtune.video import video_info

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL / "model_index.json").is_file(),
    reason="the embedded demo model (src/vidtune/demo/model) is not in this checkout",
)


def test_demo_runs_all_stages_and_writes_the_report(tmp_path):
    out = run_demo(
        out=str(tmp_path / "demo"),
        frames=8,
        motion="dance",
        seed=3,
        steps=4,
        overrides=["tuning.steps=4", "codenoise.clip_length=4", "codenoise.stride=2"],
        progress=False,
    )
    assert video_info(out / "final.mp4").num_frames == 8
    side = video_info(out / "side_by_side.mp4")
    assert side.num_frames == 8 and side.width == 4 * side.height  # pose | stage 1 | final | ground truth
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"ground_truth", "stage1", "stage2", "final"}
    for name in metrics:
        assert metrics[name]["flicker"]["mean_abs_diff"] >= 0
    html = (out / "report.html").read_text()
    assert "data:video/mp4;base64," in html and "stage 1" in html
    for k in (1, 2, 3, 4):
        assert json.loads((out / f"stage{k}" / "done.json").read_text())["stage"] == k
