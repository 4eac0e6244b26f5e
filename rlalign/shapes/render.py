"""Rasterise Shapes scenes: anti-aliased coloured shapes on a black 32×32 canvas.

Each object's coverage of every pixel is estimated by 4×4 supersampling, so edges are soft as in
natural images; objects never overlap (placement guarantees a gap), so the image is the sum of
coverage × colour over objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from rlalign.shapes.canvas import CANVAS, PALETTE, Placement

if TYPE_CHECKING:
    from rlalign.shapes.scene import Scene

_SUPERSAMPLE = 4


def _subpixel_grid() -> tuple[np.ndarray, np.ndarray]:
    # Centres of the supersampled cells, in canvas pixel units: pixel (row i, col j) spans
    # [j, j+1) × [i, i+1), and holds _SUPERSAMPLE² cells.
    step = 1.0 / _SUPERSAMPLE
    coords = (np.arange(CANVAS * _SUPERSAMPLE) + 0.5) * step
    return np.meshgrid(coords, coords, indexing="xy")  # x_HW, y_HW


_X_HW, _Y_HW = _subpixel_grid()


def _inside(shape: str, place: Placement) -> np.ndarray:
    """Boolean mask over the supersampled grid of the points inside one shape."""
    dx, dy, half = _X_HW - place.cx, _Y_HW - place.cy, place.size / 2
    if shape == "circle":
        return dx * dx + dy * dy <= half * half
    if shape == "square":
        return (np.abs(dx) <= half) & (np.abs(dy) <= half)
    if shape == "triangle":
        # Isosceles, pointing up: apex at (cx, cy - half), base from (cx ± half, cy + half).
        depth = (dy + half) / place.size  # 0 at the apex, 1 at the base
        return (depth >= 0) & (depth <= 1) & (np.abs(dx) <= depth * half)
    raise ValueError(f"unknown shape {shape!r}")


def coverage(shape: str, place: Placement) -> np.ndarray:
    """Fraction of each canvas pixel covered by the shape: [CANVAS, CANVAS] in [0, 1]."""
    mask = _inside(shape, place).astype(np.float32)
    return mask.reshape(CANVAS, _SUPERSAMPLE, CANVAS, _SUPERSAMPLE).mean(axis=(1, 3))


def render(scene: Scene) -> torch.Tensor:
    """One scene as a float32 image [3, 32, 32] in [0, 1]."""
    image_HW3 = np.zeros((CANVAS, CANVAS, 3), dtype=np.float32)
    for obj, colour, place in zip(scene.spec.objects, scene.colours, scene.placements):
        image_HW3 += coverage(obj.shape, place)[..., None] * np.asarray(PALETTE[colour], np.float32)
    return torch.from_numpy(np.clip(image_HW3, 0.0, 1.0)).permute(2, 0, 1).contiguous()


def render_batch(scenes: list[Scene]) -> torch.Tensor:
    """Scenes as a float32 batch [B, 3, 32, 32] in [0, 1]."""
    return torch.stack([render(scene) for scene in scenes])
