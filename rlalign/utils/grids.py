"""Image grids with text labels, for sample sheets, evaluations and the showcase."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from rlalign.utils.files import atomic_path


def save_grid(
    images: torch.Tensor,
    labels: list[str],
    path: str | Path,
    *,
    columns: int = 8,
    scale: int = 4,
    label_lines: int = 3,
) -> Path:
    """Save images [B, 3, H, W] in [0, 1] as a PNG grid, each tile captioned by its label.

    Tiles are upscaled by `scale` with nearest-neighbour so small images stay crisp. The file is
    written to a temporary name and renamed, so an interrupted save never leaves a broken PNG.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"save_grid expects images [B, 3, H, W], got {tuple(images.shape)}")
    if len(labels) != images.shape[0]:
        raise ValueError(f"save_grid got {len(labels)} labels for {images.shape[0]} images")
    font = ImageFont.load_default(size=11)
    tile_h, tile_w = images.shape[2] * scale, images.shape[3] * scale
    chars_per_line = max(8, tile_w // 6)
    text_h = 13 * label_lines + 4
    rows = -(-images.shape[0] // columns)
    sheet = Image.new("RGB", (columns * (tile_w + 4) + 4, rows * (tile_h + text_h + 4) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    pixels_BHW3 = (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round()
    for index, (pixels_HW3, label) in enumerate(zip(pixels_BHW3.astype(np.uint8), labels)):
        x = 4 + (index % columns) * (tile_w + 4)
        y = 4 + (index // columns) * (tile_h + text_h + 4)
        tile = Image.fromarray(pixels_HW3).resize((tile_w, tile_h), Image.NEAREST)
        sheet.paste(tile, (x, y))
        lines = textwrap.wrap(label, chars_per_line)[:label_lines]
        draw.multiline_text((x, y + tile_h + 2), "\n".join(lines), fill=(0, 0, 0), font=font, spacing=2)
    image_kind = image_format(path)  # before atomic_path, which creates the folders of the path it is given
    with atomic_path(path) as partial:
        sheet.save(partial, format=image_kind)
    return Path(path)


def image_format(path: str | Path) -> str:
    """The Pillow format a file name asks for (.png, .jpg/.jpeg, .webp); another suffix is refused, so
    `x.jpg` never holds PNG bytes, and so is a path that cannot be an image file (empty, a directory)."""
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    named = ", ".join(formats)
    path = Path(path)
    if not path.name:  # "" or "." (Path drops a trailing slash, so "dir/" still has a name)
        raise ValueError(f"the image file name is empty ({str(path)!r}); pass a file name such as samples.png")
    if path.is_dir():
        raise ValueError(f"{path} is a directory; pass a file name in it, such as {path / 'samples.png'}")
    if path.name.lower() in formats:  # `.png`: Path reads a name that is only a suffix as a hidden file's name
        raise ValueError(f"{path} is only a suffix; give the file a name, such as samples{path.name}")
    if path.suffix.lower() not in formats:
        if path.suffix:
            raise ValueError(f"{path}: cannot write a {path.suffix!r} image; name the file with one of {named}")
        raise ValueError(f"{path}: an image file name ends in {named} (got no suffix); pass a file name, not a directory")
    return formats[path.suffix.lower()]
