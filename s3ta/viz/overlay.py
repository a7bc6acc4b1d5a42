"""Attention overlays: each head's map upsampled to the frame (``s3ta.analysis.geometry``'s exact
cell <-> pixel mapping) and alpha-blended on it in the head's own colour; bright = attended.
Pure NumPy on uint8 RGB frames [H, W, 3]; maps are [N, h, w]. Shape letters as in s3ta.agents.core.
"""

from __future__ import annotations

import numpy as np

from s3ta.analysis.geometry import upsample

# One colour per head, distinct on dark Atari backgrounds and on each other.
HEAD_COLOURS = np.array([
    (255, 64, 64), (0, 200, 255), (255, 215, 0), (200, 90, 255),
    (60, 255, 110), (255, 140, 0), (255, 100, 200), (150, 170, 255),
], np.uint8)


def head_colour(head: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in HEAD_COLOURS[head % len(HEAD_COLOURS)])


def head_hex(head: int) -> str:
    return "#%02x%02x%02x" % head_colour(head)


def alpha_maps(maps: np.ndarray, height: int, width: int, mode: str = "nearest",
               opacity: float = 0.7) -> np.ndarray:
    """[N, H, W] blending weights in [0, opacity]: each map rescaled from its own [min, max] to
    [0, 1], so a head's most attended cell is fully coloured and its least attended shows the frame
    (for a trained agent min is about 0, so this is the usual "scaled by the maximum")."""
    maps = np.asarray(maps, np.float32)
    low = maps.min(axis=(-1, -2), keepdims=True)
    spread = maps.max(axis=(-1, -2), keepdims=True) - low
    scaled = (maps - low) / np.where(spread > 0, spread, 1.0)
    return np.clip(upsample(scaled, height, width, mode), 0.0, 1.0) * opacity


def blend(frame: np.ndarray, alphas: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Blend colours [N, 3] (or per-pixel [N, H, W, 3]) onto frame [H, W, 3] with alphas [N, H, W].

    Order-independent: the total alpha is 1 - prod(1 - a_n) and the overlay colour the alpha-weighted
    mean of the heads' colours, so where one head attends its colour shows at its own alpha.
    """
    frame = np.asarray(frame, np.float32)
    alphas = np.asarray(alphas, np.float32)
    colours = np.asarray(colours, np.float32)
    if colours.ndim == 2:
        colours = colours[:, None, None, :]
    total = 1.0 - np.prod(1.0 - alphas, axis=0)  # [H, W]
    weight = alphas.sum(axis=0)
    mixed = (alphas[..., None] * colours).sum(axis=0) / np.where(weight > 0, weight, 1.0)[..., None]
    out = frame * (1.0 - total[..., None]) + mixed * total[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def overlay(frame: np.ndarray, maps: np.ndarray, heads: list[int] | None = None, mode: str = "nearest",
            opacity: float = 0.7) -> np.ndarray:
    """Frame [H, W, 3] uint8 with the chosen heads' maps [N, h, w] blended in their colours."""
    heads = list(range(len(maps))) if heads is None else list(heads)
    if not heads:
        return np.asarray(frame, np.uint8).copy()
    height, width = frame.shape[:2]
    alphas = alpha_maps(np.asarray(maps)[heads], height, width, mode, opacity)
    return blend(frame, alphas, np.array([head_colour(h) for h in heads]))


def what_where_overlay(frame: np.ndarray, attention: np.ndarray, balanced: np.ndarray, mode: str = "nearest",
                       opacity: float = 0.8) -> np.ndarray:
    """One head's what/where picture: colour from ``whatwhere.colours(balanced)`` [h, w], alpha from
    its attention [h, w] (so unattended positions show the frame)."""
    from s3ta.analysis.whatwhere import colours

    height, width = frame.shape[:2]
    alpha = alpha_maps(attention[None], height, width, mode, opacity)  # [1, H, W]
    rgb = upsample(np.moveaxis(colours(balanced), -1, 0), height, width, mode)  # [3, H, W]
    return blend(frame, alpha, (np.moveaxis(rgb, 0, -1) * 255.0)[None])


def heatmap_overlay(frame: np.ndarray, heat: np.ndarray, colour: tuple[int, int, int] = (255, 60, 60),
                    opacity: float = 0.8) -> np.ndarray:
    """A full-resolution map [H, W] (e.g. saliency) blended in one colour, scaled by its maximum."""
    heat = np.asarray(heat, np.float32)
    peak = heat.max()
    alpha = (heat / peak if peak > 0 else heat) * opacity
    return blend(frame, alpha[None], np.array([colour]))


def scale_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (pixels stay square and sharp)."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image
