"""`shapes_detector`: a GenEval-style reward for the Shapes world, a learned detector plus GenEval's rules.

GenEval (Ghosh et al., 2023) judges an image by running an object detector and checking what it
found against the prompt's constraints (the object is there, counted right, coloured right, placed
right); Flow-GRPO trains on exactly that score. This module is the same recipe at Shapes scale:

- **the detector** (`ShapesDetector`) is a small convolutional network, trained only on rendered
  scenes (`scripts/train_shapes_detector.py`), that reads a 32×32 image into objects (shape,
  colour, box centre and side). It is a CenterNet-style single-shot detector on an 8×8 grid of
  4×4-pixel cells: for each cell, whether an object's box centre lies in it, the object's shape and
  colour, the centre's offset inside the cell and the log of the box side. Two Shapes objects are
  at least 9 px apart, so a cell never holds two centres;
- **the rules** are the prompt's constraints as the verifier states them (`check_objects` in
  `rlalign/shapes/verify.py`: shapes, colours, position or relation, no extra objects).

So the trained reward and the evaluation share the rules but not the eyes: the verifier reads an
image by colour segmentation and analysis by synthesis and is never run in training; the detector
is a learned model with its own mistakes, which is what makes reward hacking measurable (the gap
between the two on the trained adapter's samples, docs/rewards.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rlalign.rewards.clip import as_image_batch, is_image_batch, resolve_weights
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from rlalign.shapes import CANVAS, COLOURS, SHAPES, PromptParseError, Scene, parse_prompt
from rlalign.shapes.verify import SeenObject, Verdict, check_objects
from rlalign.utils.files import atomic_path, readable

GRID = 8
"""Cells per side of the detection grid; each covers CANVAS / GRID = 4 pixels."""
CELL = CANVAS / GRID
HEAD_CHANNELS = {"objectness": 1, "shape": len(SHAPES), "colour": len(COLOURS), "offset": 2, "log_side": 1}
"""What the head predicts per cell, in channel order."""
DEFAULT_THRESHOLD = 0.5
"""A cell holds an object when its objectness probability exceeds this (and is a 3×3 local maximum)."""
FORMAT = "rlalign-shapes-detector"


def _block(channels_in: int, channels_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1),
                         nn.GroupNorm(8, channels_out), nn.SiLU())


class ShapesDetector(nn.Module):
    """32×32 RGB → per-cell predictions [B, 15, 8, 8] (channels as HEAD_CHANNELS): ~0.43 M parameters at width 32."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.body = nn.Sequential(
            _block(3, width), _block(width, width),                              # 32×32
            _block(width, 2 * width, stride=2), _block(2 * width, 2 * width),    # 16×16
            _block(2 * width, 4 * width, stride=2), _block(4 * width, 4 * width),  # 8×8
            _block(4 * width, 4 * width))
        self.head = nn.Conv2d(4 * width, sum(HEAD_CHANNELS.values()), 1)

    def forward(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        if images_B3HW.shape[-2:] != (CANVAS, CANVAS):
            images_B3HW = F.interpolate(images_B3HW, size=(CANVAS, CANVAS), mode="area")
        return self.head(self.body(images_B3HW * 2.0 - 1.0))


def split_head(out_BCGG: torch.Tensor) -> dict[str, torch.Tensor]:
    """The head's channels by name (HEAD_CHANNELS), each [B, c, 8, 8]."""
    return dict(zip(HEAD_CHANNELS, out_BCGG.split(list(HEAD_CHANNELS.values()), dim=1)))


def decode(out_BCGG: torch.Tensor, threshold: float = DEFAULT_THRESHOLD) -> list[list[SeenObject]]:
    """The objects of each image: cells whose objectness exceeds `threshold` and is a 3×3 local maximum."""
    parts = split_head(out_BCGG.float())
    prob_BGG = parts["objectness"][:, 0].sigmoid()
    peak_BGG = prob_BGG == F.max_pool2d(prob_BGG[:, None], 3, stride=1, padding=1)[:, 0]
    found_BGG = (prob_BGG > threshold) & peak_BGG
    shape_BGG, colour_BGG = parts["shape"].argmax(1), parts["colour"].argmax(1)
    offset_B2GG, side_BGG = parts["offset"].sigmoid(), parts["log_side"][:, 0].exp()
    objects: list[list[SeenObject]] = [[] for _ in range(out_BCGG.shape[0])]
    for b, row, col in found_BGG.nonzero().tolist():
        side = float(side_BGG[b, row, col])
        objects[b].append(SeenObject(colour=COLOURS[int(colour_BGG[b, row, col])], shape=SHAPES[int(shape_BGG[b, row, col])],
                                     cx=(col + float(offset_B2GG[b, 0, row, col])) * CELL,
                                     cy=(row + float(offset_B2GG[b, 1, row, col])) * CELL, area=side * side))
    return objects


BOUNDARY_PX = 1.0
"""A centre this close to a cell border could be read in the neighbouring cell as well: that cell's
objectness is left out of the loss (an ignore region), and decoding's 3×3 peak test keeps one."""


def targets(scenes: list[Scene | None]) -> dict[str, torch.Tensor]:
    """Training targets of rendered scenes (None: an empty canvas): per cell, object or not (and
    whether that counts in the loss), shape, colour, offset, log side."""
    count = len(scenes)
    objectness, weight = torch.zeros(count, GRID, GRID), torch.ones(count, GRID, GRID)
    shape = torch.full((count, GRID, GRID), -100, dtype=torch.long)  # -100: ignored by cross_entropy
    colour = torch.full((count, GRID, GRID), -100, dtype=torch.long)
    offset = torch.zeros(count, 2, GRID, GRID)
    log_side = torch.zeros(count, GRID, GRID)
    for b, scene in enumerate(scenes):
        if scene is None:
            continue
        for obj, obj_colour, place in zip(scene.spec.objects, scene.colours, scene.placements):
            col = min(GRID - 1, max(0, int(place.cx // CELL)))
            row = min(GRID - 1, max(0, int(place.cy // CELL)))
            for near_row in _near_cells(place.cy, row):
                for near_col in _near_cells(place.cx, col):
                    weight[b, near_row, near_col] = 0.0
            objectness[b, row, col], weight[b, row, col] = 1.0, 1.0
            shape[b, row, col], colour[b, row, col] = SHAPES.index(obj.shape), COLOURS.index(obj_colour)
            offset[b, 0, row, col], offset[b, 1, row, col] = place.cx / CELL - col, place.cy / CELL - row
            log_side[b, row, col] = math.log(place.size)
    return {"objectness": objectness, "objectness_weight": weight, "shape": shape, "colour": colour,
            "offset": offset, "log_side": log_side}


def _near_cells(coordinate: float, cell: int) -> list[int]:
    """The cell of a centre coordinate and, if it lies within BOUNDARY_PX of a border, the cell across it."""
    cells = [cell]
    if coordinate - cell * CELL < BOUNDARY_PX and cell > 0:
        cells.append(cell - 1)
    if (cell + 1) * CELL - coordinate < BOUNDARY_PX and cell < GRID - 1:
        cells.append(cell + 1)
    return cells


def detection_loss(out_BCGG: torch.Tensor, target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Objectness BCE over every cell but the ignore regions (BOUNDARY_PX); shape and colour cross-entropy, offset and log-side L1 on object cells."""
    parts = split_head(out_BCGG)
    present_BGG = target["objectness"] > 0
    losses = {
        "objectness": F.binary_cross_entropy_with_logits(parts["objectness"][:, 0], target["objectness"],
                                                         weight=target["objectness_weight"]),
        "shape": F.cross_entropy(parts["shape"], target["shape"]),
        "colour": F.cross_entropy(parts["colour"], target["colour"]),
        "offset": (parts["offset"].sigmoid() - target["offset"]).abs().sum(1)[present_BGG].mean(),
        "log_side": (parts["log_side"][:, 0] - target["log_side"]).abs()[present_BGG].mean(),
    }
    losses["total"] = 4.0 * losses["objectness"] + losses["shape"] + losses["colour"] + losses["offset"] + losses["log_side"]
    return losses


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def save_detector(detector: ShapesDetector, path: str | Path, report: dict | None = None) -> None:
    """fp16 safetensors with the width and format in the metadata (atomic: a failed write leaves `path` as it was)."""
    state = {key: value.detach().to(torch.float16).contiguous() for key, value in detector.state_dict().items()}
    metadata = {"format": FORMAT, "width": str(detector.width), "report": json.dumps(report or {})}
    with atomic_path(path) as partial:
        save_file(state, str(partial), metadata=metadata)


def load_detector(weights: str = "builtin:shapes-detector", device: str = "cpu") -> ShapesDetector:
    """A detector from `builtin:NAME` or a local file written by `save_detector`, in eval mode, float32."""
    path = resolve_weights(weights, "weights", "shapes_detector")
    with safe_open(readable(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"shapes_detector: args.weights = {weights!r} is not a Shapes detector file (its metadata "
                         f"format is {metadata.get('format')!r}, expected {FORMAT!r}); train one with "
                         "`python scripts/train_shapes_detector.py`")
    detector = ShapesDetector(int(metadata["width"]))
    try:
        detector.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    except RuntimeError as error:
        raise ValueError(f"shapes_detector: args.weights = {weights!r} does not match the detector's layout: "
                         f"{str(error).splitlines()[-1].strip()}") from None
    return detector.eval().requires_grad_(False).to(device)


# ---------------------------------------------------------------------------------------------
# The reward function (TRL convention)
# ---------------------------------------------------------------------------------------------

_DETECTORS: dict[tuple[str, str], ShapesDetector] = {}


class ShapesDetectorReward:
    """TRL-style reward: each image judged by the detector's objects against its Shapes prompt.

    The constructor is the registry's factory (`rlalign.rewards.shapes_detector:ShapesDetectorReward()`).
    `metric="score"` gives the fraction of the prompt's checks met (partial credit, as in GenEval's
    per-constraint view), `metric="exact"` gives 1.0 when all are met, else 0.0.
    """

    __name__ = "shapes_detector"

    def __init__(self, weights: str = "builtin:shapes-detector", metric: str = "score", device: str = "cpu",
                 threshold: float = DEFAULT_THRESHOLD, batch_size: int = 256):
        if metric not in ("score", "exact"):
            raise ValueError(f"shapes_detector: args.metric must be 'score' or 'exact', got {metric!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"shapes_detector: args.threshold must lie in (0, 1), got {threshold!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"shapes_detector: args.batch_size must be a positive integer, got {batch_size!r}")
        key = (str(resolve_weights(weights, "weights", "shapes_detector")), str(torch.device(device)))
        if key not in _DETECTORS:
            _DETECTORS[key] = load_detector(weights, device)
        self.detector, self.device = _DETECTORS[key], torch.device(device)
        self.metric, self.threshold, self.batch_size = metric, threshold, batch_size

    @torch.no_grad()
    def detect(self, images: Any) -> list[list[SeenObject]]:
        """The objects the detector reads in each image of a batch [B, 3, H, W] in [0, 1]."""
        pixels_B3HW = as_image_batch(images)
        objects: list[list[SeenObject]] = []
        for start in range(0, pixels_B3HW.shape[0], self.batch_size):
            chunk = pixels_B3HW[start:start + self.batch_size].to(self.device).clamp(0, 1)
            objects.extend(decode(self.detector(chunk).cpu(), self.threshold))
        return objects

    def verdicts(self, prompts: list, images: Any) -> list[Verdict]:
        """Each image's verdict: the detector's objects checked against its prompt's constraints."""
        specs = []
        for prompt in prompts:
            try:
                specs.append(parse_prompt(prompt))
            except (PromptParseError, TypeError, AttributeError) as error:
                raise ValueError(f"shapes_detector judges Shapes prompts; {prompt!r} is not one: {error}") from None
        objects = self.detect(images)
        if len(objects) != len(specs):
            raise ValueError(f"shapes_detector got {len(specs)} prompts for {len(objects)} images")
        return [check_objects(spec, seen) for spec, seen in zip(specs, objects)]

    def __call__(self, prompts: list, completions: Any, **_) -> list[float]:
        if not is_image_batch(completions):
            raise ValueError("shapes_detector judges images [B, 3, H, W]; it does not apply to text completions "
                             "(a caption is checked against its scene by shapes_eval)")
        verdicts = self.verdicts(list(prompts), completions)
        return [float(v.exact) if self.metric == "exact" else v.score for v in verdicts]
