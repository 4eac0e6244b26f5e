"""Noisy captions, as web alt-text is noisy: what the built-in generator is pretrained on.

Real text-to-image base models are strong on single objects and weak on counting, spatial
relations and attribute binding, largely because the alt-text they were trained on rarely states
counts or relations correctly and attaches adjectives loosely (Betker et al. 2023, "Improving Image
Generation with Better Captions", measured this on web captions and fixed it by re-captioning). The
Shapes generator gets the same handicap on purpose, so that its base profile resembles a real base
model's and RL has real headroom: every scene is drawn exactly as its true prompt says, but the
caption it is paired with misstates, with fixed probabilities,

- the count of a counting scene (replaced by a uniformly drawn count, possibly the true one);
- the relation of a two-object relation scene (one of the four directions, drawn uniformly);
- the colour binding of two coloured objects (the two colour words swapped);
- a colour word (replaced by a uniformly drawn colour).

Relations are also written in either surface form ("A to the left of B" or "B to the right of A").
A misstatement never names a held-out colour–shape pair in `train` data (such a swap or colour
is not made), so held-out pairs stay absent from the generator's captions as from its images.
Nothing here touches the reward models or the verifier: they see true prompts only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlalign.shapes.categories import surface_forms
from rlalign.shapes.scene import COLOURS, COUNTS, RELATIONS, ObjectSpec, Scene, SceneSpec
from rlalign.shapes.splits import HELDOUT_PAIRS


@dataclass(frozen=True)
class CaptionNoise:
    """Probabilities of each misstatement (0 everywhere: true captions)."""

    count: float = 0.0
    """A counting caption's number is redrawn uniformly from two, three, four with this probability."""
    relation: float = 0.0
    """A relation caption's direction is redrawn uniformly from left of / right of / above / below."""
    binding: float = 0.0
    """Two coloured objects get each other's colour words with this probability."""
    colour: float = 0.0
    """Each colour word is redrawn uniformly from the palette with this probability."""

    def __post_init__(self) -> None:
        for name in ("count", "relation", "binding", "colour"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CaptionNoise.{name}={value} must be a probability in [0, 1]")


def noisy_caption(scene: Scene, noise: CaptionNoise, rng: np.random.Generator, split: str = "train") -> str:
    """The caption a scene is paired with in the generator's pretraining data."""
    spec = scene.spec
    allowed = (lambda o: (o.colour, o.shape) not in HELDOUT_PAIRS) if split == "train" else (lambda o: True)
    objects = list(spec.objects)
    if len(objects) == 2 and all(o.colour for o in objects) and rng.random() < noise.binding:
        swapped = [ObjectSpec(objects[1].colour, objects[0].shape), ObjectSpec(objects[0].colour, objects[1].shape)]
        objects = swapped if all(map(allowed, swapped)) else objects
    for index, obj in enumerate(objects):
        if obj.colour and rng.random() < noise.colour:
            redrawn = ObjectSpec(COLOURS[rng.integers(len(COLOURS))], obj.shape)
            objects[index] = redrawn if allowed(redrawn) else obj
    if spec.counted:
        count = len(objects)
        if rng.random() < noise.count:
            count = list(COUNTS)[rng.integers(len(COUNTS))]
        return SceneSpec((objects[0],) * count).prompt
    if len(objects) == 2 and objects[0] == objects[1] and spec.layout not in RELATIONS:
        return SceneSpec((objects[0],) * 2).prompt  # a colour edit made both the same: "two ..."
    layout = spec.layout
    if layout in RELATIONS and rng.random() < noise.relation:
        # Four directions: left_of / above as they are, or mirrored (right of / below) by swapping.
        direction = rng.integers(4)
        layout = RELATIONS[direction % 2]
        if direction >= 2:
            objects = objects[::-1]
    stated = SceneSpec(tuple(objects), layout)
    forms = surface_forms(stated)
    return forms[rng.integers(len(forms))]
