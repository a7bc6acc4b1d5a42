"""Shared machinery of the built-in pixel tasks: objects on a grid of square cells.

Owns the sprites, the vectorised renderer and box computation, and ``GridTask``, the base
class that turns a task's ``_new_episodes`` / ``_advance`` / ``_objects`` into a VecEnv.
Shape letters: B envs, K objects per env, G cells per side, P pixels per cell, S = G * P.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import numpy as np

from s3ta.envs._common import EpisodeTracker, check_actions, check_num_envs
from s3ta.envs.base import TimeStep

SHAPES = ("disc", "bar", "square", "plus", "ring")


class Kind(NamedTuple):
    """How one kind of object looks and what its boxes are labelled."""

    label: str
    shape: str  # one of SHAPES
    colour: tuple[int, int, int]  # RGB; background is black


def sprite(shape: str, cell: int) -> np.ndarray:
    """Boolean [P, P] mask of ``shape`` in a cell of ``cell`` pixels.

    Objects other than "ring" and "bar" keep a margin, so a "ring" (the cursor) never overlaps them.
    """
    margin = max(1, cell // 8)
    mask = np.zeros((cell, cell), bool)
    inner = slice(margin, cell - margin)
    if shape == "disc":
        u = (np.arange(cell) + 0.5) / cell - 0.5
        mask[:] = u[:, None] ** 2 + u[None, :] ** 2 <= (0.5 - margin / cell) ** 2
    elif shape == "bar":
        mask[cell // 2 : cell - margin, :] = True
    elif shape == "square":
        mask[inner, inner] = True
    elif shape == "plus":
        thick = max(2, cell // 4)
        mid = slice((cell - thick) // 2, (cell - thick) // 2 + thick)
        mask[mid, inner] = True
        mask[inner, mid] = True
    elif shape == "ring":
        mask[:] = True
        mask[inner, inner] = False
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return mask


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Tight half-open (x0, y0, x1, y1) box of a non-empty [P, P] mask, float32 [4]."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def render(
    kind_ids: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    sprites: np.ndarray,
    colours: np.ndarray,
    grid: int,
) -> np.ndarray:
    """Draw K objects per env, later objects over earlier ones; returns uint8 [B, 3, S, S].

    ``kind_ids``, ``rows``, ``cols``: int [B, K]; ``sprites``: bool [T, P, P];
    ``colours``: uint8 [T, 3].
    """
    num_envs, num_objects = kind_ids.shape
    cell = sprites.shape[1]
    img = np.zeros((num_envs, 3, grid, cell, grid, cell), np.uint8)  # [B, RGB, Gy, Py, Gx, Px]
    env = np.arange(num_envs)
    for k in range(num_objects):  # K is small; every line below is vectorised over B
        where = (env, slice(None), rows[:, k], slice(None), cols[:, k])  # selects [B, RGB, Py, Px]
        mask = sprites[kind_ids[:, k]][:, None]  # [B, 1, P, P]
        colour = colours[kind_ids[:, k]][:, :, None, None]  # [B, 3, 1, 1]
        img[where] = np.where(mask, colour, img[where])
    return img.reshape(num_envs, 3, grid * cell, grid * cell)


def boxes(
    kind_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray, sprite_boxes: np.ndarray, cell: int
) -> np.ndarray:
    """Pixel boxes (x0, y0, x1, y1), half-open, of K objects per env: float32 [B, K, 4]."""
    offset = np.stack([cols, rows, cols, rows], axis=-1) * cell  # [B, K, 4]
    return sprite_boxes[kind_ids] + offset.astype(np.float32)


class GridTask(abc.ABC):
    """Base of the built-in tasks. Subclasses set ``KINDS``, ``action_names`` and the 3 hooks."""

    KINDS: tuple[Kind, ...] = ()
    action_names: tuple[str, ...] = ()
    frames_per_step = 1

    def __init__(self, num_envs: int, seed: int | None = None, size: int = 64, grid: int = 8):
        self.num_envs = check_num_envs(num_envs)
        if size % 8 or grid < 2 or size % grid or size // grid < 6:
            raise ValueError(
                "size must be a multiple of 8 and of grid, with cells of at least 6 pixels "
                f"(so shapes stay distinct); got size={size}, grid={grid}"
            )
        self.size, self.grid, self.cell = size, grid, size // grid
        self.observation_shape = (3, size, size)
        self.num_actions = len(self.action_names)
        self._sprites = np.stack([sprite(k.shape, self.cell) for k in self.KINDS])  # [T, P, P]
        self._colours = np.array([k.colour for k in self.KINDS], np.uint8)  # [T, 3]
        self._sprite_boxes = np.stack([mask_box(m) for m in self._sprites])  # [T, 4]
        self._labels = np.array([k.label for k in self.KINDS])
        self._rng = np.random.default_rng(seed)
        self._episodes = EpisodeTracker(self.num_envs)
        self._started = False

    # --- hooks for subclasses -------------------------------------------------------------
    @abc.abstractmethod
    def _new_episodes(self, mask: np.ndarray) -> None:
        """Start new episodes (random state from ``self._rng``) where bool [B] ``mask``."""

    @abc.abstractmethod
    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Apply int64 [B] actions; return reward float32 [B], terminated [B], truncated [B]."""

    @abc.abstractmethod
    def _objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current objects as int [B, K] kind ids (into ``KINDS``), rows and columns."""

    # --- VecEnv ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> TimeStep:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._new_episodes(np.ones(self.num_envs, bool))
        self._started = True
        return self._episodes.first(*self._observe(np.zeros(self.num_envs, bool)))

    def step(self, actions: np.ndarray) -> TimeStep:
        if not self._started:
            raise RuntimeError("call reset() before step()")
        actions = check_actions(actions, self.num_envs, self.num_actions)
        reward, terminated, truncated = self._advance(actions)
        done = terminated | truncated
        if done.any():
            self._new_episodes(done)
        obs, info = self._observe(truncated & ~terminated)
        return self._episodes.step(obs, reward, done, info)

    def close(self) -> None:
        pass

    def _observe(self, truncated: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        kind_ids, rows, cols = self._objects()
        obs = render(kind_ids, rows, cols, self._sprites, self._colours, self.grid)
        box = boxes(kind_ids, rows, cols, self._sprite_boxes, self.cell)
        labels = self._labels[kind_ids].tolist()  # [B][K] str
        return obs, {"boxes": list(box), "box_labels": labels, "truncated": truncated}
