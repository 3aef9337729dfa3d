"""Ground-truth videos of the synthetic world: a static scene with a moving figure.

`make_sequence` renders, for one prompt and motion, the keypoints, the RGB frames, the exact
foreground masks and the OpenPose condition images (`vidtune.poses.render_pose`). `make_frame`
does the same for one pose (what the demo model is trained on: single frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidtune.demo.synthetic.figure import FigureColours, FigureLayer, composite, render_figure
from vidtune.demo.synthetic.grammar import PromptAttributes, format_prompt, parse_prompt
from vidtune.demo.synthetic.identity import Identity
from vidtune.demo.synthetic.motions import motion_sequence
from vidtune.demo.synthetic.scenes import FIGURE_LIGHT, render_scene
from vidtune.poses import render_pose


@dataclass(frozen=True)
class SyntheticSequence:
    """A rendered ground-truth video.

    keypoints: ``(N, 18, 3)`` (x, y, conf) pixels; frames: ``(N, H, W, 3)`` uint8 RGB;
    masks: ``(N, H, W)`` bool, exact figure masks; clothes_masks: ``(N, H, W)`` bool, the part
    of each mask drawn in the prompt's colour (shirt, sleeves, trousers); pose_images: ``(N, H, W, 3)`` uint8 OpenPose
    renderings; background: ``(H, W, 3)`` uint8 (the same for every frame); stripe_masks and hat_masks:
    ``(N, H, W)`` bool, the pixels of the striped (or two-tone) shirt's white and of the hat (all False
    without them); identity: the figure's concrete identity (the prompt's named attributes, the open
    ones drawn once for the video); parts: ``(N, H, W)`` int8, the body part of each figure pixel
    (`vidtune.demo.synthetic.figure.PART_*`).
    """

    keypoints: np.ndarray
    frames: np.ndarray
    masks: np.ndarray
    clothes_masks: np.ndarray
    pose_images: np.ndarray
    background: np.ndarray
    prompt: str
    attrs: PromptAttributes
    # A prompt schedule's truth: frame i's prompt attributes (None: inside a transition between two
    # prompts, judged by neither). Empty for one prompt (every frame `attrs`).
    frame_attrs: tuple[PromptAttributes | None, ...] = ()
    stripe_masks: np.ndarray | None = None
    hat_masks: np.ndarray | None = None
    identity: Identity = Identity()
    parts: np.ndarray | None = None


IDENTITY_STREAM = 104729  # the identity's random stream: np.random.default_rng([seed, IDENTITY_STREAM])


def video_identity(attrs: PromptAttributes, seed: int) -> Identity:
    """The identity of the video of ``attrs`` with ``seed``: named attributes as named, the open ones
    drawn once from the seed's own stream (the motion and the scene keep theirs)."""
    return attrs.identity(np.random.default_rng([seed, IDENTITY_STREAM]))


def draw_figure(
    keypoints: np.ndarray,
    attrs: PromptAttributes,
    height: int,
    width: int,
    depth: np.ndarray | None = None,
    identity: Identity | None = None,
) -> FigureLayer:
    """The figure of ``attrs`` (its colour, lit for its time of day) in one pose, dressed in ``identity``
    (default: what the prompt names, the default identity for what it leaves open)."""
    return render_figure(
        keypoints,
        FigureColours.from_attrs(attrs, identity),
        height,
        width,
        depth=depth,
        light=FIGURE_LIGHT[attrs.time],
    )


def make_frame(
    keypoints: np.ndarray,
    attrs: PromptAttributes,
    background: np.ndarray,
    depth: np.ndarray | None = None,
    identity: Identity | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame: (rgb uint8 (H, W, 3), mask bool (H, W), pose image uint8 (H, W, 3))."""
    h, w = background.shape[:2]
    layer = draw_figure(keypoints, attrs, h, w, depth, identity)
    return composite(background, layer), layer.mask, render_pose(keypoints, h, w)


def make_sequence(
    motion: str,
    num_frames: int,
    prompt: str | PromptAttributes,
    seed: int = 0,
    height: int = 64,
    width: int = 64,
    *,
    speed: float = 1.0,
    translate: str | float = "auto",
    scene_seed: int | None = None,
    identity_seed: int | None = None,
) -> SyntheticSequence:
    """Render the ground-truth video of ``motion`` for ``prompt``.

    Args:
        motion: a motion name (`vidtune.demo.synthetic.motions.MOTIONS`).
        num_frames: length of the video.
        prompt: a grammar sentence or its attributes (the prompt's own motion word, if any,
            is only text: ``motion`` decides the movement).
        seed: the motion's seed (body size, phase, start position); the scene uses
            ``scene_seed`` (default: ``seed``).
        height, width: frame size.
        speed, translate: see `vidtune.demo.synthetic.motions.motion_keypoints`.
        identity_seed: draws the identity attributes the prompt leaves open (`video_identity`;
            default: ``seed``), once for the whole video.
    """
    attrs = prompt if isinstance(prompt, PromptAttributes) else parse_prompt(prompt)
    text = prompt if isinstance(prompt, str) else format_prompt(prompt)
    identity = video_identity(attrs, seed if identity_seed is None else identity_seed)
    seq = motion_sequence(motion, num_frames, height=height, width=width, speed=speed, translate=translate, seed=seed)
    background = render_scene(attrs, seed if scene_seed is None else scene_seed, height, width)
    frames, masks, clothes, stripes, hats, poses, parts = [], [], [], [], [], [], []
    for kp, dp in zip(seq.keypoints, seq.depth):
        layer = draw_figure(kp, attrs, height, width, dp, identity)
        frames.append(composite(background, layer))
        masks.append(layer.mask)
        clothes.append(layer.clothes)
        stripes.append(layer.stripes)
        hats.append(layer.hat)
        parts.append(layer.parts)
        poses.append(render_pose(kp, height, width))
    return SyntheticSequence(
        keypoints=seq.keypoints,
        frames=np.stack(frames),
        masks=np.stack(masks),
        clothes_masks=np.stack(clothes),
        pose_images=np.stack(poses),
        background=background,
        prompt=text,
        attrs=attrs,
        stripe_masks=np.stack(stripes),
        hat_masks=np.stack(hats),
        identity=identity,
        parts=np.stack(parts),
    )


def make_scheduled_sequence(
    motion: str,
    num_frames: int,
    schedule: dict[int, str],
    seed: int = 0,
    height: int = 64,
    width: int = 64,
    transition: int = 0,
) -> SyntheticSequence:
    """The ground truth of a prompt schedule ({first_frame: prompt}): one motion, each segment's
    frames rendered with its own prompt (scene, time of day, figure colour). The frames of the
    transitions stage 4 makes (`vidtune.method.segments.transition_frames` over ``transition`` frames)
    are marked (``frame_attrs`` None): a generated video is meant to be in between there, and no
    single prompt judges it."""
    from vidtune.method.segments import transition_frames

    starts = sorted(schedule)
    if not starts or starts[0] != 0:
        raise ValueError(f"schedule must start at frame 0, got {starts}")
    rendered = {
        k: make_sequence(motion, num_frames, schedule[k], seed=seed, height=height, width=width) for k in starts
    }
    owner = np.searchsorted(np.array(starts), np.arange(num_frames), side="right") - 1
    pick = [rendered[starts[o]] for o in owner]
    segments = list(zip(starts, starts[1:] + [num_frames]))
    between = transition_frames(num_frames, segments, transition).tolist()
    attrs = tuple(None if between[i] else seq.attrs for i, seq in enumerate(pick))
    first = rendered[0]
    return SyntheticSequence(
        keypoints=first.keypoints,
        frames=np.stack([s.frames[i] for i, s in enumerate(pick)]),
        masks=np.stack([s.masks[i] for i, s in enumerate(pick)]),  # a hat in one segment changes the mask
        clothes_masks=np.stack([s.clothes_masks[i] for i, s in enumerate(pick)]),
        pose_images=first.pose_images,
        background=first.background,
        prompt=first.prompt,
        attrs=first.attrs,
        frame_attrs=attrs,
        stripe_masks=np.stack([s.stripe_masks[i] for i, s in enumerate(pick)]),
        hat_masks=np.stack([s.hat_masks[i] for i, s in enumerate(pick)]),
        identity=first.identity,
        parts=np.stack([s.parts[i] for i, s in enumerate(pick)]),
    )
