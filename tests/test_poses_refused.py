"""Degenerate pose sequences: an absurd frame is dropped, a sequence with no usable pose refused."""

import numpy as np
import pytest

from run_helpers import one_line_error, run_args, write_poses
from vidtune import poses

# --- 5. degenerate poses ----------------------------------------------------------------------


def test_one_absurd_frame_is_dropped_and_counted(tmp_path):
    clean = poses.load_poses(write_poses(tmp_path / "clean"))
    for name, fn in [
        ("huge", lambda i, k: k * [1e30, 1e30, 1] if i == 3 else k),
        ("negated", lambda i, k: k * [-1, -1, 1] if i == 3 else k),
    ]:
        seq = poses.load_poses(write_poses(tmp_path / name, frame_fn=fn))
        assert (seq.width, seq.height) == (clean.width, clean.height), name
        assert seq.dropped_joints == 18 and "WARNING: 18 implausible keypoints dropped" in seq.summary()
        assert poses.person_box(seq.keypoints) == pytest.approx(poses.person_box(clean.keypoints), abs=8)
        images = poses.render_sequence(seq, 64, 64, framing="person")
        assert all(img.any() for img in images)


@pytest.mark.parametrize("kind", ["zero", "nan", "negative"])
def test_sequences_without_a_usable_pose_are_refused(kind, tiny_model_dir, tmp_path, capsys):
    fn = {"zero": lambda i, k: k * 0, "nan": lambda i, k: k * np.nan, "negative": lambda i, k: -k}[kind]
    pose_dir = write_poses(tmp_path / "poses", frame_fn=fn)
    line = one_line_error(run_args(tiny_model_dir, pose_dir, tmp_path / "run"), capsys)
    assert "no usable pose" in line and str(pose_dir) in line
    assert not (tmp_path / "run").exists()
