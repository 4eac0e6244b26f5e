"""Sample grids: size follows the layout; bad inputs are named."""

import pytest
import torch
from PIL import Image

from rlalign.utils.grids import save_grid


def test_grid_layout_and_pixels(tmp_path):
    images = torch.zeros(5, 3, 8, 8)
    images[0, 0] = 1.0  # first tile pure red
    path = save_grid(images, [f"image {i}" for i in range(5)], tmp_path / "grid.png", columns=4, scale=2, label_lines=1)
    sheet = Image.open(path)
    # 4 columns of (16 + 4) + 4 px; 2 rows of (16 + 17 text + 4) + 4 px
    assert sheet.size == (4 * 20 + 4, 2 * 37 + 4)
    assert sheet.getpixel((4 + 3, 4 + 3)) == (255, 0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary file left behind


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(ValueError, match="2 labels for 3 images"):
        save_grid(torch.zeros(3, 3, 8, 8), ["a", "b"], tmp_path / "g.png")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        save_grid(torch.zeros(3, 8, 8), ["a"] * 3, tmp_path / "g.png")
