"""Infinity's scale schedules and its 2-D rotary position table.

An Infinity sample is K token maps of growing size (h_k, w_k), one map per step. The public models
use a fixed table of schedules: for each aspect-ratio template (h/w) the 13 scales of the "1M"
schedule, and the shorter "0.60M", "0.25M" and "0.06M" schedules as its first 12, 10 and 7 scales
(Infinity `infinity/utils/dynamic_resolution.py`, commit 4c27bbb: `ratio2hws`, lines 5-15; the
inverse ratios swap h and w, lines 18-22; the lengths 7/10/12/13, line 27). A VAE token covers 16×16
pixels, so the 1M schedule of 1:1 ends at 64×64 tokens, 1024×1024 pixels.

Rotary positions (RoPE-2d, `infinity/models/basic.py` lines 37-95 and 98-117): every self-attention
rotates q and k by the token's (row, column) on the grid of the template's 1M schedule. A token at
(i, j) of an h×w map takes grid position (round(i·H/h), round(j·W/w)) with (H, W) the last 1M scale
(`rope2d_normalized_by_hw = 2`, the public models' setting). The reference builds one table for the
whole 1M schedule and, for any schedule of the same template, slices it at the count of tokens of
the earlier scales (basic.py:103-108); this module does the same. A schedule that is a prefix of the
template's 1M schedule (every named one) thus gets its own maps' positions; any other schedule gets,
as in the reference (where it must first be registered in its table), the positions of the 1M
schedule's tokens at the same offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SCALES_1M: dict[float, list[tuple[int, int]]] = {
    1.000: [(1, 1), (2, 2), (4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32), (40, 40), (48, 48), (64, 64)],
    1.250: [(1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28), (45, 36), (55, 44), (70, 56)],
    1.333: [(1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27), (48, 36), (60, 45), (72, 54)],
    1.500: [(1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26), (48, 32), (63, 42), (78, 52)],
    1.750: [(1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24), (56, 32), (70, 40), (84, 48)],
    2.000: [(1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23), (60, 30), (74, 37), (90, 45)],
    2.500: [(1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20), (65, 26), (80, 32), (100, 40)],
    3.000: [(1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18), (72, 24), (90, 30), (111, 37)],
}
"""h/w template → the 13 (h, w) token maps of its 1M schedule (templates h/w > 1; their inverses below)."""
for _ratio, _scales in list(SCALES_1M.items()):
    if _ratio != 1.0:  # w/h templates: the same maps transposed, keyed as the reference truncates 1/ratio
        SCALES_1M[int(1 / _ratio * 1000) / 1000] = [(w, h) for h, w in _scales]

RESOLUTIONS: dict[str, int] = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}
"""Schedule name → its number of scales (a prefix of the 1M schedule)."""
VAE_STRIDE = 16
"""Pixels per VAE token along each side (16 without spatial patchify)."""
ROPE_GRID = 2048 // 16
"""Side of the square grid of rotary positions the reference precomputes (basic.py:37)."""


def template_ratio(h_div_w: float) -> float:
    """The nearest aspect-ratio template to h/w, as the reference picks it (np.argmin of |h/w − t|)."""
    return min(SCALES_1M, key=lambda template: abs(template - h_div_w))


def schedule(resolution: str = "1M", h_div_w: float = 1.0, num_scales: int | None = None) -> list[tuple[int, int]]:
    """The (h, w) maps of a named schedule for the template nearest to h/w, optionally its first scales."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown Infinity resolution {resolution!r}; choose one of {', '.join(RESOLUTIONS)}")
    scales = SCALES_1M[template_ratio(h_div_w)][: RESOLUTIONS[resolution]]
    if num_scales is not None:
        if not 1 <= num_scales <= len(scales):
            raise ValueError(f"num_scales (policy.infinity.num_scales) must be 1..{len(scales)} for the {resolution} "
                             f"schedule, got {num_scales}")
        scales = scales[:num_scales]
    return list(scales)


def rope_angles(head_dim: int, template: float, normalized_by_hw: int = 2, base: float = 10000.0) -> Tensor:
    """cos/sin of the rotary angles of every token of the template's 1M schedule: [2, L_1M, head_dim/2].

    The head's dimensions pair up (2i, 2i+1); the first half of the pairs rotate with the row, the
    second half with the column, at frequencies 1/base^(2j/(head_dim/2)) (basic.py:39-51).
    """
    if head_dim % 4:
        raise ValueError(f"RoPE-2d needs a head dimension divisible by 4, got {head_dim}")
    half = head_dim // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, dtype=torch.int64).float() / half))  # [half/2]
    positions = torch.arange(ROPE_GRID, dtype=torch.int64).float()
    rows_GF, cols_GF = torch.outer(positions, inv_freq), torch.outer(positions, inv_freq)
    grid_GGF = torch.cat([rows_GF[:, None, :].expand(-1, ROPE_GRID, -1),
                          cols_GF[None, :, :].expand(ROPE_GRID, -1, -1)], dim=-1)  # [G, G, half]
    grid_2GGF = torch.stack([grid_GGF.cos(), grid_GGF.sin()])
    scales = SCALES_1M[template]
    last_h, last_w = scales[-1]
    per_scale = []
    for h, w in scales:
        if normalized_by_hw == 2:  # each map spread over the last map's grid (basic.py:68-77)
            rows = (torch.arange(h) * (last_h / h)).reshape(h, 1).expand(h, w)
            cols = (torch.arange(w) * (last_w / w)).reshape(1, w).expand(h, w)
            index = torch.stack([rows, cols], dim=-1).round().int().reshape(-1, 2)
            table = grid_2GGF[:, index[:, 0], index[:, 1], :]
        elif normalized_by_hw == 1:  # the grid's covered part bilinearly resized to h×w (basic.py:60-67)
            up_h, up_w = _covered_grid(last_h, last_w)
            table = F.interpolate(grid_2GGF[:, :up_h, :up_w, :].permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                  align_corners=True).permute(0, 2, 3, 1)
        elif normalized_by_hw == 0:  # plain integer positions (basic.py:78-79)
            table = grid_2GGF[:, :h, :w, :]
        else:
            raise ValueError(f"rope2d_normalized_by_hw must be 0, 1 or 2, got {normalized_by_hw}")
        per_scale.append(table.reshape(2, h * w, half))
    return torch.cat(per_scale, dim=1)


def _covered_grid(last_h: int, last_w: int) -> tuple[int, int]:
    """The part of the square position grid that the last map's aspect ratio covers (basic.py:56-59)."""
    if last_h >= last_w:
        return ROPE_GRID, int(ROPE_GRID / last_h * last_w)
    return int(ROPE_GRID / last_w * last_h), ROPE_GRID


def scale_bounds(scales: Sequence[tuple[int, int]]) -> list[int]:
    """Token offsets [0, n_1, n_1 + n_2, …, L] of the scales in the flattened sequence."""
    bounds = [0]
    for h, w in scales:
        bounds.append(bounds[-1] + h * w)
    return bounds


def check_schedule(scales: Sequence[tuple[int, int]], template: float) -> None:
    """Refuse a schedule longer than the template's rotary table (only its length is checked: a schedule
    that is not a prefix of the 1M one takes the table's positions at its offsets, as the reference does)."""
    table_len = sum(h * w for h, w in SCALES_1M[template])
    if scale_bounds(scales)[-1] > table_len:
        raise ValueError(f"schedule {list(scales)} has more tokens than the 1M schedule of aspect ratio {template} "
                         f"({table_len}); use a prefix of {SCALES_1M[template]}")
    if any(h < 1 or w < 1 for h, w in scales):
        raise ValueError(f"every scale needs h, w >= 1, got {list(scales)}")


def image_size(scales: Sequence[tuple[int, int]], vae_stride: int = VAE_STRIDE) -> tuple[int, int]:
    """Pixels (H, W) of the image a schedule decodes to."""
    h, w = scales[-1]
    return h * vae_stride, w * vae_stride

