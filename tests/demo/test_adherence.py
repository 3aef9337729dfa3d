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


def test_pose_iou_parts_tells_an_outfit_of_the_prompts_colour_from_a_figure_off_its_silhouette() -> None:
    """Trousers painted in the prompt's colour where the truth's are khaki lose pose IoU on the figure (``on_leg``)
    and leave the IoU with the figure as void unchanged; the same colour around the silhouette is ``off`` and
    lowers both."""
    import cv2

    from vidtune.demo.synthetic.figure import PART_LEG
    from vidtune.demo.synthetic.grammar import FIGURE_COLOURS
    from vidtune.demo.synthetic.world import make_sequence

    seq = make_sequence("walk", 1, "a red figure walking on a beach during the day", seed=7)  # khaki trousers
    frame, mask, clothes, parts = seq.frames[0], seq.masks[0], seq.clothes_masks[0], seq.parts[0]
    base = M.pose_iou_parts(frame, mask, clothes, parts, "red")
    assert base["iou"] == pytest.approx(M.pose_iou(frame, clothes, "red")) and base["off"] == 0
    legs = (parts == PART_LEG) & ~clothes
    assert legs.sum() > 100
    red_legs = frame.copy()
    red_legs[legs] = FIGURE_COLOURS["red"]
    outfit = M.pose_iou_parts(red_legs, mask, clothes, parts, "red")
    assert outfit["on_leg"] == base["on_leg"] + legs.sum() and outfit["iou"] < base["iou"] - 0.1
    assert outfit["hit"] == base["hit"] and outfit["off"] == 0
    assert outfit["iou_on_figure_void"] == base["iou_on_figure_void"]
    ring = (cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & ~mask
    halo = frame.copy()
    halo[ring] = FIGURE_COLOURS["red"]
    wide = M.pose_iou_parts(halo, mask, clothes, parts, "red")
    assert wide["off"] == ring.sum() and wide["on_figure"] == base["on_figure"]
    assert wide["iou_on_figure_void"] < base["iou_on_figure_void"] - 0.1
