"""Rendering: right size and range, exact colours inside, analytic areas, black background."""

import math

import pytest
import torch

from rlalign.shapes import PALETTE, ObjectSpec, Placement, Scene, SceneSpec, render, render_batch
from rlalign.shapes.render import coverage


def one(colour, shape, cx=16.0, cy=16.0, size=12.0):
    return Scene(SceneSpec((ObjectSpec(colour, shape),), "center"), (Placement(cx, cy, size),))


def test_image_shape_range_and_background():
    image = render(one("red", "square"))
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1
    assert image[:, :8, :8].abs().max() == 0  # a corner far from the object stays black


def test_interior_pixels_have_the_palette_colour():
    image = render(one("purple", "circle"))
    assert torch.allclose(image[:, 16, 16], torch.tensor(PALETTE["purple"]))


@pytest.mark.parametrize(
    "shape, area",
    [("circle", math.pi * 5.5**2), ("square", 11.0**2), ("triangle", 11.0**2 / 2)],
)
def test_coverage_integrates_to_the_analytic_area(shape, area):
    # size 11 at a sub-pixel offset: 4×4 supersampling must get within 3% of the exact area
    # (measured: circle 95.19 vs 95.03, square 121.0 vs 121.0, triangle 61.88 vs 60.5).
    measured = coverage(shape, Placement(15.3, 16.7, 11.0)).sum()
    assert abs(measured - area) / area < 0.03


def test_triangle_points_up():
    cover = coverage("triangle", Placement(16.0, 16.0, 12.0))
    assert cover[10:13].sum() < cover[19:22].sum() / 3  # top rows far narrower than bottom rows


def test_batch_matches_single_renders():
    scenes = [one("red", "square"), one("cyan", "triangle", cx=9, cy=20, size=8)]
    assert torch.equal(render_batch(scenes)[1], render(scenes[1]))
