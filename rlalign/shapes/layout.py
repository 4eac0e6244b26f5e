"""What a scene's coarse token maps should say: layout targets for semantic coarse scales.

NextFlow's tokenizer makes its coarse tokens carry meaning; a pixel-reconstruction tokenizer does
not (its 1×1 token is the image's mean latent, docs/grpo.md "What limits the image demo"). The
built-in generator's tokenizer is trained with an auxiliary loss that asks the quantizer's queries
of the first two scales to predict these facts of the rendered scene (scripts/pretrain_shapes.py):

    scale 1 (1×1)   how many objects (1..4), which shapes lie in each half (left, right, top,
                    bottom) and which colours appear anywhere;
    scale 2 (2×2)   per quadrant (row-major: top-left, top-right, bottom-left, bottom-right), which
                    shapes and which colours lie in it.

An object "lies in" a region when at least a quarter of its bounding box does: an object on the
midline lies in both halves, as its pixels do. Everything is multi-label (binary cross-entropy)
except the count (cross-entropy over four classes). The heads are linear and are thrown away after
stage 1; only the tokenizer they shaped is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rlalign.shapes.canvas import CANVAS
from rlalign.shapes.scene import COLOURS, MAX_OBJECTS, SHAPES, Scene

_HALVES = ((0.0, 0.0, 0.5, 1.0), (0.5, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 0.5), (0.0, 0.5, 1.0, 1.0))
"""Left, right, top, bottom as (x0, y0, x1, y1) fractions of the canvas."""
_QUADRANTS = ((0.0, 0.0, 0.5, 0.5), (0.5, 0.0, 1.0, 0.5), (0.0, 0.5, 0.5, 1.0), (0.5, 0.5, 1.0, 1.0))
MIN_OVERLAP = 0.25
"""Share of an object's bounding box that must fall inside a region for the object to lie in it."""


def _overlap(cx: float, cy: float, size: float, region: tuple[float, ...]) -> float:
    """Share of the object's box (side `size`, centred at cx, cy) inside `region` (canvas fractions)."""
    x0, y0, x1, y1 = (value * CANVAS for value in region)
    width = max(0.0, min(cx + size / 2, x1) - max(cx - size / 2, x0))
    height = max(0.0, min(cy + size / 2, y1) - max(cy - size / 2, y0))
    return width * height / (size * size)


def layout_targets(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Targets of a batch: count [B] (0-based), halves_shapes [B, 4·S], colours [B, C],
    quadrant_shapes [B, 4, S], quadrant_colours [B, 4, C] (S shapes, C colours; 0/1 floats)."""
    batch = len(scenes)
    count_B = torch.zeros(batch, dtype=torch.long)
    halves_B4S = torch.zeros(batch, 4, len(SHAPES))
    colours_BC = torch.zeros(batch, len(COLOURS))
    quadrant_shapes_B4S = torch.zeros(batch, 4, len(SHAPES))
    quadrant_colours_B4C = torch.zeros(batch, 4, len(COLOURS))
    for b, scene in enumerate(scenes):
        count_B[b] = len(scene.placements) - 1
        for (colour, shape), place in zip(scene.drawn_pairs, scene.placements):
            s, c = SHAPES.index(shape), COLOURS.index(colour)
            colours_BC[b, c] = 1.0
            for h, region in enumerate(_HALVES):
                if _overlap(place.cx, place.cy, place.size, region) >= MIN_OVERLAP:
                    halves_B4S[b, h, s] = 1.0
            for q, region in enumerate(_QUADRANTS):
                if _overlap(place.cx, place.cy, place.size, region) >= MIN_OVERLAP:
                    quadrant_shapes_B4S[b, q, s] = 1.0
                    quadrant_colours_B4C[b, q, c] = 1.0
    return {"count": count_B, "halves_shapes": halves_B4S.flatten(1), "colours": colours_BC,
            "quadrant_shapes": quadrant_shapes_B4S, "quadrant_colours": quadrant_colours_B4C}


class LayoutProbe(nn.Module):
    """Linear heads from the 1×1 and 2×2 queries (latent width C) to the layout targets.

    With ``colours=False`` the colour targets are left out (the heads still predict them, untrained):
    codes that name shapes but not colour–shape pairs, so that a pair the generator never saw is not a
    code of its own (docs/next_scale.md, "The layout generator").
    """

    def __init__(self, latent_channels: int, colours: bool = True) -> None:
        super().__init__()
        self.colours = colours
        num_shapes, num_colours = len(SHAPES), len(COLOURS)
        self.global_head = nn.Linear(latent_channels, MAX_OBJECTS + 4 * num_shapes + num_colours)
        self.quadrant_head = nn.Linear(latent_channels, num_shapes + num_colours)

    def forward(self, query1_BC11: torch.Tensor, query2_BC22: torch.Tensor,
                targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, metrics): count cross-entropy plus the mean binary cross-entropy of the rest."""
        shapes = len(SHAPES)
        global_BK = self.global_head(query1_BC11.flatten(1))
        count_logits_B4, halves_B, colours_B = global_BK.split([MAX_OBJECTS, 4 * shapes, len(COLOURS)], dim=1)
        quadrant_B4K = self.quadrant_head(query2_BC22.flatten(2).transpose(1, 2))  # row-major quadrants
        quadrant_shapes_B4S, quadrant_colours_B4C = quadrant_B4K.split([shapes, len(COLOURS)], dim=2)
        count_loss = F.cross_entropy(count_logits_B4, targets["count"])
        global_loss = F.binary_cross_entropy_with_logits(halves_B, targets["halves_shapes"])
        quadrant_loss = F.binary_cross_entropy_with_logits(quadrant_shapes_B4S, targets["quadrant_shapes"])
        if self.colours:
            global_loss = global_loss + F.binary_cross_entropy_with_logits(colours_B, targets["colours"])
            quadrant_loss = quadrant_loss + F.binary_cross_entropy_with_logits(quadrant_colours_B4C,
                                                                               targets["quadrant_colours"])
        loss = count_loss + global_loss + quadrant_loss
        count_accuracy = (count_logits_B4.argmax(1) == targets["count"]).float().mean()
        return loss, {"layout": loss.item(), "count_acc": count_accuracy.item(), "quadrant": quadrant_loss.item()}
