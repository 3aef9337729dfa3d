"""The humanoid: filled, shaded capsules drawn from COCO-18 keypoints, with its exact mask.

Parts (torso, head, upper/lower arms and legs, hands, shoes) are drawn far-to-near when joint
depths are given (larger depth = nearer the viewer), else legs, torso, arms, head. Rendering is
supersampled: a pixel belongs to the figure when at least half of its subpixels are covered, and
it takes the mean colour of its covered subpixels, so edges are exact (mask == drawn pixels)
while the shading stays smooth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from vidtune.demo.synthetic.grammar import FIGURE_COLOURS, HAIR_RGB, SKIN_RGB, STRIPE_RGB, PromptAttributes
from vidtune.demo.synthetic.identity import NO_HAT, TROUSERS_RGB, Identity

TROUSER_SHADE = 0.55  # trousers are the shirt's hue, darker
SHOE_RGB = (40, 40, 46)
STRIPE_BANDS = 5  # bands from the neck to the hips, alternating shirt / stripe (2 stripes, ~3 px: 7 bands of
# ~2 px were half a latent pixel wide, and the demo VAE blurred them away)
TWO_TONE_SPLIT = 0.5  # a two-tone shirt is white from the neck to this fraction of the way to the hips
# label of a subpixel: which identity detail painted it last (the detail masks are their majority)
_PLAIN, _STRIPE, _HAT = 0, 1, 2
# label of a subpixel: which body part painted it last (`FigureLayer.parts`)
PART_NONE, PART_TORSO, PART_ARM, PART_LEG, PART_SKIN, PART_HAIR, PART_HAT, PART_SHOE = range(8)


@dataclass(frozen=True)
class FigureColours:
    """RGB colours (0-255) of the figure's parts."""

    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    skin: tuple[int, int, int] = SKIN_RGB
    hair: tuple[int, int, int] = HAIR_RGB
    stripes: tuple[int, int, int] | None = None  # bands across the torso (a striped shirt), None = plain
    hat: tuple[int, int, int] | None = None  # a hat on the head, None = none
    two_tone: tuple[int, int, int] | None = None  # the shirt's top half (a two-tone shirt), None = one colour

    @classmethod
    def from_name(cls, colour: str) -> FigureColours:
        """The colours a prompt's colour word implies: shirt in the colour, trousers darker."""
        shirt = FIGURE_COLOURS[colour]
        return cls(shirt=shirt, trousers=tuple(int(round(c * TROUSER_SHADE)) for c in shirt))

    @classmethod
    def from_identity(cls, colour: str, identity: Identity) -> FigureColours:
        """`from_name` of the colour word dressed in ``identity``: the shirt's pattern, the trousers,
        a hat. The default identity gives exactly `from_name`'s figure."""
        base = cls.from_name(colour)
        trousers = TROUSERS_RGB[identity.trousers]
        return cls(
            shirt=base.shirt,
            trousers=base.trousers if trousers is None else trousers,
            stripes=STRIPE_RGB if identity.shirt == "striped" else None,
            two_tone=STRIPE_RGB if identity.shirt == "two-tone" else None,
            hat=None if identity.hat == NO_HAT else FIGURE_COLOURS[identity.hat],
        )

    @classmethod
    def from_attrs(cls, attrs: PromptAttributes, identity: Identity | None = None) -> FigureColours:
        """The figure of a prompt: its colour word in ``identity`` (default: the attributes the prompt
        names, the default identity for the open ones)."""
        if identity is None:
            named = {k: v for k, v in attrs.named.items() if v is not None}
            identity = Identity(**named)
        return cls.from_identity(attrs.colour, identity)


class FigureLayer(NamedTuple):
    """rgb ``(H, W, 3)`` uint8 (zero outside the mask), the exact mask ``(H, W)`` bool, and
    ``clothes`` ``(H, W)`` bool: the mask pixels mostly covered by shirt / trousers in the prompt's
    colour (not skin, hair, shoes, stripes or hat), the reference region of
    `vidtune.demo.synthetic.adherence.pose_iou`; ``stripes`` and ``hat`` ``(H, W)`` bool: the pixels
    mostly covered by each identity detail (all False when the figure has none); ``parts`` ``(H, W)``
    int8: the body part that covers most of each mask pixel (``PART_*``; 0 outside the mask), whatever
    its colour: the regions an identity read-out looks at."""

    rgb: np.ndarray
    mask: np.ndarray
    clothes: np.ndarray
    stripes: np.ndarray | None = None
    hat: np.ndarray | None = None
    parts: np.ndarray | None = None


def composite(background: np.ndarray, layer: FigureLayer) -> np.ndarray:
    """The figure pasted over ``background`` (H, W, 3 uint8): background outside the mask."""
    return np.where(layer.mask[..., None], layer.rgb, background)


def _segment_field(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of pixels (px, py) to the segment a-b."""
    d = b - a
    denom = float(d @ d)
    if denom < 1e-9:
        return np.hypot(px - a[0], py - a[1])
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / denom, 0.0, 1.0)
    return np.hypot(px - (a[0] + t * d[0]), py - (a[1] + t * d[1]))


def _paint(
    colour_buf: np.ndarray,
    cover: np.ndarray,
    cloth: np.ndarray,
    inside: np.ndarray,
    shade: np.ndarray,
    rgb: tuple[int, int, int],
    box: tuple[int, int, int, int],
    is_cloth: bool,
    label: np.ndarray | None = None,
    detail: int = _PLAIN,
    part_buf: np.ndarray | None = None,
    part: int | None = None,
) -> None:
    y0, y1, x0, x1 = box
    region = colour_buf[y0:y1, x0:x1]
    region[inside] = np.asarray(rgb, dtype=np.float32)[None] * shade[inside][:, None]
    cover[y0:y1, x0:x1] |= inside
    cloth[y0:y1, x0:x1][inside] = is_cloth
    if label is not None:
        label[y0:y1, x0:x1][inside] = detail
    if part_buf is not None and part is not None:
        part_buf[y0:y1, x0:x1][inside] = part


def render_figure(
    keypoints: np.ndarray,
    colours: FigureColours,
    height: int,
    width: int,
    *,
    depth: np.ndarray | None = None,
    light: float = 1.0,
    supersample: int = 4,
) -> FigureLayer:
    """Draw the humanoid for one pose.

    Args:
        keypoints: ``(18, 3)`` COCO-18 (x, y, conf) in pixels of the ``height`` x ``width`` canvas.
            Body joints are expected to be present (conf is ignored for them); face joints with
            conf 0 are ignored when placing the head.
        colours: part colours (`FigureColours.from_name("red")`).
        depth: ``(18,)`` joint depths (larger = nearer); None draws the default front-view order.
        light: brightness factor (the scene's time of day), 1 = full.
        supersample: subpixels per pixel side.

    Returns:
        `FigureLayer` (rgb, mask) at canvas resolution.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (18, 3):
        raise ValueError(f"render_figure expects keypoints of shape (18, 3), got {kp.shape}")
    ss = int(supersample)
    H, W = height * ss, width * ss
    pts = (kp[:, :2] + 0.5) * ss - 0.5  # pixel centres -> subpixel coordinates
    torso_len = float(np.linalg.norm(pts[1] - (pts[8] + pts[11]) / 2))
    unit = max(torso_len / 0.30, 1e-3)  # pixels (subpixels) per body unit
    z = np.zeros(18) if depth is None else np.asarray(depth, dtype=np.float64) / max(unit / ss, 1e-6)

    parts = _figure_parts(kp, pts, colours, unit, z, depth)
    shirt, trousers = colours.shirt, colours.trousers

    colour_buf = np.zeros((H, W, 3), dtype=np.float32)
    cover = np.zeros((H, W), dtype=bool)
    cloth = np.zeros((H, W), dtype=bool)
    label = np.zeros((H, W), dtype=np.int8)  # which identity detail painted a subpixel last
    part_buf = np.zeros((H, W), dtype=np.int8)  # which body part painted a subpixel last
    # clothes in the prompt's colour: the shirt, and the trousers when they are its darker shade
    in_colour = {shirt} | ({trousers} if trousers == tuple(int(round(c * TROUSER_SHADE)) for c in shirt) else set())
    light_dir = np.array([-0.45, -0.75])  # light from the upper left
    for kind, geo, r, rgb, _, _, part in parts:
        lo, hi = _part_box(kind, geo, r, colours.hat is not None)
        x0, y0 = max(lo[0], 0), max(lo[1], 0)
        x1, y1 = min(hi[0], W), min(hi[1], H)
        if x0 >= x1 or y0 >= y1:
            continue
        py, px = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        inside, shade, lx = _part_shape(kind, geo, r, px, py, light_dir)
        shade = np.clip(shade, 0.45, 1.15).astype(np.float32) * light
        box = (y0, y1, x0, x1)
        _paint(colour_buf, cover, cloth, inside, shade, rgb, box, rgb in in_colour, label, _PLAIN, part_buf, part)
        if kind == "torso" and colours.stripes is not None:  # bands across the spine, neck to hips
            spine = geo[5] - geo[4]
            t = ((px - geo[4][0]) * spine[0] + (py - geo[4][1]) * spine[1]) / max(float(spine @ spine), 1e-6)
            band = inside & (np.floor(np.clip(t, 0.0, 0.999) * STRIPE_BANDS).astype(int) % 2 == 1)
            _paint(colour_buf, cover, cloth, band, shade, colours.stripes, box, False, label, _STRIPE)
        if kind == "torso" and colours.two_tone is not None:  # the top half, neck to mid-torso
            spine = geo[5] - geo[4]
            t = ((px - geo[4][0]) * spine[0] + (py - geo[4][1]) * spine[1]) / max(float(spine @ spine), 1e-6)
            top = inside & (t < TWO_TONE_SPLIT)
            _paint(colour_buf, cover, cloth, top, shade, colours.two_tone, box, False, label, _STRIPE)
        if kind == "head":  # hair: the top-back of the head
            up = -geo[1] / (np.linalg.norm(geo[1]) + 1e-9)  # from head towards the neck is down
            face_dir = geo[2] - geo[0]
            toward = ((px - geo[0][0]) * -up[0] + (py - geo[0][1]) * -up[1]) / max(r, 1e-6)
            facing = (px - geo[0][0]) * face_dir[0] + (py - geo[0][1]) * face_dir[1]
            hair = inside & ((toward > 0.25) | ((facing < -0.1 * r * np.linalg.norm(face_dir)) & (toward > -0.3)))
            _paint(colour_buf, cover, cloth, hair, shade, colours.hair, box, False, label, _PLAIN, part_buf, PART_HAIR)
            if colours.hat is not None:  # a crown over the top of the head and a brim across it
                v = -up
                perp = np.array([-v[1], v[0]])
                base = geo[0] + v * 0.2 * r
                # a tall crown and a wide brim: a 64 px frame's hat must cover a latent pixel or two
                crown = (np.hypot(px - geo[0][0], py - geo[0][1]) <= 1.35 * r) & (toward > 0.15)
                brim = _segment_field(px, py, base - perp * 1.75 * r, base + perp * 1.75 * r) <= 0.22 * r
                hat = crown | brim
                hat_shade = np.clip(1.0 + 0.12 * lx, 0.45, 1.15).astype(np.float32) * light
                _paint(
                    colour_buf, cover, cloth, hat, hat_shade, colours.hat, box, False, label, _HAT, part_buf, PART_HAT
                )

    return _downsample(colour_buf, cover, cloth, label, part_buf, height, width, ss)


def _figure_parts(kp: np.ndarray, pts: np.ndarray, colours: FigureColours, unit: float, z: np.ndarray, depth) -> list:
    """The figure's parts in drawing order: (kind, endpoints / centre, radius, colour, depth, default order,
    body part) for the limbs, shoes, hands, torso, neck and head (nearest last when ``depth`` is given)."""
    r_arm, r_leg, r_torso = 0.05 * unit, 0.06 * unit, 0.105 * unit
    r_head = 0.095 * unit
    # Head centre: from the ears when seen, else the nose/eyes, else above the neck.
    face = [i for i in (16, 17) if kp[i, 2] > 0]
    if len(face) == 2:
        head = (pts[16] + pts[17]) / 2
    else:
        seen = [i for i in (0, 14, 15, 16, 17) if kp[i, 2] > 0]
        head = pts[seen].mean(0) if seen else pts[1] + np.array([0.0, -0.1 * unit])
        head = pts[1] + (head - pts[1]) * 0.9
    neck_dir = head - pts[1]
    mid_hip = (pts[8] + pts[11]) / 2

    shirt, trousers = colours.shirt, colours.trousers
    # (kind, endpoints/centre, radius, colour, depth, default order)
    parts: list[tuple[str, tuple[np.ndarray, ...], float, tuple[int, int, int], float, int]] = []
    for a, b, c, r, order, part in (
        (8, 9, trousers, r_leg, 0, PART_LEG),
        (9, 10, trousers, r_leg * 0.9, 0, PART_LEG),
        (11, 12, trousers, r_leg, 0, PART_LEG),
        (12, 13, trousers, r_leg * 0.9, 0, PART_LEG),
        (2, 3, shirt, r_arm, 3, PART_ARM),
        (3, 4, shirt, r_arm * 0.9, 3, PART_ARM),
        (5, 6, shirt, r_arm, 3, PART_ARM),
        (6, 7, shirt, r_arm * 0.9, 3, PART_ARM),
    ):
        parts.append(("cap", (pts[a], pts[b]), r, c, (z[a] + z[b]) / 2, order, part))
    for i, c, r, order, part in (
        (10, SHOE_RGB, r_leg * 0.95, 0, PART_SHOE),
        (13, SHOE_RGB, r_leg * 0.95, 0, PART_SHOE),
        (4, colours.skin, r_arm * 1.1, 3, PART_SKIN),
        (7, colours.skin, r_arm * 1.1, 3, PART_SKIN),
    ):
        parts.append(("cap", (pts[i], pts[i]), r, c, z[i] + 0.01 * unit, order, part))
    torso_z = (z[1] + z[8] + z[11]) / 3
    parts.append(("torso", (pts[2], pts[5], pts[11], pts[8], pts[1], mid_hip), r_torso, shirt, torso_z, 1, PART_TORSO))
    parts.append(("cap", (pts[1], pts[1] + 0.6 * neck_dir), r_arm, colours.skin, torso_z + 0.001, 2, PART_SKIN))
    parts.append(
        (
            "head",
            (head, neck_dir, pts[0] if kp[0, 2] > 0 else head),
            r_head,
            colours.skin,
            torso_z + 0.002,
            4,
            PART_SKIN,
        )
    )
    if depth is None:
        parts.sort(key=lambda p: p[5])
    else:
        parts.sort(key=lambda p: p[4])

    return parts


def _part_box(kind: str, geo: tuple, r: float, hat: bool) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) subpixel corners of the box a part can paint (a hat's brim reaches past the head)."""
    if kind == "torso":
        ctr = np.stack(geo[:4]).mean(0)
        corners = np.stack(geo[:4])
        corners = ctr + (corners - ctr) * 1.0
        lo = np.floor(np.minimum(corners.min(0), np.minimum(geo[4], geo[5]) - r) - 1).astype(int)
        hi = np.ceil(np.maximum(corners.max(0), np.maximum(geo[4], geo[5]) + r) + 2).astype(int)
    elif kind == "head":
        reach = r * 2.0 if hat else r  # the hat's brim reaches past the head
        lo = np.floor(geo[0] - reach - 1).astype(int)
        hi = np.ceil(geo[0] + reach + 2).astype(int)
    else:
        lo = np.floor(np.minimum(geo[0], geo[1]) - r - 1).astype(int)
        hi = np.ceil(np.maximum(geo[0], geo[1]) + r + 2).astype(int)
    return lo, hi


def _part_shape(kind: str, geo: tuple, r: float, px: np.ndarray, py: np.ndarray, light_dir: np.ndarray):
    """(inside, shade before light, lx) of a part over the subpixels (px, py): a capsule, the head's disc, or
    the torso's quad rounded along the spine; lx (the light's direction across it) is None for a capsule."""
    lx = None
    if kind == "cap":
        d = _segment_field(px, py, geo[0], geo[1])
        inside = d <= r
        rel = d / max(r, 1e-6)
        # Side of the axis facing the light is brighter.
        axis = geo[1] - geo[0]
        nrm = np.array([-axis[1], axis[0]])
        nrm = nrm / (np.linalg.norm(nrm) + 1e-9)
        side = ((px - geo[0][0]) * nrm[0] + (py - geo[0][1]) * nrm[1]) / max(r, 1e-6)
        if np.linalg.norm(axis) < 1e-6:
            side = ((px - geo[0][0]) * light_dir[0] + (py - geo[0][1]) * light_dir[1]) / max(r, 1e-6)
            sgn = 1.0
        else:
            sgn = float(np.sign(nrm @ light_dir) or 1.0)
        shade = 1.0 - 0.3 * rel**2 + 0.12 * sgn * np.clip(side, -1, 1)
    elif kind == "head":
        d = np.hypot(px - geo[0][0], py - geo[0][1])
        inside = d <= r
        rel = d / max(r, 1e-6)
        lx = ((px - geo[0][0]) * light_dir[0] + (py - geo[0][1]) * light_dir[1]) / max(r, 1e-6)
        shade = 1.0 - 0.25 * rel**2 + 0.12 * lx
    else:  # torso: filled quad of shoulders and hips, rounded by a capsule along the spine
        quad = np.stack(geo[:4])
        inside = _in_convex(px, py, quad)
        d = _segment_field(px, py, geo[4], geo[5])
        inside |= d <= r
        rel = np.clip(d / max(r * 1.25, 1e-6), 0, 1)
        lx = ((px - geo[4][0]) * light_dir[0] + (py - geo[4][1]) * light_dir[1]) / max(3 * r, 1e-6)
        shade = 1.0 - 0.3 * rel**2 + 0.1 * np.clip(lx, -1, 1)
    return inside, shade, lx


def _downsample(
    colour_buf: np.ndarray,
    cover: np.ndarray,
    cloth: np.ndarray,
    label: np.ndarray,
    part_buf: np.ndarray,
    height: int,
    width: int,
    ss: int,
) -> FigureLayer:
    """Supersampled buffers -> the canvas' `FigureLayer`."""
    # Supersampled -> canvas: coverage >= 1/2 decides the mask; colour = mean of covered subpixels.
    cov = cover.reshape(height, ss, width, ss).astype(np.float32)
    count = cov.sum(axis=(1, 3))
    mask = count >= (ss * ss) / 2
    summed = (colour_buf.reshape(height, ss, width, ss, 3) * cov[..., None]).sum(axis=(1, 3))
    rgb = np.where(mask[..., None], summed / np.maximum(count, 1)[..., None], 0.0)
    clothes = mask & (cloth.reshape(height, ss, width, ss).sum(axis=(1, 3)) * 2 > count)
    labels = label.reshape(height, ss, width, ss)
    stripes, hat = (mask & ((labels == k).sum(axis=(1, 3)) * 2 > count) for k in (_STRIPE, _HAT))
    part_votes = np.stack(
        [(part_buf == k).reshape(height, ss, width, ss).sum(axis=(1, 3)) for k in range(PART_SHOE + 1)]
    )
    parts = np.where(mask, part_votes[1:].argmax(0) + 1, PART_NONE).astype(np.int8)
    return FigureLayer(
        rgb=np.clip(np.rint(rgb), 0, 255).astype(np.uint8),
        mask=mask,
        clothes=clothes,
        stripes=stripes,
        hat=hat,
        parts=parts,
    )


def _in_convex(px: np.ndarray, py: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Pixels inside the (possibly degenerate) quadrilateral, either winding."""
    signs = []
    for k in range(4):
        a, b = quad[k], quad[(k + 1) % 4]
        signs.append((b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]))
    s = np.stack(signs)
    return (s >= 0).all(0) | (s <= 0).all(0)
