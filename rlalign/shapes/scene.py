"""Scenes of the Shapes world and the grammar that turns them into prompts and back.

A scene is a *spec* (what a prompt says: which shapes, perhaps their colours, how many, and where)
plus *placements* (the exact centre and size of each drawn object, jittered) and the colours
actually drawn. Prompts and captions are the same text: the generator is conditioned on it, the
captioner must produce it, the verifier parses it.

The grammar has GenEval's six task categories (docs/shapes.md):

    single_object   a triangle
    two_object      a circle and a square                      (different shapes)
    counting        three squares                              (exactly that many; two..four)
    colors          a purple circle          [+ in the center | on the left | ...]
    position        a circle to the left of a square           (left of | right of | above | below)
    color_attr      a red circle and a blue square             (different colours, different shapes)

plus the combinations the first Shapes world had (a coloured object at a position, two coloured
objects in a relation), which count as `colors` and `position`. Whatever a prompt leaves open is
free: an uncoloured object may have any colour, a prompt without a position any layout.

Coordinates are continuous pixels on a 32×32 canvas: x grows to the right, y grows downwards,
so "top" means small y. An object's (cx, cy) is the centre of its bounding box.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rlalign.shapes.canvas import PALETTE, Placement

COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
POSITIONS: tuple[str, ...] = ("center", "left", "right", "top", "bottom")
"""Absolute positions of a lone object."""
RELATIONS: tuple[str, ...] = ("left_of", "above")
"""Relations of two objects: objects[0] is left of / above objects[1] (mirrored phrases are swapped)."""
FREE = "free"
"""The layout of a prompt that names no position or relation."""
COUNTS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
"""Counting prompts name two, three or four objects of one kind."""
MAX_OBJECTS = max(COUNTS)
CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
"""GenEval's six task categories, in GenEval's order; `overall` is their unweighted mean."""

DESCRIBED_WORDS: tuple[str, ...] = (
    "a", "an", "in", "the", "center", "centre", "on", "left", "right", "at", "top", "bottom", "to", "of",
    "above", "below", *COLOURS, *SHAPES,
)
"""The words of described scenes (every colour and the position or relation named): the captioner's vocabulary."""
GRAMMAR_WORDS: tuple[str, ...] = (*DESCRIBED_WORDS, "and", *COUNTS.values(), *(shape + "s" for shape in SHAPES))
"""Every word the grammar below writes or parses (the vocabulary of the built-in generator and CLIP).
The category words are appended, so the ids of the described-scene words are unchanged."""

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
    """One shape named by a prompt; `colour` is None when the prompt leaves it open."""

    colour: str | None
    shape: str

    def phrase(self) -> str:
        words = f"{self.colour} {self.shape}" if self.colour else self.shape
        return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}" if self.colour else self.shape


@dataclass(frozen=True)
class SceneSpec:
    """What a prompt says: the named objects and their layout.

    layout is a position (one object), a relation (two objects) or FREE. Two or more identical
    objects with a free layout are a counting prompt ("three squares"); two different objects
    with a free layout are joined by "and".
    """

    objects: tuple[ObjectSpec, ...]
    layout: str = FREE

    def __post_init__(self) -> None:
        count = len(self.objects)
        for obj in self.objects:
            if (obj.colour is not None and obj.colour not in PALETTE) or obj.shape not in SHAPES:
                raise ValueError(f"unknown colour/shape {obj.colour!r}/{obj.shape!r}")
        allowed = {1: (FREE, *POSITIONS), 2: (FREE, *RELATIONS)}.get(count, (FREE,))
        if not 1 <= count <= MAX_OBJECTS or self.layout not in allowed:
            raise ValueError(f"invalid scene spec: {count} objects with layout {self.layout!r}")
        if count > 2 and len(set(self.objects)) > 1:
            raise ValueError(f"a spec of {count} objects must name one kind of object (a counting prompt)")

    @property
    def counted(self) -> bool:
        """Whether the prompt counts identical objects ("two squares")."""
        return len(self.objects) >= 2 and self.layout == FREE and len(set(self.objects)) == 1

    @property
    def category(self) -> str:
        """The GenEval category of this prompt (see the module docstring)."""
        coloured = [obj.colour is not None for obj in self.objects]
        if self.counted:
            return "counting"
        if self.layout in RELATIONS:
            return "position"
        if len(self.objects) == 2:
            return "color_attr" if all(coloured) else "two_object"
        return "colors" if coloured[0] else "single_object"

    @property
    def prompt(self) -> str:
        first = self.objects[0]
        if self.counted:
            colour = f"{first.colour} " if first.colour else ""
            return f"{COUNTS[len(self.objects)]} {colour}{first.shape}s"
        if len(self.objects) == 1:
            suffix = "" if self.layout == FREE else f" {_POSITION_PHRASES[self.layout]}"
            return first.phrase() + suffix
        joint = "and" if self.layout == FREE else _RELATION_PHRASES[self.layout]
        return f"{first.phrase()} {joint} {self.objects[1].phrase()}"

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The (colour, shape) pairs the prompt names (objects without a colour name none)."""
        return tuple((o.colour, o.shape) for o in self.objects if o.colour is not None)


@dataclass(frozen=True)
class Scene:
    """A spec with concrete placements and the colour drawn for each object; `render` draws it.

    `colours` fills in what the spec leaves open (None: every object is named with its colour).
    """

    spec: SceneSpec
    placements: tuple[Placement, ...]
    colours: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.placements) != len(self.spec.objects):
            raise ValueError(f"{len(self.placements)} placements for {len(self.spec.objects)} objects")
        if self.colours is None:
            if any(obj.colour is None for obj in self.spec.objects):
                raise ValueError(f"scene of {self.spec.prompt!r} needs the colours drawn for its uncoloured objects")
            object.__setattr__(self, "colours", tuple(obj.colour for obj in self.spec.objects))
        named = [obj.colour for obj in self.spec.objects]
        if len(self.colours) != len(named) or any(n is not None and n != c for n, c in zip(named, self.colours)):
            raise ValueError(f"drawn colours {self.colours} contradict the prompt {self.spec.prompt!r}")

    @property
    def prompt(self) -> str:
        return self.spec.prompt

    def image(self):
        """The scene drawn: a float32 tensor [3, 32, 32] in [0, 1] (what image rewards read from a
        captioner's Scene prompts)."""
        from rlalign.shapes.render import render  # imported here: rendering needs numpy and torch

        return render(self)

    @property
    def drawn_pairs(self) -> tuple[tuple[str, str], ...]:
        """The (colour, shape) pairs actually drawn."""
        return tuple((c, o.shape) for c, o in zip(self.colours, self.spec.objects))


_COLOUR = "|".join(COLOURS)
_SHAPE = "|".join(SHAPES)
_OBJECT = rf"an? (?:({_COLOUR}) )?({_SHAPE})"
_POSITION = "in the center|in the centre|on the left|on the right|at the top|at the bottom"
_SINGLE_RE = re.compile(rf"^{_OBJECT}(?: ({_POSITION}))?$")
_PAIR_RE = re.compile(rf"^{_OBJECT} (and|to the left of|left of|to the right of|right of|above|below) {_OBJECT}$")
_COUNT_RE = re.compile(rf"^({'|'.join(COUNTS.values())}) (?:({_COLOUR}) )?({_SHAPE})s$")
_EXAMPLES = "e.g. 'a triangle', 'three squares', 'a red circle on the left' or 'a red circle to the left of a blue square'"


def _unknown_word(norm: str, text: str) -> PromptParseError:
    """The error for a text outside the grammar, naming its first unknown word when it has one."""
    for word in norm.split():
        if word not in GRAMMAR_WORDS:
            known = f"known colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}"
            return PromptParseError(f"unknown word {word!r} in {text!r}; {known}")
    return PromptParseError(f"{text!r} is not a Shapes prompt; expected {_EXAMPLES}")


def parse_prompt(text: str) -> SceneSpec:
    """Read a prompt or caption of the Shapes grammar into a SceneSpec.

    Case, surrounding whitespace, repeated spaces and a final period are forgiven; anything else
    outside the grammar raises PromptParseError naming the first unknown word, or the text.
    """
    norm = " ".join(str(text).lower().strip().rstrip(".").split())
    if match := _SINGLE_RE.match(norm):
        colour, shape, phrase = match.groups()
        position = FREE if phrase is None else {v: k for k, v in _POSITION_PHRASES.items()}.get(phrase, "center")
        return SceneSpec((ObjectSpec(colour, shape),), position)
    if match := _COUNT_RE.match(norm):
        number, colour, shape = match.groups()
        count = {v: k for k, v in COUNTS.items()}[number]
        return SceneSpec((ObjectSpec(colour, shape),) * count, FREE)
    if match := _PAIR_RE.match(norm):
        c1, s1, phrase, c2, s2 = match.groups()
        first, second = ObjectSpec(c1, s1), ObjectSpec(c2, s2)
        if phrase == "and":
            if first == second:
                raise PromptParseError(f"{text!r} names the same object twice; write a count, e.g. 'two {s1}s'")
            return SceneSpec((first, second), FREE)
        if phrase in _MIRRORED_PHRASES:
            return SceneSpec((second, first), _MIRRORED_PHRASES[phrase])
        return SceneSpec((first, second), "left_of" if "left" in phrase else "above")
    raise _unknown_word(norm, text)
