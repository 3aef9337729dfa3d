"""The prompt grammar of the synthetic world: sample a prompt, parse it back into attributes.

Design notes (formulas, layouts, why): docs/internals.md, section `vidtune.demo.synthetic.grammar`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from vidtune.demo.synthetic.identity import NO_HAT, SHIRT_WORDS, SHIRTS, TROUSERS, Identity, resolve_identity
from vidtune.errors import VidtuneError

# Figure colours: saturated hues that the scenes never use (adherence keys on them).
FIGURE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (222, 28, 36),
    "yellow": (240, 214, 20),
    "green": (36, 196, 52),
    "blue": (30, 72, 232),
    "purple": (146, 44, 212),
    "pink": (240, 64, 170),
}
SKIN_RGB: tuple[int, int, int] = (236, 178, 150)
STRIPE_RGB: tuple[int, int, int] = (246, 246, 240)  # the striped shirt's bands: near white, unsaturated
STRIPES_PHRASE = "in a striped shirt"
NO_HAT_PHRASE = "with no hat"
HAIR_RGB: tuple[int, int, int] = (52, 34, 26)

MOTION_WORDS: dict[str, str] = {
    "walk": "walking",
    "run": "running",
    "wave": "waving",
    "jump": "jumping",
    "dance": "dancing",
    "squat": "squatting",
    "turn": "turning",
}
SCENE_PHRASES: dict[str, str] = {
    "beach": "on a beach",
    "snow": "on a snowy field",
    "grass": "on a grassy meadow",
    "desert": "in a desert",
    "city": "in a city street",
}
TIME_PHRASES: dict[str, str] = {
    "day": "during the day",
    "sunset": "at sunset",
    "night": "at night",
}

COLOURS: tuple[str, ...] = tuple(FIGURE_COLOURS)
MOTIONS: tuple[str, ...] = tuple(MOTION_WORDS)
SCENES: tuple[str, ...] = tuple(SCENE_PHRASES)
TIMES: tuple[str, ...] = tuple(TIME_PHRASES)


@dataclass(frozen=True)
class PromptAttributes:
    """What a prompt says: figure colour, motion (None = no motion word), scene type, time of day, and
    the figure's identity as far as the prompt names it: shirt pattern, trousers, hat (a colour or
    "none"); None leaves that attribute open (`vidtune.demo.synthetic.identity`)."""

    colour: str
    scene: str
    time: str
    motion: str | None = None
    shirt: str | None = None
    trousers: str | None = None
    hat: str | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("colour", self.colour, COLOURS),
            ("scene", self.scene, SCENES),
            ("time", self.time, TIMES),
        ):
            if value not in allowed:
                raise VidtuneError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
        if self.motion is not None and self.motion not in MOTIONS:
            raise VidtuneError(f"unknown motion {self.motion!r}; choose one of {', '.join(MOTIONS)}")
        if self.hat is not None and self.hat != NO_HAT and (self.hat not in COLOURS or self.hat == self.colour):
            others = ", ".join(c for c in COLOURS if c != self.colour)
            raise VidtuneError(f"hat colour {self.hat!r}: a {self.colour} figure's hat is one of {others}, or none")
        if self.shirt is not None and self.shirt not in SHIRTS:
            raise VidtuneError(f"unknown shirt {self.shirt!r}; choose one of {', '.join(SHIRTS)}")
        if self.trousers is not None and self.trousers not in TROUSERS:
            raise VidtuneError(f"unknown trousers {self.trousers!r}; choose one of {', '.join(TROUSERS)}")

    @property
    def named(self) -> dict[str, str | None]:
        """The identity attributes as the prompt names them (None: left open)."""
        return {"shirt": self.shirt, "trousers": self.trousers, "hat": self.hat}

    @property
    def details(self) -> tuple[str, ...]:
        """The identity attributes the prompt names, in prompt order."""
        return tuple(k for k, v in self.named.items() if v is not None)

    @property
    def open(self) -> tuple[str, ...]:
        """The identity attributes the prompt leaves open."""
        return tuple(k for k, v in self.named.items() if v is None)

    def identity(self, rng: np.random.Generator) -> Identity:
        """The concrete identity: named attributes as named, open ones drawn with ``rng``."""
        return resolve_identity(self.named, self.colour, COLOURS, rng)


def format_prompt(attrs: PromptAttributes) -> str:
    """The grammar's sentence for ``attrs``."""
    parts = ["a", attrs.colour, "figure"]
    if attrs.shirt is not None:
        parts += ["in a", SHIRT_WORDS[attrs.shirt], "shirt"]
    if attrs.trousers is not None:
        parts += ["in", attrs.trousers, "trousers"]
    if attrs.hat == NO_HAT:
        parts.append(NO_HAT_PHRASE)
    elif attrs.hat is not None:
        parts += ["with a", attrs.hat, "hat"]
    if attrs.motion is not None:
        parts.append(MOTION_WORDS[attrs.motion])
    parts += [SCENE_PHRASES[attrs.scene], TIME_PHRASES[attrs.time]]
    return " ".join(parts)


def sample_attributes(
    rng: np.random.Generator, motion: str | None | bool = True, details: float = 0.0
) -> PromptAttributes:
    """Uniformly random attributes. ``motion``: a motion name, None (no motion word), or True (random).
    ``details``: the probability that the prompt names each identity attribute (its value then drawn
    as `resolve_identity` draws it); at 0 every attribute is left open and the generator draws
    exactly what it drew before identities existed (the committed benchmarks' prompts)."""
    if motion is True:
        motion = str(rng.choice(MOTIONS)) if rng.random() < 0.8 else None
    elif motion is False:
        motion = None
    colour, scene, time = str(rng.choice(COLOURS)), str(rng.choice(SCENES)), str(rng.choice(TIMES))
    named: dict[str, str | None] = {}
    if details > 0:
        names = rng.random(3) < details
        drawn = resolve_identity({}, colour, COLOURS, rng)
        named = {k: (v if n else None) for n, (k, v) in zip(names, drawn.as_dict().items())}
    return PromptAttributes(colour=colour, scene=scene, time=time, motion=motion, **named)


def sample_prompt(rng: np.random.Generator, motion: str | None | bool = True, details: float = 0.0) -> str:
    """A random sentence of the grammar (see `sample_attributes`)."""
    return format_prompt(sample_attributes(rng, motion, details))


_PATTERN = re.compile(
    r"^a (?P<colour>{c}) figure(?: in a (?P<shirt>{sh}) shirt)?(?: in (?P<trousers>{tr}) trousers)?"
    r"(?: with (?:a (?P<hat>{c}) hat|(?P<nohat>no) hat))?(?: (?P<motion>{m}))? "
    r"(?P<scene>{s}) (?P<time>{t})$".format(
        c="|".join(COLOURS),
        sh="|".join(SHIRT_WORDS.values()),
        tr="|".join(TROUSERS),
        m="|".join(MOTION_WORDS.values()),
        s="|".join(re.escape(p) for p in SCENE_PHRASES.values()),
        t="|".join(re.escape(p) for p in TIME_PHRASES.values()),
    )
)


def parse_prompt(text: str) -> PromptAttributes:
    """Attributes of a grammar sentence (case and extra spaces ignored); VidtuneError otherwise."""
    norm = " ".join(text.lower().strip().rstrip(".").split())
    m = _PATTERN.match(norm)
    if m is None:
        raise VidtuneError(
            f"prompt {text!r} is not in the synthetic grammar; expected e.g. "
            f"'a red figure in a striped shirt with a blue hat dancing on a snowy field at night' "
            f"(colours: {', '.join(COLOURS)}; shirts: {', '.join(f'in a {w} shirt' for w in SHIRT_WORDS.values())}; "
            f"trousers: {', '.join(f'in {t} trousers' for t in TROUSERS)}; hats: 'with a COLOUR hat', "
            f"'{NO_HAT_PHRASE}'; "
            f"motions: {', '.join(MOTION_WORDS.values())}; scenes: {', '.join(SCENE_PHRASES.values())}; "
            f"times: {', '.join(TIME_PHRASES.values())})"
        )
    inv_motion = {v: k for k, v in MOTION_WORDS.items()}
    inv_scene = {v: k for k, v in SCENE_PHRASES.items()}
    inv_time = {v: k for k, v in TIME_PHRASES.items()}
    return PromptAttributes(
        colour=m["colour"],
        scene=inv_scene[m["scene"]],
        time=inv_time[m["time"]],
        motion=inv_motion[m["motion"]] if m["motion"] else None,
        shirt={v: k for k, v in SHIRT_WORDS.items()}.get(m["shirt"]) if m["shirt"] else None,
        trousers=m["trousers"],
        hat=NO_HAT if m["nohat"] else m["hat"],
    )


# The identity attributes' words (a demo model trained before them lacks them: `demo.command.check_model_knows`).
DETAIL_TEXTS: tuple[str, ...] = (
    *(f"in a {w} shirt" for w in SHIRT_WORDS.values()),
    *(f"in {t} trousers" for t in TROUSERS),
    "with a hat",
    NO_HAT_PHRASE,
)
# Every word the grammar can produce (the demo tokenizer's vocabulary is built from these).
VOCABULARY_TEXTS: tuple[str, ...] = (
    "a figure",
    *COLOURS,
    *DETAIL_TEXTS,
    *MOTION_WORDS.values(),
    *SCENE_PHRASES.values(),
    *TIME_PHRASES.values(),
)
