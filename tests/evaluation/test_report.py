"""report.html of a run folder: flicker curves, metric bars and table, frame strips, times, config, machine, command."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vidtune import atomic
from vidtune.config import RunConfig, to_toml
from vidtune.evaluation import report
from vidtune.video import write_frames_png


def fake_run(root: Path, frames: int = 6) -> Path:
    """A run folder as the pipeline leaves it (frames of stages 1, 2, 4 and a ground truth), no model needed."""
    rng = np.random.default_rng(0)
    (root / "inputs").mkdir(parents=True)
    (root / "config.toml").write_text(to_toml(RunConfig()))
    base = rng.integers(0, 255, (16, 16, 3)).astype(np.float32)
    for rel, noise in (("stage1/frames", 40), ("stage2/frames", 20), ("stage4/frames", 8), ("source/gt_frames", 4)):
        video = np.clip(base + rng.normal(0, noise, (frames, 16, 16, 3)), 0, 255).astype(np.uint8)
        write_frames_png(video, root / rel)
    for k, secs in ((1, 1.5), (2, 0.5), (3, 2.0), (4, 3.0)):
        atomic.write_json(root / f"stage{k}" / "done.json", {"stage": k, "seconds": secs, "config_hash": "x"})
    metrics = {
        v: {"flicker": {"mean_abs_diff": f, "mean_abs_diff_bg": f / 2}, "motion_epe": {"epe": 0.5}}
        for v, f in (("ground_truth", 4.0), ("stage1", 40.0), ("stage2", 20.0), ("final", 8.0))
    }
    atomic.write_json(root / "metrics.json", metrics)
    return root


def test_pair_flicker_is_the_mean_abs_difference_of_each_pair():
    frames = np.zeros((3, 2, 2, 3), np.uint8)
    frames[1] = 10
    frames[2] = 4
    assert np.allclose(report.pair_flicker(frames), [10.0, 6.0])
    assert report.pair_flicker(frames[:1]).shape == (0,)


@pytest.mark.slow
def test_a_report_in_a_run_folder_shows_the_run_and_works_offline(tmp_path):
    root = fake_run(tmp_path / "run")
    path = report.write_report(root / "report.html", "a run", [("Notes", "<p>hello</p>")])
    text = path.read_text()
    for heading in (
        "Flicker per frame pair, every stage",
        "Metrics of every video (grey: ground truth)",
        "Frames from each stage",
        "Stage times",
        "Reproduce",
        "Resolved config",
        "Notes",
    ):
        assert f"<h2>{heading}</h2>" in text
    assert text.count("data:image/png;base64,") == 3  # flicker, bars, strip embedded
    assert "In the run folder (run/):" in text and "vidtune run config.toml --out ." in text  # portable rerun
    assert str(tmp_path) not in text  # no machine's absolute path
    assert "torch " in text and "CPU cores" in text  # the machine
    assert "[codenoise]" in text  # the resolved config
    assert "<td>total</td><td>7</td>" in text
    assert not re.search(r"(src|href)=[\"']https?://", text)  # nothing fetched from the network
    assert {p.name for p in (root / "plots").iterdir()} == {"flicker.png", "metrics.png", "strip.png"}


def test_a_report_elsewhere_is_unchanged(tmp_path):
    path = report.write_report(tmp_path / "report.html", "plain", [("A", "<p>x</p>")])
    text = path.read_text()
    assert "<h2>A</h2>" in text and "Stage times" not in text and not (tmp_path / "plots").exists()
    json.dumps(report.machine())  # a plain string
