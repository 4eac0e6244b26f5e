"""Scenes of the Shapes world and the grammar that turns them into prompts and back.

A scene is a *spec* (what a prompt says: which coloured shapes, and where) plus *placements*
(the exact centre and size of each object, jittered). Prompts and captions are the same text:
the generator is conditioned on it, the captioner must produce it, the verifier parses it.

Coordinates are continuous pixels on a 32×32 canvas: x grows to the right, y grows downwards,
so "top" means small y. An object's (cx, cy) is the centre of its bounding box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CANVAS = 32
"""Side of the square canvas in pixels."""

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (1.00, 0.05, 0.05),
    "orange": (1.00, 0.50, 0.00),
    "yellow": (0.95, 0.95, 0.05),
    "green": (0.05, 0.85, 0.15),
    "cyan": (0.05, 0.85, 0.95),
    "blue": (0.15, 0.25, 1.00),
    "purple": (0.65, 0.10, 0.95),
    "white": (0.95, 0.95, 0.95),
}
"""The 8 colours (RGB in [0, 1]), chosen far apart in hue so they survive noise and generation."""

COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("center", "left", "right", "top", "bottom")
"""Layouts of a one-object scene."""
RELATIONS: tuple[str, ...] = ("left_of", "above")
"""Layouts of a two-object scene: objects[0] is left of / above objects[1]."""

GRAMMAR_WORDS: tuple[str, ...] = (
    "a", "an", "in", "the", "center", "centre", "on", "left", "right", "at", "top", "bottom", "to", "of",
    "above", "below", *COLOURS, *SHAPES,
)
"""Every word the grammar below writes or parses (the vocabulary of the built-in text models)."""

_POSITION_PHRASES = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
}
_RELATION_PHRASES = {"left_of": "to the left of", "above": "above"}
# The parser also accepts the mirrored relations and swaps the objects, so a caption such as
# "a blue square to the right of a red circle" is understood as the canonical left_of scene.
_MIRRORED_PHRASES = {"to the right of": "left_of", "right of": "left_of", "below": "above"}


class PromptParseError(ValueError):
    """A text that the Shapes grammar cannot read."""


@dataclass(frozen=True)
class ObjectSpec:
    """One coloured shape named by a prompt."""

    colour: str
    shape: str

    def phrase(self) -> str:
        article = "an" if self.colour[0] in "aeiou" else "a"
        return f"{article} {self.colour} {self.shape}"


@dataclass(frozen=True)
class SceneSpec:
    """What a prompt says: one object and its position, or two objects and their relation."""

    objects: tuple[ObjectSpec, ...]
    layout: str

    def __post_init__(self) -> None:
        allowed = POSITIONS if len(self.objects) == 1 else RELATIONS
        if len(self.objects) not in (1, 2) or self.layout not in allowed:
            raise ValueError(f"invalid scene spec: {len(self.objects)} objects with layout {self.layout!r}")
        for obj in self.objects:
            if obj.colour not in PALETTE or obj.shape not in SHAPES:
                raise ValueError(f"unknown colour/shape {obj.colour!r}/{obj.shape!r}")

    @property
    def prompt(self) -> str:
        if len(self.objects) == 1:
            return f"{self.objects[0].phrase()} {_POSITION_PHRASES[self.layout]}"
        first, second = self.objects
        return f"{first.phrase()} {_RELATION_PHRASES[self.layout]} {second.phrase()}"

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (colour, shape) pairs this spec uses."""
        return tuple((o.colour, o.shape) for o in self.objects)


@dataclass(frozen=True)
class Placement:
    """Where one object is drawn: bounding-box centre and side length, in pixels."""

    cx: float
    cy: float
    size: float


@dataclass(frozen=True)
class Scene:
    """A spec with concrete placements; `render` turns it into an image."""

    spec: SceneSpec
    placements: tuple[Placement, ...]

    @property
    def prompt(self) -> str:
        return self.spec.prompt


_OBJECT = r"an? (\w+) (\w+)"
_SINGLE_RE = re.compile(rf"^{_OBJECT} (in the center|in the centre|on the left|on the right|at the top|at the bottom)$")
_PAIR_RE = re.compile(rf"^{_OBJECT} (to the left of|left of|to the right of|right of|above|below) {_OBJECT}$")


def _object(colour: str, shape: str, text: str) -> ObjectSpec:
    if colour not in PALETTE:
        raise PromptParseError(f"unknown colour {colour!r} in {text!r}; known colours: {', '.join(COLOURS)}")
    if shape not in SHAPES:
        raise PromptParseError(f"unknown shape {shape!r} in {text!r}; known shapes: {', '.join(SHAPES)}")
    return ObjectSpec(colour, shape)


def parse_prompt(text: str) -> SceneSpec:
    """Read a prompt or caption of the Shapes grammar into a SceneSpec.

    Case, surrounding whitespace, repeated spaces and a final period are forgiven; anything else
    outside the grammar raises PromptParseError naming the text.
    """
    norm = " ".join(text.lower().strip().rstrip(".").split())
    if match := _SINGLE_RE.match(norm):
        colour, shape, phrase = match.groups()
        position = {v: k for k, v in _POSITION_PHRASES.items()}.get(phrase, "center")
        return SceneSpec((_object(colour, shape, text),), position)
    if match := _PAIR_RE.match(norm):
        c1, s1, phrase, c2, s2 = match.groups()
        first, second = _object(c1, s1, text), _object(c2, s2, text)
        if phrase in _MIRRORED_PHRASES:
            return SceneSpec((second, first), _MIRRORED_PHRASES[phrase])
        return SceneSpec((first, second), "left_of" if "left" in phrase else "above")
    raise PromptParseError(
        f"{text!r} is not a Shapes prompt; expected e.g. 'a red circle on the left' or "
        "'a red circle to the left of a blue square'"
    )
