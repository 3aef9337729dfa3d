"""The figure's identity: what a prompt may name or leave open, drawn once per video.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.synthetic.identity`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHIRTS: tuple[str, ...] = ("plain", "striped", "two-tone")
SHIRT_WORDS: dict[str, str] = {"plain": "plain", "striped": "striped", "two-tone": "two tone"}
# Trousers: "dark" is the shirt's hue at TROUSER_SHADE (what every figure wore before identities existed).
TROUSERS_RGB: dict[str, tuple[int, int, int] | None] = {
    "dark": None,
    "black": (34, 34, 38),
    "white": (232, 232, 226),
    "khaki": (196, 164, 104),
}
TROUSERS: tuple[str, ...] = tuple(TROUSERS_RGB)
NO_HAT = "none"
ATTRIBUTES: tuple[str, ...] = ("shirt", "trousers", "hat")


@dataclass(frozen=True)
class Identity:
    """A figure's concrete identity: shirt pattern, trousers, hat colour (``"none"``: no hat).

    The default is the figure every earlier version of the world drew: a plain shirt, dark trousers
    of the shirt's hue, no hat."""

    shirt: str = "plain"
    trousers: str = "dark"
    hat: str = NO_HAT

    def __post_init__(self) -> None:
        from vidtune.errors import VidtuneError

        if self.shirt not in SHIRTS:
            raise VidtuneError(f"unknown shirt {self.shirt!r}; choose one of {', '.join(SHIRTS)}")
        if self.trousers not in TROUSERS:
            raise VidtuneError(f"unknown trousers {self.trousers!r}; choose one of {', '.join(TROUSERS)}")

    def as_dict(self) -> dict[str, str]:
        return {"shirt": self.shirt, "trousers": self.trousers, "hat": self.hat}


def hat_choices(colour: str, colours: tuple[str, ...]) -> tuple[str, ...]:
    """The hats a ``colour`` figure may wear: none, or another of the figure ``colours``."""
    return (NO_HAT, *(c for c in colours if c != colour))


def resolve_identity(
    named: dict[str, str | None], colour: str, colours: tuple[str, ...], rng: np.random.Generator
) -> Identity:
    """The identity of one ``colour`` video: the named attributes as named, each open one (None) drawn
    uniformly from its values with ``rng`` (a hat: none with probability 1/2, else one of the other
    figure ``colours``). The draws happen in `ATTRIBUTES` order and always consume the generator the
    same way, so naming one attribute does not change what the others draw."""
    values = {"shirt": SHIRTS, "trousers": TROUSERS, "hat": hat_choices(colour, colours)}
    out = {}
    for name in ATTRIBUTES:
        if name == "hat":  # half the figures wear one: a hat of each colour would be 5 in 6
            wears = rng.random() < 0.5
            drawn = str(rng.choice(values[name][1:])) if wears else NO_HAT
        else:
            drawn = str(rng.choice(values[name]))
        out[name] = named.get(name) or drawn
    return Identity(**out)
