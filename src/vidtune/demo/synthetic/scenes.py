"""Procedural scenes: sky by time of day, ground by scene type, hills, trees, houses, sun/moon,
clouds, stars and textured ground (sand ripples, grass blades, snow sparkle, dunes, paving).

`render_scene` is a pure function of (attributes, seed, size): the same seed gives the same
background, so a video's background is static. Scenes are drawn at twice the resolution and
downsampled (area) for clean edges. Colours are kept muted (saturation below about 0.6) so
that the figure's saturated colours stay recognisable (see `adherence`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from vidtune.demo.synthetic.grammar import SCENES, TIMES, PromptAttributes

SKY: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {  # (top, horizon)
    "day": ((96, 146, 212), (188, 214, 236)),
    "sunset": ((64, 58, 116), (246, 156, 96)),
    "night": ((8, 10, 28), (34, 40, 76)),
}
LIGHT: dict[str, np.ndarray] = {  # multiplies ground colours
    "day": np.array([1.0, 1.0, 1.0]),
    "sunset": np.array([0.98, 0.78, 0.66]),
    "night": np.array([0.3, 0.34, 0.48]),
}
FIGURE_LIGHT: dict[str, float] = {"day": 1.0, "sunset": 0.92, "night": 0.72}
GROUND: dict[str, tuple[int, int, int]] = {
    "beach": (226, 206, 158),
    "snow": (236, 240, 248),
    "grass": (104, 146, 70),
    "desert": (214, 168, 108),
    "city": (104, 104, 110),
}


def _noise(rng: np.random.Generator, h: int, w: int, cells: tuple[int, int], octaves: int = 3) -> np.ndarray:
    """Smooth value noise in [-1, 1], shape (h, w): sum of bicubically upsampled random grids."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    cy, cx = cells
    for _ in range(octaves):
        grid = rng.uniform(-1, 1, (max(cy, 2), max(cx, 2))).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cy, cx = cy * 2, cx * 2
    return np.clip(out / total, -1, 1)


def _vgrad(h: int, w: int, top: tuple[int, int, int], bottom: tuple[int, int, int], y0: int, y1: int) -> np.ndarray:
    t = np.clip((np.arange(h, dtype=np.float32) - y0) / max(y1 - y0, 1), 0, 1)[:, None, None]
    img = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return np.broadcast_to(img, (h, w, 3)).copy()


def _blend(img: np.ndarray, mask: np.ndarray, colour: np.ndarray | tuple[int, int, int], alpha: float = 1.0) -> None:
    m = mask.astype(np.float32)[..., None] * alpha
    img[...] = img * (1 - m) + np.asarray(colour, np.float32) * m


@dataclass
class _Canvas:
    """A scene being painted at supersampled size: the image, its pixel grids, the random stream every
    part draws from in turn (so the same seed gives the same scene), the light and the horizon."""

    img: np.ndarray
    xx: np.ndarray
    yy: np.ndarray
    H: int
    W: int
    rng: np.random.Generator
    light: np.ndarray
    scene: str
    time: str
    horizon: int


def render_scene(attrs: PromptAttributes | tuple[str, str], seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """A static background for scene type and time of day.

    Args:
        attrs: `PromptAttributes` (its scene and time are used) or a ``(scene, time)`` pair.
        seed: layout and texture; the same (attrs, seed, size) always gives the same image.
        height, width: output size in pixels.

    Returns:
        ``(height, width, 3)`` uint8 RGB.
    """
    scene, time = (attrs.scene, attrs.time) if isinstance(attrs, PromptAttributes) else attrs
    if scene not in SCENES or time not in TIMES:
        raise ValueError(f"unknown scene/time {scene!r}/{time!r}; scenes: {SCENES}, times: {TIMES}")
    rng = np.random.default_rng([seed, SCENES.index(scene), TIMES.index(time)])
    ss = 2
    H, W = height * ss, width * ss
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    horizon = int(H * rng.uniform(0.40, 0.54))
    light = LIGHT[time]

    c = _Canvas(None, xx, yy, H, W, rng, light, scene, time, horizon)
    _sky(c)
    c.horizon = _far_layer(c)
    _ground(c)
    _objects(c)
    img = c.img
    img = cv2.resize(np.clip(img, 0, 255), (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _sky(c: _Canvas) -> None:
    """The sky's gradient and noise, stars at night, the sun or moon with its glow, and clouds (into c.img)."""
    xx, yy, H, W, rng, time, horizon = c.xx, c.yy, c.H, c.W, c.rng, c.time, c.horizon

    top, bottom = SKY[time]
    img = c.img = _vgrad(H, W, top, bottom, 0, horizon)
    img += 6 * _noise(rng, H, W, (2, 3), 2)[..., None]
    if time == "night":
        n_stars = int(W * horizon / 180)
        sy, sx = rng.integers(0, max(horizon - 4, 1), n_stars), rng.integers(0, W, n_stars)
        bright = rng.uniform(120, 230, n_stars)
        for y, x, b in zip(sy, sx, bright):
            img[y, x] = np.maximum(img[y, x], b)
    # sun / moon
    cx = rng.uniform(0.12, 0.88) * W
    if time == "day":
        cy, rad, col = rng.uniform(0.08, 0.25) * H, 0.06 * W, (252, 246, 216)
    elif time == "sunset":
        cy, rad, col = horizon - rng.uniform(0.0, 0.10) * H, 0.09 * W, (250, 150, 84)
    else:
        cy, rad, col = rng.uniform(0.08, 0.22) * H, 0.05 * W, (226, 228, 214)
    d = np.hypot(xx - cx, yy - cy)
    _blend(img, np.clip((rad * 2.6 - d) / (rad * 1.6), 0, 1) ** 2, col, 0.35)  # glow
    _blend(img, d <= rad, col)
    if time == "night":  # crescent: a darker disc overlapping the moon
        off = rng.uniform(0.3, 0.6) * rad
        _blend(img, (d <= rad) & (np.hypot(xx - cx - off, yy - cy + 0.3 * off) <= rad * 0.95), SKY["night"][0], 0.85)
    # clouds
    if time != "night" or rng.random() < 0.5:
        ccol = {"day": (244, 246, 250), "sunset": (214, 136, 120), "night": (52, 56, 80)}[time]
        for _ in range(rng.integers(1, 4)):
            ccx, ccy = rng.uniform(0, W), rng.uniform(0.08, 0.65) * horizon
            puff = np.zeros((H, W), bool)
            for _ in range(rng.integers(3, 6)):
                px_, py_ = ccx + rng.normal(0, 0.07 * W), ccy + rng.normal(0, 0.015 * H)
                puff |= ((xx - px_) / (0.06 * W * rng.uniform(0.8, 1.5))) ** 2 + ((yy - py_) / (0.03 * H)) ** 2 <= 1
            _blend(img, cv2.GaussianBlur(puff.astype(np.float32), (0, 0), 1.2), ccol, 0.85)


def _far_layer(c: _Canvas) -> int:
    """Hills, the sea or a city skyline behind the ground; returns the horizon (the sea's shore moves it)."""
    img, xx, yy, H, W, rng, light, scene, time, horizon = (
        c.img,
        c.xx,
        c.yy,
        c.H,
        c.W,
        c.rng,
        c.light,
        c.scene,
        c.time,
        c.horizon,
    )

    # --- far layer: hills / sea / skyline ---
    def ridge(base: float, amp: float, freq: float) -> np.ndarray:
        ph = rng.uniform(0, 2 * np.pi, 3)
        xs = np.arange(W, dtype=np.float32) / W
        return (
            base
            - amp
            * (
                np.sin(2 * np.pi * freq * xs + ph[0])
                + 0.5 * np.sin(4.3 * np.pi * freq * xs + ph[1])
                + 0.25 * np.sin(9.1 * np.pi * freq * xs + ph[2])
            )
            / 1.75
        )

    if scene in ("grass", "snow", "desert"):
        hill_col = {"grass": (84, 120, 88), "snow": (206, 214, 232), "desert": (196, 142, 94)}[scene]
        far = (104, 134, 150) if scene == "grass" else (176, 186, 210) if scene == "snow" else (180, 136, 112)
        r1 = ridge(horizon - 0.10 * H, 0.06 * H, rng.uniform(0.8, 1.6))
        _blend(img, (yy >= r1[None, :]) & (yy < horizon + 2), np.asarray(far) * light)
        r2 = ridge(horizon - 0.03 * H, 0.04 * H, rng.uniform(1.2, 2.2))
        _blend(img, (yy >= r2[None, :]) & (yy < horizon + 2), np.asarray(hill_col) * light)
    elif scene == "beach":
        sea_top = horizon - int(0.02 * H)
        sea_bot = horizon + int(rng.uniform(0.06, 0.12) * H)
        sea = _vgrad(H, W, (70, 118, 150), (96, 150, 164), sea_top, sea_bot) * light
        band = (yy >= sea_top) & (yy < sea_bot)
        img[band] = sea[band]
        waves = (np.sin(xx * 0.35 + 2 * np.sin(yy * 0.5)) > 0.92) & band
        _blend(img, waves, np.array([210, 226, 230]) * light, 0.6)
        horizon = sea_bot
    else:  # city skyline
        x = 0
        while x < W:
            bw = int(rng.uniform(0.10, 0.22) * W)
            bh = int(rng.uniform(0.12, 0.40) * H)
            bcol = np.asarray(
                [(150, 96, 82), (120, 124, 136), (168, 156, 132), (96, 100, 116), (140, 130, 150)][rng.integers(0, 5)],
                np.float32,
            )
            y_top = max(horizon - bh, 2)
            block = (xx >= x) & (xx < x + bw) & (yy >= y_top) & (yy < horizon + 1)
            _blend(img, block, bcol * light * rng.uniform(0.85, 1.05))
            win_lit = (240, 212, 128) if time == "night" else np.asarray((190, 205, 220)) * light
            for wy in range(y_top + 3, horizon - 3, 6):
                for wx in range(x + 3, x + bw - 3, 6):
                    if time != "night" or rng.random() < 0.55:
                        _blend(img, (xx >= wx) & (xx < wx + 3) & (yy >= wy) & (yy < wy + 3), win_lit)
            x += bw + int(rng.uniform(0, 0.04) * W)

    return horizon


def _ground(c: _Canvas) -> None:
    """The ground below the horizon, textured by scene (sand ripples, snow drifts, grass, dunes, a street)."""
    img, xx, yy, H, W, rng, light, scene, horizon = c.img, c.xx, c.yy, c.H, c.W, c.rng, c.light, c.scene, c.horizon
    ground_col = np.asarray(GROUND[scene], np.float32)
    # --- ground with texture ---
    gy = yy[horizon:]
    gx = xx[horizon:]
    gh = H - horizon
    depth_t = (gy - horizon) / max(gh, 1)  # 0 at horizon, 1 at the bottom
    tex = _noise(rng, gh, W, (3, 5), 3)
    fine = _noise(rng, gh, W, (12, 24), 2)
    ground = np.broadcast_to(ground_col, (gh, W, 3)).copy()
    if scene == "beach":
        ripples = np.sin(gy * 0.9 + 3 * tex + gx * 0.08)
        ground *= (1 + 0.05 * ripples + 0.04 * fine)[..., None]
        wet = depth_t < 0.12
        ground[wet] *= np.array([0.82, 0.82, 0.86])
        shells = rng.random((gh, W)) > 0.996
        ground[shells] = (244, 236, 222)
    elif scene == "snow":
        ground *= (1 - 0.06 * np.abs(tex) - 0.03 * fine)[..., None]
        ground[..., :2] -= 10 * np.clip(tex, 0, 1)[..., None]  # bluish drifts
        sparkle = rng.random((gh, W)) > 0.994
        ground[sparkle] = (255, 255, 255)
    elif scene == "grass":
        blades = np.sin(gx * 1.7 + 5 * fine) * np.sin(gy * 0.6 + 2 * tex)
        ground *= (1 + 0.10 * blades + 0.12 * tex)[..., None]
        flowers = rng.random((gh, W)) > 0.996
        ground[flowers] = (226, 222, 200)
    elif scene == "desert":
        dunes = np.sin(gy * 0.25 + 4 * tex + gx * 0.05)
        ground *= (1 + 0.07 * dunes + 0.04 * fine)[..., None]
        pebbles = rng.random((gh, W)) > 0.995
        ground[pebbles] = (150, 120, 90)
    else:  # city: sidewalk then road with lane markings
        walk_end = int(0.25 * gh)
        ground[:walk_end] = (150, 146, 140)
        tiles = ((gx.astype(int) % 10 == 0) | (gy.astype(int) % 8 == 0)) & (np.arange(gh)[:, None] < walk_end)
        ground[tiles] *= 0.85
        ground *= (1 + 0.05 * fine)[..., None]
        lane_y = walk_end + int(0.45 * (gh - walk_end))
        dash = (np.abs(np.arange(gh)[:, None] - lane_y) <= 1) & ((gx.astype(int) // 10) % 2 == 0)
        ground[dash] = (214, 206, 160)
    ground *= (0.92 + 0.12 * depth_t)[..., None]  # nearer ground slightly brighter
    img[horizon:] = ground * light


def _objects(c: _Canvas) -> None:
    """One to three objects on the far ground: trees and houses, cacti, palms or street lamps."""
    img, xx, yy, H, W, rng, light, scene, time, horizon = (
        c.img,
        c.xx,
        c.yy,
        c.H,
        c.W,
        c.rng,
        c.light,
        c.scene,
        c.time,
        c.horizon,
    )

    # --- objects on the far ground: trees, houses, cacti, palms, lamps ---
    def tree(x: float, base: float, size: float, snowy: bool) -> None:
        trunk = (np.abs(xx - x) <= 0.12 * size) & (yy >= base - 0.5 * size) & (yy <= base)
        _blend(img, trunk, np.array([92, 70, 54]) * light)
        for k in range(3):  # pine: stacked triangles
            ty = base - 0.35 * size - k * 0.32 * size
            half = (0.55 - 0.13 * k) * size
            tri = (
                (yy >= ty - 0.5 * size)
                & (yy <= ty)
                & (np.abs(xx - x) <= half * (yy - (ty - 0.5 * size)) / (0.5 * size))
            )
            _blend(img, tri, np.array([52, 88, 62]) * light)
            if snowy:
                cap = tri & (yy <= ty - 0.3 * size)
                _blend(img, cap, np.array([232, 236, 246]) * light)

    def house(x: float, base: float, size: float) -> None:
        body_col = np.asarray([(196, 180, 150), (170, 150, 130), (200, 196, 184)][rng.integers(0, 3)], np.float32)
        w2, hh = 0.6 * size, 0.8 * size
        body = (np.abs(xx - x) <= w2) & (yy >= base - hh) & (yy <= base)
        _blend(img, body, body_col * light)
        roof = (
            (yy >= base - hh - 0.55 * size)
            & (yy < base - hh)
            & (np.abs(xx - x) <= (w2 + 0.1 * size) * (yy - (base - hh - 0.55 * size)) / (0.55 * size))
        )
        _blend(img, roof, np.array([128, 74, 64]) * light)
        win = (np.abs(xx - x - 0.25 * size) <= 0.12 * size) & (np.abs(yy - (base - 0.5 * hh)) <= 0.12 * size)
        _blend(img, win, (236, 206, 120) if time == "night" else np.array([120, 150, 180]) * light)
        door = (np.abs(xx - x + 0.25 * size) <= 0.1 * size) & (yy >= base - 0.45 * hh) & (yy <= base)
        _blend(img, door, np.array([92, 66, 52]) * light)

    count = rng.integers(1, 4)
    for _ in range(count):
        x = rng.uniform(0.05, 0.95) * W
        base = horizon + rng.uniform(0.0, 0.08) * H
        size = rng.uniform(0.10, 0.17) * H
        if scene in ("grass", "snow"):
            if rng.random() < 0.35:
                house(x, base, size * 0.9)
            else:
                tree(x, base, size, snowy=scene == "snow")
        elif scene == "desert":  # cactus
            col = np.array([86, 124, 78]) * light
            _blend(img, (np.abs(xx - x) <= 0.09 * size) & (yy >= base - size) & (yy <= base), col)
            arm_y = base - rng.uniform(0.45, 0.65) * size
            _blend(img, (xx >= x) & (xx <= x + 0.35 * size) & (np.abs(yy - arm_y) <= 0.07 * size), col)
            _blend(img, (np.abs(xx - x - 0.35 * size) <= 0.07 * size) & (yy >= arm_y - 0.3 * size) & (yy <= arm_y), col)
        elif scene == "beach":  # palm
            trunk = (
                (np.abs(xx - x - 0.15 * (base - yy) / size * 0.3 * size) <= 0.05 * size)
                & (yy >= base - size)
                & (yy <= base)
            )
            _blend(img, trunk, np.array([140, 108, 74]) * light)
            topx = x + 0.045 * size
            for ang in np.linspace(-2.6, -0.5, 5):
                fx, fy = topx + np.cos(ang) * 0.5 * size, base - size - np.sin(ang) * 0.25 * size
                leaf = (
                    np.hypot((xx - (topx + fx) / 2) / (0.3 * size), (yy - (base - size + fy) / 2) / (0.08 * size)) <= 1
                )
                _blend(img, leaf, np.array([70, 116, 70]) * light)
        else:  # street lamp
            _blend(
                img,
                (np.abs(xx - x) <= 0.03 * size) & (yy >= base - 1.3 * size) & (yy <= base),
                np.array([60, 62, 70]) * light,
            )
            lamp = np.hypot(xx - x, yy - (base - 1.3 * size)) <= 0.09 * size
            _blend(img, lamp, (250, 226, 150) if time == "night" else np.array([200, 200, 190]) * light)
            if time == "night":
                glow = np.clip(1 - np.hypot(xx - x, yy - (base - 1.3 * size)) / (0.6 * size), 0, 1) ** 2
                _blend(img, glow, (250, 226, 150), 0.35)
