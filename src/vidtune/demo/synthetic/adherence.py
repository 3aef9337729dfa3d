"""Weight-free adherence checks of generated frames against the synthetic world's ground truth.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.synthetic.adherence`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from vidtune.demo.synthetic.grammar import COLOURS, NO_HAT, SCENES, TIMES, PromptAttributes
from vidtune.demo.synthetic.keying import PALETTE_HUES, hsv, hue_distance, keyed_figure_mask

STRIPE_MAX_SATURATION = 0.3  # the stripes are near white (grammar.STRIPE_RGB)...
STRIPE_MIN_VALUE = 0.7  # ...and bright, relative to the figure's light at the time of day


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def pose_iou(frame: np.ndarray, gt_clothes: np.ndarray, colour: str) -> float:
    """Pose adherence of one generated frame: IoU(colour-keyed figure mask, ground-truth mask).

    ``gt_clothes`` is the ground truth's clothes mask (`SyntheticSequence.clothes_masks`: the
    figure minus head, hands and shoes, whose skin / hair / dark colours also occur in scenes
    and cannot be keyed reliably); torso, arms and legs are what the pose decides.
    """
    return mask_iou(keyed_figure_mask(frame, colour), gt_clothes)


# The truth's parts a keyed pixel on the figure but off its clothes can lie on (`pose_iou_parts`).
OFF_CLOTHES_PARTS = ("torso", "arm", "leg", "skin", "hair", "hat", "shoe")


def pose_iou_parts(frame: np.ndarray, gt_mask: np.ndarray, gt_clothes: np.ndarray, gt_parts: np.ndarray, colour: str):
    """Where `pose_iou`'s errors lie: the keyed pixels (the prompt's colour) split into hits on the truth's
    clothes, pixels on its figure but off its clothes, by the body part of `gt_parts` (``on_<part>``: trousers
    of another colour are ``leg``, the face and hands ``skin``), and pixels off its figure (``off``), with
    the clothes' pixels keyed nowhere (``missed``); ``iou`` is `pose_iou`, ``iou_on_figure_void`` the IoU with
    the figure's non-clothes pixels left out of the count (a segmentation benchmark's void region).

    The world leaves the outfit open (trousers, hat), so a generated figure whose trousers are the prompt's
    colour where the truth's are khaki loses pose IoU without being off its pose; pixels off the silhouette
    and clothes left unkeyed are what a pose error costs. Counts are pixels of one frame."""
    from vidtune.demo.synthetic.figure import (
        PART_ARM,
        PART_HAIR,
        PART_HAT,
        PART_LEG,
        PART_SHOE,
        PART_SKIN,
        PART_TORSO,
    )

    codes = dict(zip(OFF_CLOTHES_PARTS, (PART_TORSO, PART_ARM, PART_LEG, PART_SKIN, PART_HAIR, PART_HAT, PART_SHOE)))
    keyed = keyed_figure_mask(frame, colour)
    figure, clothes = gt_mask.astype(bool), gt_clothes.astype(bool)
    hit = int((keyed & clothes).sum())
    missed = int((clothes & ~keyed).sum())
    off = int((keyed & ~figure).sum())
    on = keyed & figure & ~clothes
    union, counted = hit + missed + off + int(on.sum()), hit + missed + off
    out: dict[str, float] = {
        "iou": 1.0 if union == 0 else hit / union,  # `pose_iou` (`mask_iou`: 1.0 when both are empty)
        "iou_on_figure_void": 1.0 if counted == 0 else hit / counted,
        "hit": float(hit),
        "missed": float(missed),
        "off": float(off),
        "on_figure": float(on.sum()),
    }
    out.update({f"on_{name}": float((on & (gt_parts == code)).sum()) for name, code in codes.items()})
    return out


def classify_figure_colour(frame: np.ndarray, gt_mask: np.ndarray) -> str | None:
    """The palette colour most saturated pixels inside the ground-truth figure mask vote for
    (None when the figure region holds no saturated pixel). `frame_adherence` passes the truth's
    clothes mask when it has one: khaki trousers or a hat of another colour then cast no vote."""
    h, s, v = hsv(frame)
    sel = gt_mask & (s >= 0.35) & (v >= 0.15)
    if not sel.any():
        return None
    hues = h[sel]
    dists = np.stack([hue_distance(hues, PALETTE_HUES[c]) for c in COLOURS])
    votes = np.bincount(dists.argmin(0), minlength=len(COLOURS))
    return COLOURS[int(votes.argmax())]


def scene_features(frame: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Mean colours (0-1) of the sky (top 20%), horizon band (38-58%) and ground (bottom 30%),
    each over pixels outside ``exclude`` (the figure), plus the ground's texture contrast."""
    f = frame.astype(np.float32) / 255.0
    hgt = f.shape[0]
    keep = np.ones(f.shape[:2], bool) if exclude is None else ~exclude
    feats = []
    for lo, hi in ((0.0, 0.2), (0.38, 0.58), (0.7, 1.0)):
        rows = slice(int(lo * hgt), max(int(hi * hgt), int(lo * hgt) + 1))
        px = f[rows][keep[rows]]
        feats.append(px.mean(0) if len(px) else np.full(3, 0.5, np.float32))
    return np.concatenate(feats)


@lru_cache(maxsize=8)
def scene_centroids(
    height: int = 64, width: int = 64, samples: int = 12
) -> tuple[tuple[str, str], np.ndarray, np.ndarray]:
    """Class keys (scene, time), centroids (K, D) and per-dimension spreads (K, D) of
    `scene_features`, measured on ``samples`` rendered backgrounds per class."""
    from vidtune.demo.synthetic.scenes import render_scene

    keys, cents, spreads = [], [], []
    for scene in SCENES:
        for time in TIMES:
            feats = np.stack(
                [scene_features(render_scene((scene, time), 10_000 + k, height, width)) for k in range(samples)]
            )
            keys.append((scene, time))
            cents.append(feats.mean(0))
            spreads.append(feats.std(0))
    return tuple(keys), np.stack(cents), np.stack(spreads)


@dataclass(frozen=True)
class SceneGuess:
    """The (scene, time) class whose centroid is nearest, and the distance to it."""

    scene: str
    time: str
    distance: float


def classify_scene(frame: np.ndarray, figure_mask: np.ndarray | None = None) -> SceneGuess:
    """Scene type and time of day of a frame: nearest centroid of `scene_features`, computed
    outside the (dilated) figure mask."""
    exclude = None
    if figure_mask is not None:
        exclude = cv2.dilate(figure_mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    keys, cents, spreads = scene_centroids(frame.shape[0], frame.shape[1])
    x = scene_features(frame, exclude)
    scale = spreads.mean(0) + 0.03  # one spread per feature, shared by all classes
    d = np.sqrt((((x[None] - cents) / scale) ** 2).mean(1))
    k = int(d.argmin())
    return SceneGuess(scene=keys[k][0], time=keys[k][1], distance=float(d[k]))


@dataclass(frozen=True)
class FrameAdherence:
    """Adherence of one generated frame to its ground truth."""

    pose_iou: float
    colour_ok: bool
    scene_ok: bool
    time_ok: bool
    stripes_iou: float | None = None  # the prompt names a striped shirt: keyed stripes against the truth's
    hat_iou: float | None = None  # the prompt names a hat: the hat's colour keyed against the truth's hat
    identity: Any = None  # `readout.IdentityRead` of the frame (with the truth's part labels), else None
    named: tuple[tuple[str, str | None], ...] = ()  # the identity attributes the frame's prompt names


def keyed_stripes(frame: np.ndarray, figure: np.ndarray, time: str) -> np.ndarray:
    """Bool (H, W): near-white, unsaturated pixels inside the truth's figure mask ``figure``: the
    striped shirt's bands as lit at ``time`` (snow, clouds and grey streets are white-ish too, so only
    the figure is looked at)."""
    from vidtune.demo.synthetic.scenes import FIGURE_LIGHT

    _, s, v = hsv(frame)
    return figure.astype(bool) & (s <= STRIPE_MAX_SATURATION) & (v >= STRIPE_MIN_VALUE * FIGURE_LIGHT[time])


def detail_iou(frame: np.ndarray, attrs: PromptAttributes, gt_mask, gt_stripes, gt_hat, gt_parts=None) -> tuple:
    """(stripes IoU, hat IoU) of one frame against the truth's detail masks; None for a detail the
    prompt does not name (or no truth mask for it). The white bands of a striped shirt and the white
    half of a two-tone one are both keyed as "stripes", inside the truth's torso when its part labels
    ``gt_parts`` are given (white trousers are near white too)."""
    from vidtune.demo.synthetic.figure import PART_TORSO

    stripes = hat = None
    if attrs.shirt in ("striped", "two-tone") and gt_stripes is not None:
        region = gt_mask if gt_parts is None else gt_parts == PART_TORSO
        stripes = mask_iou(keyed_stripes(frame, region, attrs.time), gt_stripes)
    if attrs.hat not in (None, NO_HAT) and gt_hat is not None:
        hat = mask_iou(keyed_figure_mask(frame, attrs.hat), gt_hat)
    return stripes, hat


def frame_adherence(
    frame: np.ndarray,
    gt_mask: np.ndarray,
    attrs: PromptAttributes,
    gt_clothes: np.ndarray | None = None,
    gt_stripes: np.ndarray | None = None,
    gt_hat: np.ndarray | None = None,
    gt_parts: np.ndarray | None = None,
) -> FrameAdherence:
    """Pose IoU, whether colour, scene and time of day are recognised as the prompt says, the
    identity details the prompt names (`detail_iou`), and with the truth's part labels ``gt_parts``
    the figure's identity as the frame shows it (`readout.read_identity`).

    ``gt_clothes`` (`SyntheticSequence.clothes_masks[i]`) is the pose IoU's reference; without
    it the whole figure mask is, and the ground truth itself scores about 0.85 instead of ~0.97.
    """
    guess = classify_scene(frame, gt_mask)
    reference = gt_mask if gt_clothes is None else gt_clothes
    stripes, hat = detail_iou(frame, attrs, gt_mask, gt_stripes, gt_hat, gt_parts)
    read = None
    if gt_parts is not None:
        from vidtune.demo.synthetic.readout import read_identity

        read = read_identity(frame, gt_parts, attrs.colour, attrs.time)
    return FrameAdherence(
        pose_iou=pose_iou(frame, reference, attrs.colour),
        colour_ok=classify_figure_colour(frame, reference) == attrs.colour,
        scene_ok=guess.scene == attrs.scene,
        time_ok=guess.time == attrs.time,
        stripes_iou=stripes,
        hat_iou=hat,
        identity=read,
        named=tuple(attrs.named.items()),
    )


def judge_frames(frames, truth) -> list[FrameAdherence | None]:
    """`frame_adherence` of every frame of a generated video against its `SyntheticSequence`
    (``masks``, ``clothes_masks``, and each frame's prompt: ``frame_attrs`` for a prompt schedule, else
    ``attrs``); None for a frame inside a schedule's transition, which no single prompt judges.

    The one place where a video is judged: `video_adherence`, the metrics registry
    (`vidtune.evaluation.metrics`), the ablation and `vidtune demo` all call it."""
    frames = list(frames)
    if len(frames) != len(truth.masks):
        raise ValueError(f"{len(frames)} generated frames but the ground truth has {len(truth.masks)}")

    def per_frame(name: str) -> list:
        masks = getattr(truth, name, None)
        return [None] * len(frames) if masks is None else list(masks)

    attrs = getattr(truth, "frame_attrs", ()) or [truth.attrs] * len(frames)
    return [
        None if a is None else frame_adherence(np.asarray(f), m, a, c, st, h, p)
        for f, m, c, st, h, p, a in zip(
            frames,
            truth.masks,
            per_frame("clothes_masks"),
            per_frame("stripe_masks"),
            per_frame("hat_masks"),
            per_frame("parts"),
            attrs,
        )
    ]


def video_adherence(frames, truth) -> dict[str, float]:
    """`summarize` of a generated video's judged frames (`judge_frames`): mean pose IoU, colour / scene /
    time-of-day accuracy and the count of judged frames."""
    judged = [r for r in judge_frames(frames, truth) if r is not None]
    if not judged:
        raise ValueError("adherence: no judged frames (every frame lies inside a prompt transition)")
    return summarize(judged)


def summarize(results: list[FrameAdherence]) -> dict[str, float]:
    """Mean pose IoU and colour / scene / time accuracies over many frames, the mean IoU of each
    identity detail over the frames whose prompt names it (absent when none does), and where the
    frames were read (`readout.identity_summary`): ``<attr>_accuracy`` over the frames whose prompt
    names the attribute, ``identity_consistency`` (share of frames showing each attribute's most
    common value, averaged over the attributes; 1 = the identity never changes) and
    ``identity_flips`` (attribute changes per frame pair). Consistency and flips treat ``results``
    as consecutive frames of one video."""
    out = {
        "pose_iou": float(np.mean([r.pose_iou for r in results])),
        "colour_accuracy": float(np.mean([r.colour_ok for r in results])),
        "scene_accuracy": float(np.mean([r.scene_ok for r in results])),
        "time_accuracy": float(np.mean([r.time_ok for r in results])),
        "count": float(len(results)),
    }
    for key in ("stripes_iou", "hat_iou"):
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        if values:
            out[key] = float(np.mean(values))
    read = [r for r in results if r.identity is not None]
    if read:
        from vidtune.demo.synthetic.readout import identity_summary

        ident = identity_summary([r.identity for r in read], [dict(r.named) for r in read])
        out.update({k: v for k, v in ident.items() if k.endswith("_accuracy")})
        if "consistency" in ident:
            out["identity_consistency"], out["identity_flips"] = ident["consistency"], ident["flips"]
    return out


# --- the metrics' form (``vidtune.evaluation.metrics``: over the video and per time bucket) ---


def _adherence(frames: Iterable[np.ndarray], ground_truth: Any, keys: tuple[str, ...], bucket: int) -> dict[str, Any]:
    """Adherence against a synthetic sequence (``judge_frames``: its
    masks and each frame's prompt), summarised over the video and per time bucket of ``bucket``
    judged frames (the frames inside a prompt schedule's transitions are not judged)."""
    if ground_truth is None or not hasattr(ground_truth, "masks") or not hasattr(ground_truth, "attrs"):
        raise ValueError(
            "adherence needs ground truth: the synthetic world's sequence (masks and prompt) for these poses"
        )
    results = [r for r in judge_frames(frames, ground_truth) if r is not None]
    if not results:
        raise ValueError("adherence: no frames")

    def pick(rs: list) -> dict[str, float]:
        summary = summarize(rs)
        return {k: summary[k] for k in keys}

    buckets = [
        {"start": b, "end": min(b + bucket, len(results)), "metrics": pick(results[b : b + bucket])}
        for b in range(0, len(results), bucket)
    ]
    return {"metrics": pick(results), "buckets": buckets}


def compute_pose_adherence(frames: Iterable[np.ndarray], ground_truth: Any = None, bucket: int = 16) -> dict[str, Any]:
    """Pose adherence: mean IoU of the colour-keyed figure mask with the ground-truth mask of the pose.

    ``ground_truth`` is a ``vidtune.demo.synthetic.world.SyntheticSequence`` for the same poses; there is
    no weight-free way to judge pose adherence without it.
    """
    return _adherence(frames, ground_truth, ("pose_iou",), bucket)


def compute_prompt_adherence(
    frames: Iterable[np.ndarray], ground_truth: Any = None, bucket: int = 16
) -> dict[str, Any]:
    """Prompt adherence: accuracy of the recognised figure colour, scene type and time of day."""
    return _adherence(frames, ground_truth, ("colour_accuracy", "scene_accuracy", "time_accuracy"), bucket)
