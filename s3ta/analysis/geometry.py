"""Where each attention cell lies in the frame: the one cell <-> pixel mapping used by overlays,
grounding, masking and injection, so that no two tools disagree by a pixel.

Cell i of an h-cell axis covers the frame rows y whose pixel centre falls in it:
``cell(y) = floor((y + 0.5) * h / H)`` (PyTorch's "nearest-exact", i.e. half-pixel centres,
the same convention as bilinear with ``align_corners=False``). For 64x64 frames and 8x8 maps,
cell i is exactly pixels [8i, 8i + 8). Shape letters: N heads, h x w map, H x W frame.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def cell_index(pixels: int, cells: int) -> np.ndarray:
    """int64 [pixels]: the cell of each pixel along one axis."""
    if pixels < 1 or cells < 1:
        raise ValueError(f"need pixels, cells >= 1, got {pixels}, {cells}")
    index = np.floor((np.arange(pixels) + 0.5) * cells / pixels).astype(np.int64)
    return np.minimum(index, cells - 1)


def cell_bounds(pixels: int, cells: int) -> np.ndarray:
    """int64 [cells, 2]: the half-open pixel range [start, stop) of each cell along one axis."""
    index = cell_index(pixels, cells)
    starts = np.searchsorted(index, np.arange(cells), side="left")
    stops = np.searchsorted(index, np.arange(cells), side="right")
    return np.stack([starts, stops], axis=1)


def upsample(maps: np.ndarray, height: int, width: int, mode: str = "nearest") -> np.ndarray:
    """Resample maps [..., h, w] to [..., H, W] ("nearest": each pixel takes its cell's value;
    "bilinear": interpolated between cell centres, same geometry). Values are not renormalised."""
    maps = np.asarray(maps, np.float32)
    h, w = maps.shape[-2:]
    if mode == "nearest":
        return maps[..., cell_index(height, h)[:, None], cell_index(width, w)[None, :]]
    if mode == "bilinear":
        flat = torch.from_numpy(np.ascontiguousarray(maps.reshape(-1, 1, h, w)))
        out = F.interpolate(flat, size=(height, width), mode="bilinear", align_corners=False)
        return out.numpy().reshape(*maps.shape[:-2], height, width)
    raise ValueError(f"upsample mode must be 'nearest' or 'bilinear', got {mode!r}")


def cell_areas(height: int, width: int, h: int, w: int) -> np.ndarray:
    """float32 [h, w]: pixels covered by each cell."""
    rows = np.bincount(cell_index(height, h), minlength=h)
    cols = np.bincount(cell_index(width, w), minlength=w)
    return (rows[:, None] * cols[None, :]).astype(np.float32)


def pixel_mass(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Spread each cell's mass evenly over its pixels: [..., h, w] -> [..., H, W], same total."""
    maps = np.asarray(maps, np.float32)
    h, w = maps.shape[-2:]
    return upsample(maps / cell_areas(height, width, h, w), height, width, "nearest")


def box_mask(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [H, W]: pixels inside any of the half-open boxes [K, 4] (x0, y0, x1, y1); NaN rows skipped."""
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
        if np.isnan(x0):
            continue
        # A pixel (x, y) is inside when its centre x + 0.5 lies in [x0, x1).
        xa, xb = int(np.clip(np.ceil(x0 - 0.5), 0, width)), int(np.clip(np.ceil(x1 - 0.5), 0, width))
        ya, yb = int(np.clip(np.ceil(y0 - 0.5), 0, height)), int(np.clip(np.ceil(y1 - 0.5), 0, height))
        mask[ya:yb, xa:xb] = True
    return mask


def cell_footprint(row: int, col: int, height: int, width: int, h: int, w: int) -> tuple[int, int, int, int]:
    """Half-open pixel box (x0, y0, x1, y1) of attention cell (row, col)."""
    (y0, y1), (x0, x1) = cell_bounds(height, h)[row], cell_bounds(width, w)[col]
    return int(x0), int(y0), int(x1), int(y1)
