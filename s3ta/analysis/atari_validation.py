"""Checks the Atari RAM decoders (``atari_objects``) against the screen itself: for each decoded box,
the pixels of its sprite are found by colour in the RGB frame of the same emulator frame, and the
box they span is compared with the decoded box (IoU). Per game and class: the share of decoded
objects whose box matches the pixel-derived box at IoU >= 0.5, over frames of random play.

The sprite of a decoded box [x0, x1) x [y0, y1) is found in a window around it (the box grown by
``margin`` px): its colour is the one whose share of the box's pixels most exceeds its share of the
window's edges beside the box (the edge columns at the box's rows, the edge rows at its columns: water
bands, walls and the background fill them as much as the box, while a sprite displaced by less than
``margin`` stays off them); its
pixels are the connected components (8-neighbours) of that colour in the window that touch the box.
No colour more common in the box than on the edges (the box is on background) counts as IoU 0.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two half-open boxes (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _components(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """bool mask of the 8-connected components of ``mask`` that contain a pixel of ``seeds``."""
    out = np.zeros_like(mask)
    height, width = mask.shape
    queue = deque(zip(*np.nonzero(mask & seeds)))
    for y, x in queue:
        out[y, x] = True
    while queue:
        y, x = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not out[ny, nx]:
                    out[ny, nx] = True
                    queue.append((ny, nx))
    return out


def pixel_box(frame: np.ndarray, box: np.ndarray, margin: int = 8) -> np.ndarray | None:
    """The box (x0, y0, x1, y1) spanned by the sprite pixels of the decoded ``box`` in ``frame``
    [H, W, 3] uint8 (module docstring), or None when the box holds no sprite colour."""
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = (int(np.floor(box[0])), int(np.floor(box[1])), int(np.ceil(box[2])), int(np.ceil(box[3])))
    wx0, wy0, wx1, wy1 = max(x0 - margin, 0), max(y0 - margin, 0), min(x1 + margin, width), min(y1 + margin, height)
    window = frame[wy0:wy1, wx0:wx1].astype(np.int64)
    codes = (window[..., 0] << 16) | (window[..., 1] << 8) | window[..., 2]  # one int per colour
    inside = np.zeros(codes.shape, bool)
    inside[max(y0 - wy0, 0):y1 - wy0, max(x0 - wx0, 0):x1 - wx0] = True
    by0, by1, bx0, bx1 = max(y0 - wy0, 0), y1 - wy0, max(x0 - wx0, 0), x1 - wx0
    # the window's edges beside the box: its rows at the left and right edge, its columns at the top
    # and bottom edge (so horizontal bands and vertical walls are as common there as in the box)
    border = np.concatenate([codes[by0:by1, :2].ravel(), codes[by0:by1, -2:].ravel(),
                             codes[:2, bx0:bx1].ravel(), codes[-2:, bx0:bx1].ravel()])
    values, counts = np.unique(codes[inside], return_counts=True)
    in_border = np.array([(border == v).mean() for v in values])
    score = counts / counts.sum() - in_border  # the sprite's colour: common in the box, rare on the frame
    if score.max() <= 0:
        return None
    colour = values[score.argmax()]
    same = codes == colour
    same[same.all(1)] = False  # a row or column of that colour across the whole window is a band or
    same[:, same.all(0)] = False  # a wall the sprite touches, not part of it
    sprite = _components(same, inside)
    if not sprite.any():
        return None
    ys, xs = np.nonzero(sprite)
    return np.array([xs.min() + wx0, ys.min() + wy0, xs.max() + 1 + wx0, ys.max() + 1 + wy0], np.float64)


def validate_game(game: str, frames: int = 300, seed: int = 0, frame_skip: int = 4, warmup: int = 0,
                  threshold: float = 0.5) -> dict[str, Any]:
    """Play ``frames`` agent steps of uniformly random actions (``frame_skip`` emulator frames each)
    and compare every decoded box of the last emulator frame with its pixel-derived box."""
    from ale_py import ALEInterface, LoggerMode, roms

    from s3ta.analysis.atari_objects import objects_from_ram

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path(game))
    actions = ale.getMinimalActionSet()
    rng = np.random.default_rng(seed)
    per_class: dict[str, list[float]] = {}
    for step in range(warmup + frames):
        action = actions[int(rng.integers(len(actions)))]
        for _ in range(frame_skip):
            ale.act(action)
        if ale.game_over():
            ale.reset_game()
            continue
        if step < warmup:
            continue
        screen, ram = ale.getScreenRGB(), ale.getRAM()
        boxes, labels = objects_from_ram(game, ram)
        for box, label in zip(boxes, labels):
            found = pixel_box(screen, box)
            per_class.setdefault(label, []).append(0.0 if found is None else iou(box, found))
    classes = {label: {"objects": len(v), "match_rate": float(np.mean(np.asarray(v) >= threshold)),
                       "mean_iou": float(np.mean(v))} for label, v in sorted(per_class.items())}
    return {"game": game, "frames": frames, "seed": seed, "threshold": threshold, "classes": classes}
