"""The training data of the Shapes task's built-in reward models (`shapes-clip`, `shapes-aesthetic`),
used by scripts/train_shapes_rewards.py and by the tests that check what the models learned.

Its tokenizer is open_clip's own `SimpleTokenizer` reading a *subset* of CLIP's BPE merges: only
the merges that CLIP's tokenizer applies to the words of the Shapes grammar, in CLIP's rank order.
Those words therefore split into exactly the pieces CLIP's tokenizer produces, any other word
falls back to byte-level pieces (still a valid input), and the vocabulary shrinks from 49408 to
about 600 ids, which keeps the text embedding (and the shipped file) small. Because the special
tokens come last, `<end_of_text>` is still the largest id, which open_clip's argmax pooling needs.
(rlalign.rewards.builtin_models registers the shipped model with open_clip.)

The CLIP's hard negative captions and mirrored scenes, and the aesthetic model's degradations
(noise, blur, blotches, colour bleeding, graded by a severity in [0, 1]) are defined here too, so
tests and evaluations use exactly what training used.
"""


from __future__ import annotations

import gzip
import itertools
import math
from copy import deepcopy

import numpy as np
import torch
import torch.nn.functional as F

from rlalign.shapes import (
    CANVAS,
    COLOURS,
    COUNTS,
    FREE,
    GRAMMAR_WORDS,
    POSITIONS,
    RELATIONS,
    SHAPES,
    ObjectSpec,
    Placement,
    Scene,
    SceneSpec,
    parse_prompt,
    sample_category_scenes,
    sample_scenes,
    surface_forms,
)

SHAPES_CLIP_MODEL_CFG: dict = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "patch_size": 4, "width": 128, "layers": 4, "head_width": 32},
    # vocab_size is filled in from the BPE subset by shapes_clip_open_clip_config().
    "text_cfg": {"context_length": 16, "width": 128, "heads": 4, "layers": 3},
}
"""A ViT on 8×8 patches of 4×4 pixels and a 3-layer text transformer; ~1.4M parameters."""


# ---------------------------------------------------------------------------------------------
# The tokenizer: a subset of CLIP's BPE merges
# ---------------------------------------------------------------------------------------------


def _merges_applied(word: str, ranks: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
    """The merges CLIP's BPE applies to one word, in order (the same loop as open_clip's `bpe`)."""
    pieces = [*word[:-1], word[-1] + "</w>"]
    applied = []
    while len(pieces) > 1:
        pairs = set(itertools.pairwise(pieces))
        best = min(pairs, key=lambda pair: ranks.get(pair, math.inf))
        if best not in ranks:
            break
        applied.append(best)
        merged, index = [], 0
        while index < len(pieces):
            if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == best:
                merged.append(pieces[index] + pieces[index + 1])
                index += 2
            else:
                merged.append(pieces[index])
                index += 1
        pieces = merged
    return applied


def grammar_bpe_merges(words: tuple[str, ...] = GRAMMAR_WORDS) -> list[str]:
    """CLIP's merges needed by `words`, kept in CLIP's rank order, as "first second" lines.

    Keeping the rank order makes BPE on these words take the same steps as with all 48894
    merges: at every step the lowest-ranked pair present is one of the kept merges.
    """
    from open_clip.tokenizer import default_bpe

    with gzip.open(default_bpe()) as handle:  # the slice is SimpleTokenizer's own
        lines = handle.read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    ranks = {tuple(line.split()): rank for rank, line in enumerate(lines)}
    needed = {merge for word in words for merge in _merges_applied(word, ranks)}
    return [" ".join(merge) for merge in sorted(needed, key=ranks.__getitem__)]


def shapes_clip_open_clip_config(merges: list[str] | None = None) -> dict:
    """The `open_clip_config.json`-style dict of shapes-clip: model_cfg (with tokenizer) and preprocess_cfg.

    Preprocessing is open_clip's default (OpenAI mean/std, bicubic, shortest-side resize), so the
    model is used exactly as any open_clip model; Shapes renders are already 32×32.
    """
    merges = grammar_bpe_merges() if merges is None else merges
    model_cfg = deepcopy(SHAPES_CLIP_MODEL_CFG)
    model_cfg["text_cfg"]["vocab_size"] = 2 * 256 + len(merges) + 2  # bytes, bytes+</w>, merges, sot/eot
    return {"model_cfg": model_cfg, "preprocess_cfg": {}, "bpe_merges": merges}


# ---------------------------------------------------------------------------------------------
# Captions: mirrored scenes and one-step edits (CLIP's hard negatives and hard retrieval candidates)
# ---------------------------------------------------------------------------------------------


def mirrored(scene: Scene) -> Scene:
    """The scene flipped left–right: exactly what rendering the mirrored placements draws."""
    spec, placements, colours = scene.spec, scene.placements, scene.colours
    if spec.layout in POSITIONS:
        new_spec = SceneSpec(spec.objects, {"left": "right", "right": "left"}.get(spec.layout, spec.layout))
    elif spec.layout == "left_of":  # the first object is now on the right: swap to stay canonical
        new_spec, placements, colours = SceneSpec(spec.objects[::-1], "left_of"), placements[::-1], colours[::-1]
    else:
        new_spec = spec
    return Scene(new_spec, tuple(Placement(CANVAS - p.cx, p.cy, p.size) for p in placements), colours)


def caption_edits(spec: SceneSpec) -> list[tuple[str, SceneSpec]]:
    """Specs one step from `spec`, by kind: a colour, shape, position, relation or count word changed,
    the two objects' order swapped (which swaps colour bindings or the relation), an object dropped
    or one added. Coloured pairs keep their colours distinct, as the grammar's scenes do.

    An edit may still describe a particular scene (an uncoloured prompt leaves colours open):
    `scene_edits` keeps only the edits a scene does not satisfy.
    """
    objects, layout = spec.objects, spec.layout
    if spec.counted:
        first = objects[0]
        edits = [("count", SceneSpec((first,) * n)) for n in COUNTS if n != len(objects)]
        edits += [("shape", SceneSpec((ObjectSpec(first.colour, shape),) * len(objects)))
                  for shape in SHAPES if shape != first.shape]
        return edits
    edits: list[tuple[str, SceneSpec]] = []
    for index, obj in enumerate(objects):
        others = {o.colour for i, o in enumerate(objects) if i != index}
        if obj.colour is not None:
            edits += [("colour", _replace(spec, index, ObjectSpec(colour, obj.shape)))
                      for colour in COLOURS if colour != obj.colour and colour not in others]
        edits += [("shape", _replace(spec, index, ObjectSpec(obj.colour, shape))) for shape in SHAPES
                  if shape != obj.shape and _valid(spec, index, ObjectSpec(obj.colour, shape))]
    if len(objects) == 1:
        edits += [("position", SceneSpec(objects, p)) for p in POSITIONS if p != layout and layout != FREE]
        edits.append(("count", SceneSpec(objects * 2, FREE) if layout == FREE else SceneSpec(objects * 2, "left_of")))
    else:
        edits += [("relation", SceneSpec(objects, r)) for r in RELATIONS if r != layout and layout != FREE]
        if objects[0].colour is not None and objects[1].colour is not None and objects[0].shape != objects[1].shape:
            # the binding edit: each shape gets the other's colour ("a blue circle and a red square")
            edits.append(("swap", SceneSpec((ObjectSpec(objects[1].colour, objects[0].shape),
                                             ObjectSpec(objects[0].colour, objects[1].shape)), layout)))
        if layout != FREE:
            edits.append(("swap", SceneSpec(objects[::-1], layout)))
        edits += [("drop", SceneSpec((obj,), FREE)) for obj in objects]
    return [(kind, edit) for kind, edit in edits if edit != spec]


def _valid(spec: SceneSpec, index: int, obj: ObjectSpec) -> bool:
    """Whether replacing object `index` by `obj` keeps an "and" pair of two different objects."""
    return not (len(spec.objects) == 2 and spec.layout == FREE and obj == spec.objects[1 - index])


def scene_edits(scene: Scene) -> list[tuple[str, SceneSpec]]:
    """The caption edits of a scene's spec that the scene itself does not satisfy (true negatives)."""
    from rlalign.shapes.verify import check_objects, scene_objects

    seen = scene_objects(scene)
    return [(kind, edit) for kind, edit in caption_edits(scene.spec) if not check_objects(edit, seen).exact]


def clip_scenes(count: int, seed: int) -> list[Scene]:
    """CLIP's training scenes: half described scenes, half GenEval-category scenes, all pairs."""
    return sample_scenes("all", count // 2, seed=seed) + sample_category_scenes("all", count - count // 2, seed=seed)


def satisfied_matrix(scenes: list[Scene], captions: list[str]) -> torch.Tensor:
    """[B, B] bool: scene i satisfies caption j (i ≠ j), so caption j is no negative for image i."""
    from rlalign.shapes.verify import check_objects, scene_objects

    specs = [parse_prompt(caption) for caption in captions]
    seen = [scene_objects(scene) for scene in scenes]
    batch = len(scenes)
    satisfied_BB = torch.zeros(batch, batch, dtype=torch.bool)
    for i in range(batch):
        for j in range(batch):
            # "no extra objects": only a caption naming as many objects as the scene holds can hold
            if i != j and len(specs[j].objects) == len(seen[i]):
                satisfied_BB[i, j] = bool(captions[i] == captions[j] or check_objects(specs[j], seen[i]).exact)
    return satisfied_BB


def hard_negative(scene: Scene, rng: np.random.Generator) -> str:
    """One true negative caption: an edit kind drawn uniformly, then an edit and a surface form."""
    return hard_negatives(scene, rng, 1)[0]


def hard_negatives(scene: Scene, rng: np.random.Generator, count: int) -> list[str]:
    """`count` true negative captions of distinct edit kinds (kinds drawn uniformly without
    replacement; drawn again once every kind the scene has is used), each an edit and a surface form."""
    edits = scene_edits(scene)
    kinds = sorted({kind for kind, _ in edits})
    order = [kinds[i] for _ in range(-(-count // len(kinds))) for i in rng.permutation(len(kinds))]
    negatives = []
    for kind in order[:count]:
        chosen = [spec for k, spec in edits if k == kind]
        forms = surface_forms(chosen[rng.integers(len(chosen))])
        negatives.append(forms[rng.integers(len(forms))])
    return negatives


def _replace(spec: SceneSpec, index: int, obj: ObjectSpec) -> SceneSpec:
    return SceneSpec(tuple(obj if i == index else o for i, o in enumerate(spec.objects)), spec.layout)


# ---------------------------------------------------------------------------------------------
# Degradations: what the built-in aesthetic model learns to score down
# ---------------------------------------------------------------------------------------------

DEGRADATIONS = ("noise", "blur", "blotches", "bleeding")
"""Kinds of damage, each graded by a severity in [0, 1] (0 leaves the image unchanged)."""


def _gaussian_blur(images_B3HW: torch.Tensor, sigma: float, horizontal_only: bool = False) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images_B3HW.dtype)
    kernel_K = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel_K = kernel_K / kernel_K.sum()
    channels = images_B3HW.shape[1]
    padded = F.pad(images_B3HW, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(padded, kernel_K.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    if horizontal_only:
        return out
    padded = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(padded, kernel_K.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def _blotches(images_B3HW: torch.Tensor, severity: float, generator: torch.Generator) -> torch.Tensor:
    """Soft discs of random colours pasted at random places: 1 to 6 of them, larger when severe."""
    batch, _, height, width = images_B3HW.shape
    count = 1 + round(5 * severity)
    rows_HW, cols_HW = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    out = images_B3HW.clone()
    for _ in range(count):
        centre_B2 = torch.rand(batch, 2, generator=generator) * torch.tensor([height, width])
        radius_B = 1.0 + (1.0 + 2.5 * severity) * torch.rand(batch, generator=generator)
        colour_B3 = torch.rand(batch, 3, generator=generator)
        distance_BHW = torch.sqrt((rows_HW - centre_B2[:, 0, None, None]) ** 2 + (cols_HW - centre_B2[:, 1, None, None]) ** 2)
        alpha_B1HW = (radius_B[:, None, None] - distance_BHW + 0.5).clamp(0, 1)[:, None] * (0.5 + 0.5 * severity)
        out = out * (1 - alpha_B1HW) + colour_B3[:, :, None, None] * alpha_B1HW
    return out


def _bleeding(images_B3HW: torch.Tensor, severity: float) -> torch.Tensor:
    """Colour bleeding: red and blue shifted apart sideways and smeared, as in a bad analogue signal."""
    shift = 1 + round(3 * severity)
    red, green, blue = images_B3HW.unbind(1)
    shifted_B3HW = torch.stack([torch.roll(red, shift, dims=-1), green, torch.roll(blue, -shift, dims=-1)], dim=1)
    smeared = _gaussian_blur(shifted_B3HW, 0.5 + 1.5 * severity, horizontal_only=True)
    weight = 0.4 + 0.6 * severity
    return (1 - weight) * images_B3HW + weight * smeared


def degrade(images_B3HW: torch.Tensor, kind: str, severity: float, generator: torch.Generator) -> torch.Tensor:
    """A damaged copy of images [B, 3, H, W] in [0, 1]; `severity` 0 is harmless, 1 is heavy."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; choose one of {', '.join(DEGRADATIONS)}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    if severity == 0.0:
        return images_B3HW.clone()
    if kind == "noise":
        noise_B3HW = torch.randn(images_B3HW.shape, generator=generator)
        out = images_B3HW + (0.03 + 0.27 * severity) * noise_B3HW
    elif kind == "blur":
        out = _gaussian_blur(images_B3HW, 0.4 + 1.2 * severity)
    elif kind == "blotches":
        out = _blotches(images_B3HW, severity, generator)
    else:
        out = _bleeding(images_B3HW, severity)
    return out.clamp(0.0, 1.0)
