"""The programmatic verifier of the Shapes world (GenEval's role, docs/shapes.md).

A prompt is parsed into constraints (each named object is present, has its shape, sits at its
position or in its relation, and nothing else is in the scene). An image is read back into
objects by colour segmentation and connected components; a caption is checked against the
objects of a known scene. Both paths judge the same constraints with the same geometry, so an
image and a caption of one scene get the same verdict.

The verifier is evaluation ground truth: no training objective may see it. The Shapes task judges
evaluation samples with it (rlalign.tasks.shapes), and the eval-only reward `shapes_eval`
(rlalign.rewards.shapes_eval) exposes it in TRL's reward convention.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from rlalign.shapes import (
    CANVAS,
    PALETTE,
    POSITIONS,
    RELATIONS,
    Placement,
    PromptParseError,
    Scene,
    SceneSpec,
    parse_prompt,
)
from rlalign.shapes.render import coverage

FOREGROUND_THRESHOLD = 0.3
"""A pixel is foreground when its brightest channel exceeds this (background is black)."""
MIN_OBJECT_PIXELS = 6
"""Connected components smaller than this are specks (noise, generation artefacts), not objects."""
MIN_COLOUR_SHARE = 0.2
"""Inside one component, a colour holding at least this share (and MIN_OBJECT_PIXELS pixels) is an
object of its own: two touching objects of different colours are still told apart."""
CENTER_RADIUS = 4.0
"""A lone object whose centre is within this many pixels (per axis) of the canvas centre is 'center'."""
RELATION_MARGIN = 3.0
"""'A left of B' needs A's centre at least this many pixels left of B's (likewise for 'above')."""

_COLOUR_NAMES = tuple(PALETTE)
_UNIT_PALETTE_C3 = np.array([PALETTE[c] for c in _COLOUR_NAMES], dtype=np.float32)
_UNIT_PALETTE_C3 /= np.linalg.norm(_UNIT_PALETTE_C3, axis=1, keepdims=True)


@dataclass(frozen=True)
class SeenObject:
    """An object as the verifier sees it: colour, shape class and bounding-box centre (pixels)."""

    colour: str
    shape: str
    cx: float
    cy: float
    area: float


@dataclass
class Verdict:
    """The outcome of checking one sample: partial score, exact match and each named check."""

    score: float
    exact: bool
    checks: dict[str, bool] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading objects out of an image
# ---------------------------------------------------------------------------------------------


def _coverage_of(pixels_HW3: np.ndarray, mask_HW: np.ndarray) -> np.ndarray:
    """Soft coverage [H, W] of one object: each pixel's projection on the object's own colour.

    The colour is estimated from the object's brightest pixels rather than taken from the
    palette, so generated objects slightly off the palette are measured just as well. The mask is
    grown by one pixel to recover the dim anti-aliased rim that the foreground threshold cut off.
    """
    region_HW = ndimage.binary_dilation(mask_HW, structure=np.ones((3, 3)))
    inside_N3 = pixels_HW3[mask_HW]
    brightness_N = inside_N3.max(axis=-1)
    colour_3 = inside_N3[brightness_N >= np.quantile(brightness_N, 0.75)].mean(axis=0)
    coverage_HW = (pixels_HW3 @ colour_3) / float(colour_3 @ colour_3)
    return np.where(region_HW, np.clip(coverage_HW, 0.0, 1.0), 0.0)


def _fit_shape(coverage_HW: np.ndarray) -> tuple[str, Placement]:
    """Analysis by synthesis: the shape whose re-rendering best matches the observed coverage.

    For each hypothesis the size follows from the area (circle: π s²/4, square: s², triangle:
    s²/2) and the centre from the centroid (an upward triangle's centroid lies s/6 below its
    bounding-box centre); the hypothesis with the smallest L1 error against the coverage wins.
    """
    area = float(coverage_HW.sum())
    rows_H, cols_W = np.indices(coverage_HW.shape, dtype=np.float64) + 0.5
    cx, cy = (coverage_HW * cols_W).sum() / area, (coverage_HW * rows_H).sum() / area
    hypotheses = {
        "circle": Placement(cx, cy, 2.0 * np.sqrt(area / np.pi)),
        "square": Placement(cx, cy, np.sqrt(area)),
        "triangle": Placement(cx, cy - np.sqrt(2.0 * area) / 6.0, np.sqrt(2.0 * area)),
    }
    errors = {shape: np.abs(coverage(shape, p) - coverage_HW).sum() for shape, p in hypotheses.items()}
    best = min(errors, key=errors.get)
    return best, hypotheses[best]


def _seen(pixels_HW3: np.ndarray, mask_HW: np.ndarray, colour: str) -> SeenObject:
    coverage_HW = _coverage_of(pixels_HW3, mask_HW)
    shape, placement = _fit_shape(coverage_HW)
    return SeenObject(colour, shape, float(placement.cx), float(placement.cy), float(coverage_HW.sum()))


def detect_objects(image: torch.Tensor | np.ndarray) -> list[SeenObject]:
    """Objects in one image [3, H, W] in [0, 1] (resized to 32×32 by area averaging if needed)."""
    image_3HW = torch.as_tensor(image, dtype=torch.float32, device="cpu")
    if image_3HW.ndim != 3 or image_3HW.shape[0] != 3:
        raise ValueError(f"shapes_eval expects images [3, H, W], got shape {tuple(image_3HW.shape)}")
    if image_3HW.shape[-2:] != (CANVAS, CANVAS):
        image_3HW = F.interpolate(image_3HW[None], size=(CANVAS, CANVAS), mode="area")[0]
    pixels_HW3 = image_3HW.clamp(0, 1).permute(1, 2, 0).numpy()
    foreground_HW = pixels_HW3.max(axis=-1) > FOREGROUND_THRESHOLD
    # Colour by direction in RGB space, so dim anti-aliased edges keep their colour.
    colour_HW = (pixels_HW3 @ _UNIT_PALETTE_C3.T).argmax(axis=-1)
    components_HW, count = ndimage.label(foreground_HW, structure=np.ones((3, 3)))
    objects = []
    for index in range(1, count + 1):
        component_HW = components_HW == index
        size = int(component_HW.sum())
        if size < MIN_OBJECT_PIXELS:
            continue
        counts = np.bincount(colour_HW[component_HW], minlength=len(_COLOUR_NAMES))
        major = [c for c in np.flatnonzero(counts) if counts[c] >= max(MIN_OBJECT_PIXELS, MIN_COLOUR_SHARE * size)]
        if len(major) <= 1:
            objects.append(_seen(pixels_HW3, component_HW, _COLOUR_NAMES[int(counts.argmax())]))
        else:
            objects.extend(_seen(pixels_HW3, component_HW & (colour_HW == c), _COLOUR_NAMES[c]) for c in major)
    return objects


def scene_objects(scene: Scene) -> list[SeenObject]:
    """The objects of a known scene, exactly as drawn."""
    return [
        SeenObject(colour, o.shape, p.cx, p.cy, p.size * p.size)
        for o, colour, p in zip(scene.spec.objects, scene.colours, scene.placements)
    ]


# ---------------------------------------------------------------------------------------------
# Judging objects against a prompt's constraints
# ---------------------------------------------------------------------------------------------


def position_of(obj: SeenObject) -> str:
    """Where a lone object sits: center, or the side its centre is furthest towards."""
    dx, dy = obj.cx - CANVAS / 2, obj.cy - CANVAS / 2
    if max(abs(dx), abs(dy)) < CENTER_RADIUS:
        return "center"
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "top" if dy < 0 else "bottom"


def relation_holds(first: SeenObject, second: SeenObject, relation: str) -> bool:
    """Whether `first` is left of / above `second`, with the relation's axis dominating."""
    dx, dy = second.cx - first.cx, second.cy - first.cy
    if relation == "left_of":
        return dx >= RELATION_MARGIN and abs(dx) >= abs(dy)
    return dy >= RELATION_MARGIN and abs(dy) >= abs(dx)


MAX_CANDIDATES = 6
"""Only the largest this many seen objects are tried in the assignment (bounds the search on noise)."""


def _checks_for(spec: SceneSpec, chosen: tuple[SeenObject | None, ...]) -> dict[str, bool]:
    """The named checks of one assignment of seen objects (or None) to the spec's objects."""
    checks: dict[str, bool] = {}
    numbered = len(set(spec.objects)) < len(spec.objects)  # identical objects get a number each
    for index, (wanted, seen) in enumerate(zip(spec.objects, chosen)):
        name = f"{wanted.label} {index + 1}" if numbered else wanted.label
        checks[f"{name}: shape"] = seen is not None and seen.shape == wanted.shape
        if wanted.colour is not None:
            checks[f"{name}: colour"] = seen is not None and seen.colour == wanted.colour
    if spec.layout in POSITIONS:
        checks[f"position: {spec.layout}"] = chosen[0] is not None and position_of(chosen[0]) == spec.layout
    elif spec.layout in RELATIONS:
        first, second = chosen
        checks[f"relation: {spec.layout}"] = (
            first is not None and second is not None and relation_holds(first, second, spec.layout))
    return checks


def check_objects(spec: SceneSpec, objects: list[SeenObject]) -> Verdict:
    """Judge seen objects against a spec; the score is the fraction of checks met.

    Each named object is matched to a distinct seen object (or to none when too few are seen);
    the assignment meeting the most checks is judged, ties going to larger objects. Besides the
    per-object and layout checks, "no extra objects" asks for exactly as many objects as named
    (for a counting prompt: exactly that many).
    """
    candidates = sorted(objects, key=lambda o: -o.area)[:MAX_CANDIDATES]
    # Leaving a named object unmatched never beats matching it, so None fills only missing objects.
    slots: list[SeenObject | None] = [*candidates, *([None] * max(0, len(spec.objects) - len(candidates)))]
    best: dict[str, bool] | None = None
    for chosen in itertools.permutations(range(len(slots)), len(spec.objects)):
        checks = _checks_for(spec, tuple(slots[i] for i in chosen))
        if best is None or sum(checks.values()) > sum(best.values()):
            best = checks
            if all(checks.values()):
                break
    checks = {**best, "no extra objects": len(objects) == len(spec.objects)}
    met = sum(checks.values())
    return Verdict(met / len(checks), met == len(checks), checks)


def mismatched_prompts(scenes: list[Scene], rng: np.random.Generator) -> list[str]:
    """For each scene, the prompt of another scene that it does not satisfy (by its exact objects),
    of the same category where the scenes hold one: the negatives the verifier must reject."""
    by_category: dict[str, list[Scene]] = {}
    for scene in scenes:
        by_category.setdefault(scene.spec.category, []).append(scene)
    others = []
    for scene in scenes:
        seen = scene_objects(scene)
        pool = [s for s in by_category[scene.spec.category] if not check_objects(s.spec, seen).exact]
        pool = pool or [s for s in scenes if not check_objects(s.spec, seen).exact]
        if not pool:
            raise ValueError(f"no prompt among the scenes contradicts {scene.prompt!r}")
        others.append(pool[int(rng.integers(len(pool)))].prompt)
    return others


def verify_image(prompt: str, image: torch.Tensor | np.ndarray) -> Verdict:
    """Check one image [3, H, W] in [0, 1] against a Shapes prompt."""
    try:
        spec = parse_prompt(prompt)
    except PromptParseError as error:
        raise ValueError(f"the Shapes verifier can only judge Shapes prompts: {error}") from None
    return check_objects(spec, detect_objects(image))


def verify_caption(caption: str, scene: Scene) -> Verdict:
    """Check a caption against a known scene; a caption outside the grammar scores 0."""
    try:
        spec = parse_prompt(caption)
    except PromptParseError:
        return Verdict(0.0, False, {"caption parses": False})
    return check_objects(spec, scene_objects(scene))
