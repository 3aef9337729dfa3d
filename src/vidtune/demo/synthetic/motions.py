"""Procedural motions as COCO-18 keypoint sequences (walk, run, wave, jump, dance, squat, turn).

A small 3-D skeleton (body height 1, y up, z toward the viewer) is posed by a few joint angles
per frame, turned by a yaw angle and projected orthographically onto the canvas. The feet stay
on a ground line (the lowest ankle touches it unless the motion lifts the body), walk and run
translate the figure (bouncing between the canvas edges, turning through the front view at the
ends), and every sequence is scaled and shifted once, uniformly over time, so that it stays in
frame. Keypoints are ``(x, y, conf)`` in canvas pixels; eyes, ears and nose turned away from
the viewer get ``conf = 0`` as OpenPose would miss them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vidtune.errors import VidtuneError

# Body proportions (units of body height).
SHIN, THIGH, TORSO = 0.245, 0.245, 0.30
UPPER_ARM, FOREARM = 0.16, 0.15
SHOULDER_HALF, HIP_HALF = 0.105, 0.06
HEAD_UP = 0.10  # neck -> head centre
FIGURE_SCALE = 0.66  # body height in units of canvas height
GROUND = 0.93  # ground line, fraction of canvas height
MARGIN = 0.06  # keypoints stay this far (fraction of the canvas) from every edge


@dataclass(frozen=True)
class Pose:
    """Joint angles of one frame (radians; flex = forward swing, abd = outward raise)."""

    yaw: float = 0.0  # 0 faces the viewer, +pi/2 faces screen-right
    lean: float = 0.0
    lift: float = 0.0  # extra pelvis height (jumps), body units
    sway: float = 0.0  # lateral pelvis shift, body units
    r_hip: float = 0.0
    l_hip: float = 0.0
    r_knee: float = 0.0
    l_knee: float = 0.0
    r_hip_abd: float = 0.0
    l_hip_abd: float = 0.0
    r_sh: float = 0.0
    l_sh: float = 0.0
    r_sh_abd: float = 0.12
    l_sh_abd: float = 0.12
    r_elbow: float = 0.2
    l_elbow: float = 0.2
    r_fore_abd: float | None = None  # forearm abduction; None = same as the upper arm
    l_fore_abd: float | None = None


@dataclass(frozen=True)
class MotionSpec:
    """A registered motion: pose(phase) and its natural period and travel speed."""

    pose: Callable[[float], Pose]
    period: float  # frames per cycle at speed 1
    travels: bool  # walks across the canvas by default (yaw follows the direction)
    stride: float = 0.0  # body units travelled per cycle when translating


def _walk(p: float) -> Pose:
    s, c = math.sin(p), math.cos(p)
    return Pose(
        yaw=math.pi / 2,
        lean=0.04,
        r_hip=0.42 * s,
        l_hip=-0.42 * s,
        r_knee=0.1 + 0.6 * max(0.0, c) ** 2,
        l_knee=0.1 + 0.6 * max(0.0, -c) ** 2,
        r_sh=-0.4 * s,
        l_sh=0.4 * s,
        r_elbow=0.3 - 0.15 * s,
        l_elbow=0.3 + 0.15 * s,
        r_sh_abd=0.08,
        l_sh_abd=0.08,
    )


def _run(p: float) -> Pose:
    s, c = math.sin(p), math.cos(p)
    return Pose(
        yaw=math.pi / 2,
        lean=0.18,
        lift=0.04 * abs(math.sin(2 * p)),
        r_hip=0.7 * s + 0.1,
        l_hip=-0.7 * s + 0.1,
        r_knee=0.3 + 1.1 * max(0.0, c),
        l_knee=0.3 + 1.1 * max(0.0, -c),
        r_sh=-0.75 * s,
        l_sh=0.75 * s,
        r_elbow=1.4,
        l_elbow=1.4,
        r_sh_abd=0.1,
        l_sh_abd=0.1,
    )


def _wave(p: float) -> Pose:
    s = math.sin(p)
    return Pose(
        yaw=0.15 * math.sin(p / 2),
        sway=0.015 * s,
        r_sh=0.1,
        r_sh_abd=1.35 + 0.08 * s,
        r_elbow=0.0,
        r_fore_abd=2.55 + 0.4 * s,
        l_sh_abd=0.15,
        l_elbow=0.25,
        r_hip_abd=0.06,
        l_hip_abd=0.06,
        r_knee=0.05,
        l_knee=0.05,
    )


def _jump(p: float) -> Pose:
    up = max(0.0, math.sin(p))
    crouch = max(0.0, -math.sin(p))
    return Pose(
        yaw=0.5,
        lean=0.35 * crouch,
        lift=0.16 * up,
        r_hip=0.7 * crouch + 0.1 * up,
        l_hip=0.7 * crouch + 0.1 * up,
        r_knee=1.2 * crouch + 0.2 * up,
        l_knee=1.2 * crouch + 0.2 * up,
        r_sh=-0.6 * crouch + 2.5 * up,
        l_sh=-0.6 * crouch + 2.5 * up,
        r_elbow=0.3,
        l_elbow=0.3,
        r_hip_abd=0.05,
        l_hip_abd=0.05,
    )


def _dance(p: float) -> Pose:
    s, c = math.sin(p), math.cos(p)
    return Pose(
        yaw=0.45 * math.sin(p / 2),
        sway=0.05 * s,
        lift=0.02 * max(0.0, math.sin(2 * p)),
        r_hip_abd=0.08 + 0.25 * max(0.0, s),
        l_hip_abd=0.08 + 0.25 * max(0.0, -s),
        r_knee=0.15 + 0.35 * max(0.0, -s),
        l_knee=0.15 + 0.35 * max(0.0, s),
        r_hip=0.1 + 0.2 * max(0.0, -s),
        l_hip=0.1 + 0.2 * max(0.0, s),
        r_sh_abd=1.4 + 1.0 * s,
        l_sh_abd=1.4 - 1.0 * c,
        r_elbow=0.6 + 0.5 * c,
        l_elbow=0.6 + 0.5 * s,
        r_sh=0.3,
        l_sh=0.3,
    )


def _squat(p: float) -> Pose:
    d = (1 - math.cos(p)) / 2
    return Pose(
        yaw=0.6,
        lean=0.55 * d,
        r_hip=1.3 * d,
        l_hip=1.3 * d,
        r_knee=1.9 * d,
        l_knee=1.9 * d,
        r_sh=1.45 * d,
        l_sh=1.45 * d,
        r_elbow=0.15,
        l_elbow=0.15,
        r_hip_abd=0.08,
        l_hip_abd=0.08,
    )


def _turn(p: float) -> Pose:
    step = math.sin(2 * p)
    return Pose(
        yaw=p,
        r_hip=0.15 * max(0.0, step),
        l_hip=0.15 * max(0.0, -step),
        r_knee=0.3 * max(0.0, step),
        l_knee=0.3 * max(0.0, -step),
        r_sh=0.15 * step,
        l_sh=-0.15 * step,
        r_sh_abd=0.2,
        l_sh_abd=0.2,
    )


MOTIONS: dict[str, MotionSpec] = {
    "walk": MotionSpec(_walk, period=16.0, travels=True, stride=0.75),
    "run": MotionSpec(_run, period=12.0, travels=True, stride=1.2),
    "wave": MotionSpec(_wave, period=12.0, travels=False),
    "jump": MotionSpec(_jump, period=22.0, travels=False),
    "dance": MotionSpec(_dance, period=24.0, travels=False),
    "squat": MotionSpec(_squat, period=22.0, travels=False),
    "turn": MotionSpec(_turn, period=40.0, travels=False),
}


def _dir(flex: float, abd: float, up: np.ndarray, fwd: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Unit direction of a limb hanging down, swung forward by ``flex`` and outward by ``abd``."""
    sag = -math.cos(flex) * up + math.sin(flex) * fwd
    return math.cos(abd) * sag + math.sin(abd) * out


def pose_to_3d(pose: Pose, scale: float = 1.0) -> np.ndarray:
    """The 18 COCO joints in 3-D body units (x right, y up, z toward the viewer), feet on y = 0."""
    up = np.array([0.0, 1.0, 0.0])
    fwd = np.array([math.sin(pose.yaw), 0.0, math.cos(pose.yaw)])
    left = np.array([math.cos(pose.yaw), 0.0, -math.sin(pose.yaw)])  # the figure's own left
    j = np.zeros((18, 3))
    pelvis = np.array([pose.sway, 0.0, 0.0])
    for side, hip_i, knee_i, ankle_i, flex, knee, abd in (
        (-1, 8, 9, 10, pose.r_hip, pose.r_knee, pose.r_hip_abd),
        (1, 11, 12, 13, pose.l_hip, pose.l_knee, pose.l_hip_abd),
    ):
        out = side * left
        j[hip_i] = pelvis + HIP_HALF * out
        j[knee_i] = j[hip_i] + THIGH * _dir(flex, abd, up, fwd, out)
        j[ankle_i] = j[knee_i] + SHIN * _dir(flex - knee, abd, up, fwd, out)
    spine = math.cos(pose.lean) * up + math.sin(pose.lean) * fwd
    j[1] = pelvis + TORSO * spine
    for side, sh_i, el_i, wr_i, flex, abd, elbow, fabd in (
        (-1, 2, 3, 4, pose.r_sh, pose.r_sh_abd, pose.r_elbow, pose.r_fore_abd),
        (1, 5, 6, 7, pose.l_sh, pose.l_sh_abd, pose.l_elbow, pose.l_fore_abd),
    ):
        out = side * left
        j[sh_i] = j[1] + SHOULDER_HALF * out - 0.01 * up
        j[el_i] = j[sh_i] + UPPER_ARM * _dir(flex, abd, up, fwd, out)
        j[wr_i] = j[el_i] + FOREARM * _dir(flex + elbow, abd if fabd is None else fabd, up, fwd, out)
    head = j[1] + HEAD_UP * spine
    j[0] = head + 0.075 * fwd - 0.01 * up
    j[14] = head + 0.055 * fwd + 0.02 * up - 0.028 * left  # REye
    j[15] = head + 0.055 * fwd + 0.02 * up + 0.028 * left
    j[16] = head - 0.06 * left + 0.005 * up  # REar
    j[17] = head + 0.06 * left + 0.005 * up
    j *= scale
    j[:, 1] -= min(j[10, 1], j[13, 1]) - pose.lift * scale  # lowest ankle on the ground, plus lift
    return j


def _face_visibility(joints: np.ndarray) -> np.ndarray:
    """conf per joint: face points turned away from the viewer (z) are not detected."""
    conf = np.ones(18)
    head = (joints[16] + joints[17]) / 2
    for i in (0, 14, 15, 16, 17):
        off = joints[i] - head
        n = np.linalg.norm(off)
        if n > 0 and off[2] / n < -0.25:
            conf[i] = 0.0
    return conf


@dataclass(frozen=True)
class MotionSequence:
    """keypoints ``(N, 18, 3)`` (x, y, conf) in canvas pixels and depth ``(N, 18)`` (larger = nearer)."""

    keypoints: np.ndarray
    depth: np.ndarray


def motion_sequence(
    name: str,
    num_frames: int,
    *,
    height: int = 64,
    width: int = 64,
    speed: float = 1.0,
    translate: str | float = "auto",
    seed: int = 0,
) -> MotionSequence:
    """A smooth, in-frame sequence of motion ``name`` (see `motion_keypoints`), with joint depths."""
    if name not in MOTIONS:
        raise VidtuneError(f"unknown motion {name!r}; choose one of {', '.join(MOTIONS)}")
    if num_frames < 1:
        raise VidtuneError(f"num_frames must be at least 1, got {num_frames}")
    if speed <= 0:
        raise VidtuneError(f"speed must be positive, got {speed}")
    spec = MOTIONS[name]
    rng = np.random.default_rng(seed)
    body_px = FIGURE_SCALE * height * rng.uniform(0.92, 1.05)
    phase0 = rng.uniform(0, 2 * math.pi)
    direction = 1.0 if rng.random() < 0.5 else -1.0
    if translate == "auto":
        vmax = 0.05 * spec.stride / 0.75 * body_px if spec.travels else 0.0  # px per frame at speed 1
    elif translate == "none":
        vmax = 0.0
    elif translate in ("left", "right"):
        direction = 1.0 if translate == "right" else -1.0
        vmax = 0.05 * max(spec.stride, 0.5) / 0.75 * body_px
    elif isinstance(translate, (int, float)) and not isinstance(translate, bool):
        vmax = abs(float(translate))
        if translate < 0:
            direction = -1.0
    else:
        raise VidtuneError(f"translate must be 'auto', 'none', 'left', 'right' or px/frame, got {translate!r}")
    vmax *= speed
    half_range = max(width * (0.5 - MARGIN) - 0.16 * body_px, 1.0)
    t = np.arange(num_frames, dtype=np.float64)
    if vmax > 0:
        omega = vmax / half_range
        theta0 = rng.uniform(-0.6, 0.6)
        x = width / 2 + half_range * np.sin(omega * t + theta0)
        v = direction * vmax * np.cos(omega * t + theta0)
        x = width / 2 + direction * (x - width / 2)
        travelled = np.concatenate([[0.0], np.cumsum(np.abs(np.diff(x)))])
        stride_px = max(spec.stride, 0.5) * body_px
        phase = (
            phase0 + 2 * math.pi * travelled / stride_px
            if spec.travels
            else phase0 + 2 * math.pi * speed * t / spec.period
        )
    else:
        x = np.full(num_frames, width / 2 + rng.uniform(-0.12, 0.12) * width)
        v = np.full(num_frames, direction)
        phase = phase0 + 2 * math.pi * speed * t / spec.period

    kps = np.zeros((num_frames, 18, 3))
    depth = np.zeros((num_frames, 18))
    ground = GROUND * height
    for i in range(num_frames):
        pose = spec.pose(float(phase[i]))
        if spec.travels:
            # Face the direction of travel; pass through the front view where the path turns.
            frac = float(np.clip(v[i] / (0.5 * vmax), -1.0, 1.0)) if vmax > 0 else float(np.sign(v[i]))
            pose = Pose(**{**pose.__dict__, "yaw": frac * math.pi / 2})
        elif direction < 0 and name != "turn":
            pose = Pose(**{**pose.__dict__, "yaw": -pose.yaw})
        j3 = pose_to_3d(pose, body_px)
        kps[i, :, 0] = x[i] + j3[:, 0]
        kps[i, :, 1] = ground - j3[:, 1]
        kps[i, :, 2] = _face_visibility(j3)
        depth[i] = j3[:, 2]
    kps = _fit_in_frame(kps, height, width)
    return MotionSequence(keypoints=kps, depth=depth)


def _fit_in_frame(kps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale about the ground centre and shift, once for the whole sequence, to keep a margin."""
    lo = np.array([MARGIN * width, MARGIN * height])
    hi = np.array([(1 - MARGIN) * width, (1 - MARGIN) * height])
    pts = kps[..., :2].reshape(-1, 2)
    mn, mx = pts.min(0), pts.max(0)
    span = mx - mn
    room = hi - lo
    s = float(min(1.0, *(room / np.maximum(span, 1e-6))))
    out = kps.copy()
    if s < 1.0:
        centre = (mn + mx) / 2
        out[..., :2] = (out[..., :2] - centre) * s + centre
        mn, mx = (mn - centre) * s + centre, (mx - centre) * s + centre
    shift = np.maximum(lo - mn, 0) - np.maximum(mx - hi, 0)
    out[..., :2] += shift
    return out


def motion_keypoints(
    name: str,
    num_frames: int,
    *,
    height: int = 64,
    width: int = 64,
    speed: float = 1.0,
    translate: str | float = "auto",
    seed: int = 0,
) -> np.ndarray:
    """COCO-18 keypoints ``(num_frames, 18, 3)`` (x, y, conf; pixels) of motion ``name``.

    Args:
        name: one of `MOTIONS` (walk, run, wave, jump, dance, squat, turn).
        num_frames: any length >= 1; the motion loops with its period (frames per cycle / speed).
        height, width: canvas size in pixels.
        speed: multiplies both the cycle rate and the travel speed.
        translate: "auto" (walk and run travel, the others stay in place), "none", "left"/"right"
            (travel starting in that direction), or a speed in px per frame (sign = direction).
            Travelling figures bounce between the canvas edges, slowing and turning at the ends.
        seed: body size, start phase, start position and direction.

    Every keypoint stays inside the canvas (a margin of 6%), and consecutive frames differ smoothly.
    """
    return motion_sequence(
        name, num_frames, height=height, width=width, speed=speed, translate=translate, seed=seed
    ).keypoints
