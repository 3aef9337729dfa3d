"""The synthetic benchmark world: procedural scenes, a humanoid drawn from COCO-18 poses with its
exact mask and OpenPose condition image, procedural motions, a prompt grammar, and weight-free
adherence checks for generated frames."""

from vidtune.demo.synthetic.grammar import PromptAttributes, format_prompt, parse_prompt, sample_prompt
from vidtune.demo.synthetic.motions import MOTIONS, motion_keypoints, motion_sequence
from vidtune.demo.synthetic.scenes import render_scene
from vidtune.demo.synthetic.world import SyntheticSequence, make_frame, make_sequence

__all__ = [
    "MOTIONS",
    "PromptAttributes",
    "SyntheticSequence",
    "format_prompt",
    "make_frame",
    "make_sequence",
    "motion_keypoints",
    "motion_sequence",
    "parse_prompt",
    "render_scene",
    "sample_prompt",
]
