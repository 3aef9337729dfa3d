"""The benchmark scripts that a GPU machine runs unattended work on the CPU first (their --tiny mode)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_sd_gpu_runs_every_stage_and_counts_the_unet_evaluations(tmp_path):
    sd_gpu = _load("sd_gpu")
    out = tmp_path / "gpu.md"
    assert sd_gpu.main(["--tiny", "--frames", "4", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["stage"] for r in rows] == ["1 separate", "2 fusion", "3 tuning", "4 co-denoising"]
    assert all(r["seconds"] > 0 and r["frames"] == 4 for r in rows)
    evals = {r["stage"][0]: r["evals"] for r in rows}
    # --tiny: 4 DDIM steps with CFG (2 rows per frame); stage 1 stops at t = 0.5 (2 steps and the eps at t);
    # stage 2 from t (the eps at t recovered from stage 1's x0 prediction); stage 4 from
    # strength 0.4 (the last 2 steps, t = 251 and 1) in shifted clips of 4 frames (every frame once per step),
    # guided at t >= 200 only (codenoise.unguided_below)
    assert evals["1"] == 4 * (2 + 1) * 2 and evals["2"] == 4 * 2 * 2 and evals["4"] == 4 * 2 + 4 * 1
    assert "| 4 | 4 co-denoising |" in out.read_text()


@pytest.mark.slow
def test_length_curve_runs_every_length_in_its_own_process(tmp_path):
    curve = _load("length_curve")
    out = tmp_path / "curve.md"
    assert curve.main(["--frames", "8", "16", "--steps", "2", "--tuning-steps", "2", "--out", str(out)]) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["frames"] for r in rows] == [8, 16]
    assert all(set(r["seconds"]) == {"1", "2", "3", "4"} and r["per_frame_124"] > 0 for r in rows)
    assert all(r["peak_over_model_mib"] >= 0 for r in rows)
    assert out.with_suffix(".png").stat().st_size > 0 and "| 16 |" in out.read_text()


@pytest.mark.slow
def test_demo_cost_times_the_method_and_frame_by_frame_in_one_process(capsys):
    """Both rows come from one loaded model: frame by frame runs stage 1 alone, the method all four stages,
    and the ratio is the median of the repeats' paired ratios, inside their range."""
    demo_cost = _load("demo_cost")
    demo_cost.main(["--repeats", "2", "--frames", "8", "--set", "sampling.steps=4", "--set", "tuning.steps=2"])
    rows = [
        r for r in capsys.readouterr().out.splitlines() if r.startswith("| frame by frame") or r.startswith("| method")
    ]
    fbf, method = ([c.strip() for c in r.strip("|").split("|")] for r in rows)
    assert fbf[2:5] == ["-", "-", "-"] and all(float(c) > 0 for c in method[1:7])
    assert fbf[-2:] == ["1.00x", "1.00-1.00x"]
    lo, hi = (float(x) for x in method[-1].rstrip("x").split("-"))
    assert 0 < lo - 0.005 <= float(method[-2].rstrip("x")) <= hi + 0.005


def test_demo_cost_ratio_pairs_each_repeat_with_its_own_frame_by_frame_run():
    """A slow spell of the machine in the second repeat, during both runs, and during the first repeat's
    method run only: the repeats' ratios are 4, 2, 2, so the table says 2.00x (range 2-4), where the ratio of
    the medians would say 3.20x (16 / 5)."""
    demo_cost = _load("demo_cost")

    def method(wall: float) -> dict[int, float]:
        return {0: wall, 1: wall / 4, 2: wall / 4, 3: wall / 4, 4: wall / 4}

    times = {
        "frame by frame": [{0: 4.0, 1: 4.0}, {0: 8.0, 1: 8.0}, {0: 5.0, 1: 5.0}],
        "method": [method(16.0), method(16.0), method(10.0)],
    }
    assert demo_cost.paired_ratios(times, "method") == [4.0, 2.0, 2.0]
    row = next(r for r in demo_cost.table(times) if r.startswith("| method"))
    assert row.endswith("| 2.00x | 2.00-4.00x |")


def test_compare_runs_pairs_two_runs_sequence_by_sequence(tmp_path):
    """B - A is taken per sequence (a constant shift has a zero-width interval) over the sequences both ran."""
    compare = _load("compare_runs")
    runs = {}
    for name, shift in (("a", 0.0), ("b", 0.5)):
        per = {
            s: {"full": {"flicker.mean_abs_diff": base + shift, "seconds": 10.0}}
            for s, base in (("walk", 1.0), ("run", 3.0), ("wave", 8.0))
        }
        if name == "b":
            per["only_b"] = {"full": {"flicker.mean_abs_diff": 100.0}}
        (tmp_path / name).mkdir()
        (tmp_path / name / "ablation.json").write_text(json.dumps({"per_sequence": per}))
        runs[name] = compare.per_sequence(tmp_path / name)
    rows = compare.paired_rows(runs["a"], runs["b"], "full")
    flicker = next(r for r in rows if "| flicker |" in r)
    assert flicker == "| full | flicker | 4 | 4.5 | +0.5 [+0.5, +0.5] |"
    assert any("| seconds | 10 | 10 | +0 [+0, +0] |" in r for r in rows)


def test_cost_counts_the_plans_evaluations_before_and_after_a_setting():
    """The rows are `vidtune plan`'s counts: at SD's defaults stage 1 stopping at the fusion step brings the
    method from 2.19x frame-by-frame generation to 1.70x at 24 frames and from 1.86x to 1.36x at 256."""
    cost = _load("cost")
    rows = cost.evaluation_rows(["separate.stop=fusion"], base=["separate.stop=end"])
    ratios = [float(r.rsplit("|", 2)[-2].strip().rstrip("x")) for r in rows]
    assert ratios == [2.19, 1.70, 1.86, 1.36]
    # stage 1: 25 steps + the eps at t, x 2 (CFG); stage 2: its 25 steps, the eps at t given back by stage 1's x0
    assert rows[0].startswith("| 24 | before | 100.0 | 52.0 |") and rows[1].startswith("| 24 | after | 52.0 | 50.0 |")


def test_long_drift_gives_the_slopes_per_100_frames_beside_the_ground_truth(tmp_path):
    """Slopes are per frame in ablation.json and per 100 frames in the table; a missing metric is '-'."""
    long_drift = _load("long_drift")
    per = {
        "walk_beach_480": {
            "full": {"drift_bg.mean": 3.0, "drift_bg.slope": 0.0125, "drift_fg_color.slope": -0.0004, "seconds": 300},
            "ground_truth": {"drift_bg.mean": 2.0, "drift_bg.slope": 0.001},
        }
    }
    (tmp_path / "ablation.json").write_text(json.dumps({"per_sequence": per, "machine": "test machine"}))
    text = long_drift.report(tmp_path)
    assert "| walk_beach_480 | full | 3 | 1.25 | - | -0.04 | - | - | 300 |" in text
    assert "| walk_beach_480 | ground_truth | 2 | 0.1 |" in text and "test machine" in text


def test_the_long_suite_is_two_480_frame_videos_frame_by_frame_against_each_stage():
    from vidtune.benchmark.spec import load_spec

    spec = load_spec(None, "long")
    assert [s.frames for s in spec.sequences] == [480, 480]
    assert len({s.motion for s in spec.sequences}) == 2 and len({s.seed for s in spec.sequences}) == 2
    assert {"per_frame_shared_noise", "stages_1_2", "stages_1_2_3", "full", "ground_truth"} <= set(spec.variants)


def test_pose_parts_reports_each_variants_means_and_the_stages_paired_differences():
    """The table's means are over the sequences, the paired rows b - a per sequence (a constant shift has a
    zero-width interval); a pair whose variant did not run has no row."""
    pose_parts = _load("pose_parts")
    keys = pose_parts.KEYS
    per = {
        s: {
            "stages_1_2": {k: base for k in keys},
            "stages_1_2_3": {k: base + (-0.05 if k.startswith("iou") else 12.0) for k in keys},
        }
        for s, base in (("walk", 0.4), ("run", 0.6))
    }
    text = pose_parts.report(per, ["stages_1_2", "stages_1_2_3"])
    assert "| stages_1_2 | 0.500 | 0.500 | 0.5 |" in text
    assert (
        "| stages_1_2_3 - stages_1_2 | -0.050 [-0.050, -0.050] | -0.050 [-0.050, -0.050] | +12.0 [+12.0, +12.0] |"
        in text
    )
    assert "full - " not in text and "stages_1_2_sdedit -" not in text
