"""Per-frame read-out of the figure's identity (shirt, trousers, hat) from a generated frame.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.synthetic.readout`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from vidtune.demo.synthetic.figure import PART_HAIR, PART_HAT, PART_LEG, PART_TORSO, TROUSER_SHADE
from vidtune.demo.synthetic.grammar import FIGURE_COLOURS
from vidtune.demo.synthetic.identity import ATTRIBUTES, NO_HAT, TROUSERS_RGB, hat_choices
from vidtune.demo.synthetic.keying import hsv, keyed_figure_mask
from vidtune.demo.synthetic.scenes import FIGURE_LIGHT

MIN_PIXELS = 6  # a part shown by fewer pixels is not read
HAT_MIN_SHARE = 0.2  # of the head's top keyed as one hat colour
WHITE_MAX_SATURATION = 0.3
WHITE_MIN_VALUE = 0.5  # relative to the figure's light at the time of day
PLAIN_MAX = 0.12  # a torso less white than this is plain (the truth's: <= 0.05; striped >= 0.2)
TWO_TONE_TOP = 0.5  # two-tone: the top third at least this white...
TWO_TONE_BOTTOM = 0.1  # ...the bottom third at most this (the truth's: 0; striped: ~0.3)


@dataclass(frozen=True)
class IdentityRead:
    """What one frame shows of each attribute (`identity.Identity`'s values); None = not readable."""

    shirt: str | None
    trousers: str | None
    hat: str | None

    def get(self, attribute: str) -> str | None:
        return getattr(self, attribute)


def white_keyed(frame: np.ndarray, region: np.ndarray, time: str) -> np.ndarray:
    """Bool (H, W): unsaturated, bright-enough pixels inside ``region``: the white of stripes or of a
    two-tone top as lit at ``time``, its shaded side included (the shirt colours are all saturated)."""
    _, s, v = hsv(frame)
    return region & (s <= WHITE_MAX_SATURATION) & (v >= WHITE_MIN_VALUE * FIGURE_LIGHT[time])


def shirt_shares(frame: np.ndarray, torso: np.ndarray, time: str) -> tuple[float, float, float, float]:
    """White share of the torso's top, middle and bottom thirds of rows, and of the whole torso."""
    white = white_keyed(frame, torso, time)
    rows = np.arange(torso.shape[0])[:, None]
    q1, q2 = np.quantile(np.nonzero(torso)[0], [1 / 3, 2 / 3])

    def share(band: np.ndarray) -> float:
        inside = torso & band
        return float(white[inside].mean()) if inside.any() else 0.0

    return share(rows <= q1), share((rows > q1) & (rows < q2)), share(rows >= q2), float(white[torso].mean())


def read_shirt(frame: np.ndarray, parts: np.ndarray, time: str) -> str | None:
    """plain / striped / two-tone from where the torso is white (`shirt_shares`): little white is
    plain; a white top third over a coloured bottom third (and no whiter middle) is two-tone; white
    elsewhere striped."""
    torso = parts == PART_TORSO
    if torso.sum() < MIN_PIXELS:
        return None
    top, middle, bottom, whole = shirt_shares(frame, torso, time)
    if whole < PLAIN_MAX:
        return "plain"
    if top >= TWO_TONE_TOP and bottom <= TWO_TONE_BOTTOM and top >= middle:
        return "two-tone"
    return "striped"


def _lab(rgb: np.ndarray) -> np.ndarray:
    px = np.clip(np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0, 0, 1)
    return cv2.cvtColor(px, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def trousers_palette(colour: str, time: str) -> dict[str, np.ndarray]:
    """Each trousers value's colour (RGB float) as a ``colour`` figure wears it at ``time``."""
    light = FIGURE_LIGHT[time]
    dark = np.array(FIGURE_COLOURS[colour], np.float32) * TROUSER_SHADE
    return {name: (dark if rgb is None else np.array(rgb, np.float32)) * light for name, rgb in TROUSERS_RGB.items()}


def read_trousers(frame: np.ndarray, parts: np.ndarray, colour: str, time: str) -> str | None:
    """The trousers value whose lit colour is nearest (CIE-Lab) to the legs' median colour."""
    legs = parts == PART_LEG
    if legs.sum() < MIN_PIXELS:
        return None
    median = np.median(frame[legs].astype(np.float32), axis=0)
    palette = trousers_palette(colour, time)
    names = list(palette)
    dist = np.linalg.norm(_lab(np.stack([palette[n] for n in names])) - _lab(median), axis=1)
    return names[int(dist.argmin())]


def head_top(parts: np.ndarray) -> np.ndarray:
    """Bool (H, W): where the truth's hair or hat is, grown by one pixel (a hat drawn a little off)."""
    region = np.isin(parts, (PART_HAIR, PART_HAT)).astype(np.uint8)
    return cv2.dilate(region, np.ones((3, 3), np.uint8)).astype(bool)


def read_hat(frame: np.ndarray, parts: np.ndarray, colour: str) -> str | None:
    """The hat colour keyed over most of the head's top (`HAT_MIN_SHARE`), else none."""
    zone = head_top(parts)
    if zone.sum() < MIN_PIXELS:
        return None
    shares = {c: keyed_figure_mask(frame, c)[zone].mean() for c in hat_choices(colour, tuple(FIGURE_COLOURS))[1:]}
    best = max(shares, key=shares.get)
    return best if shares[best] >= HAT_MIN_SHARE else NO_HAT


def read_identity(frame: np.ndarray, parts: np.ndarray, colour: str, time: str) -> IdentityRead:
    """`read_shirt`, `read_trousers` and `read_hat` of one uint8 RGB frame, where the truth's part
    labels ``parts`` (H, W) put the body, for a ``colour`` figure lit for ``time``."""
    frame = np.asarray(frame)
    return IdentityRead(
        shirt=read_shirt(frame, parts, time),
        trousers=read_trousers(frame, parts, colour, time),
        hat=read_hat(frame, parts, colour),
    )


def identity_summary(
    reads: Sequence[IdentityRead], named: Sequence[dict[str, str | None]], truth: dict[str, str] | None = None
) -> dict[str, float]:
    """A video's identity numbers from its frames' reads and what each frame's prompt names
    (`PromptAttributes.named`: attribute -> value, None = open):

    - ``<attr>_accuracy``: share of the readable frames whose prompt names the attribute that show it
      as named (absent when no prompt names it);
    - ``<attr>_consistency``: share of the readable frames that show the video's most common value
      (1.0 = constant), and ``consistency``: their mean over the attributes;
    - ``flips``: changes of any attribute between consecutive readable frames, per frame pair;
    - ``<attr>_truth`` (with ``truth``, the video's drawn identity): share showing the truth's value.
    """
    out: dict[str, float] = {}
    consistency = []
    flips, pairs = 0, 0
    for name in ATTRIBUTES:
        values = [r.get(name) for r in reads]
        seen = [v for v in values if v is not None]
        if not seen:
            continue
        mode = Counter(seen).most_common(1)[0][1]
        out[f"{name}_consistency"] = mode / len(seen)
        consistency.append(out[f"{name}_consistency"])
        asked = [(v, n.get(name)) for v, n in zip(values, named) if v is not None and n.get(name) is not None]
        if asked:
            out[f"{name}_accuracy"] = float(np.mean([v == want for v, want in asked]))
        if truth is not None:
            out[f"{name}_truth"] = float(np.mean([v == truth[name] for v in seen]))
        flips += sum(a != b for a, b in zip(seen, seen[1:]))
        pairs += max(len(seen) - 1, 0)
    if consistency:
        out["consistency"] = float(np.mean(consistency))
        out["flips"] = flips / max(pairs, 1)
    return out
