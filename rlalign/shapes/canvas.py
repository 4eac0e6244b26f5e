"""The Shapes canvas: its size, the colour palette and where an object is drawn (a Placement).

Kept apart from the prompt grammar (scene.py) so the renderer needs only this module, and a Scene can
draw itself (`Scene.image`) without the two modules importing each other.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Placement:
    """Where one object is drawn: bounding-box centre and side length, in pixels."""

    cx: float
    cy: float
    size: float
