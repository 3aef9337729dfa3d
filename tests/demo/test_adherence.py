"""The synthetic world's adherence metrics (vidtune.demo.synthetic.adherence) in the metrics' form."""

import numpy as np
import pytest

from vidtune.demo.synthetic import adherence as M


def test_adherence_wrappers_need_ground_truth() -> None:
    with pytest.raises(ValueError, match="ground truth"):
        M.compute_pose_adherence([np.zeros((64, 64, 3), np.uint8)])
    with pytest.raises(ValueError, match="ground truth"):
        M.compute_prompt_adherence([np.zeros((64, 64, 3), np.uint8)])


@pytest.mark.slow
def test_adherence_scores_ground_truth_high_and_a_missing_figure_low() -> None:
    from vidtune.demo.synthetic.world import make_sequence

    seq = make_sequence("walk", 6, "a red figure walking on a beach during the day", seed=5)
    good = M.compute_pose_adherence(seq.frames, seq, bucket=4)
    assert good["metrics"]["pose_iou"] > 0.6 and len(good["buckets"]) == 2  # keying misses shading, not the figure
    assert M.compute_prompt_adherence(seq.frames, seq)["metrics"]["colour_accuracy"] == 1.0
    empty = np.repeat(seq.background[None], 6, axis=0)  # the scene without the figure
    assert M.compute_pose_adherence(empty, seq)["metrics"]["pose_iou"] < 0.2
