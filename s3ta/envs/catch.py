"""``catch``: a ball falls down the grid and a paddle on the bottom row must be under it.

Built-in pixel task (bsuite-style Catch drawn in colour), vectorised over the batch in numpy.
"""

from __future__ import annotations

import numpy as np

from s3ta.envs.grid import GridTask, Kind

BALL = Kind("ball", "disc", (255, 200, 40))
PADDLE = Kind("paddle", "bar", (60, 150, 255))


class Catch(GridTask):
    """Catch on a ``grid`` x ``grid`` board of ``size // grid``-pixel cells (default 8 x 8 of 8 px).

    Each episode the ball starts on the top row at a random column and the paddle on the bottom
    row at a random column. Every step the paddle moves (LEFT / STAY / RIGHT, clipped at the
    walls) and the ball drops one row; when the ball reaches the bottom row the episode ends with
    reward +1 if the paddle is under it, else -1. Episodes last ``grid - 1`` = 7 steps and every
    ball can be caught, so the optimal return is +1.0; a uniformly random policy scores about
    -0.76 (catches about 12% of balls). Obs [B, 3, size, size] uint8 shows the ball (yellow disc)
    and the paddle (blue bar); info boxes are labelled "ball" and "paddle".
    """

    KINDS = (BALL, PADDLE)
    action_names = ("LEFT", "STAY", "RIGHT")

    def __init__(self, num_envs: int, seed: int | None = None, size: int = 64, grid: int = 8):
        super().__init__(num_envs, seed, size, grid)
        self._ball_row = np.zeros(self.num_envs, np.int64)  # [B]
        self._ball_col = np.zeros(self.num_envs, np.int64)  # [B]
        self._paddle_col = np.zeros(self.num_envs, np.int64)  # [B]
        self._kind_ids = np.tile(np.arange(2), (self.num_envs, 1))  # [B, 2]: ball, paddle

    def _new_episodes(self, mask: np.ndarray) -> None:
        n = int(mask.sum())
        self._ball_row[mask] = 0
        self._ball_col[mask] = self._rng.integers(0, self.grid, n)
        self._paddle_col[mask] = self._rng.integers(0, self.grid, n)

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._paddle_col = np.clip(self._paddle_col + actions - 1, 0, self.grid - 1)
        self._ball_row += 1
        terminated = self._ball_row == self.grid - 1
        caught = self._ball_col == self._paddle_col
        reward = np.where(terminated, np.where(caught, 1.0, -1.0), 0.0).astype(np.float32)
        return reward, terminated, np.zeros(self.num_envs, bool)

    def _objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = np.stack([self._ball_row, np.full(self.num_envs, self.grid - 1)], axis=1)
        cols = np.stack([self._ball_col, self._paddle_col], axis=1)
        return self._kind_ids, rows, cols

    def optimal_actions(self) -> np.ndarray:
        """An optimal action in each env's current state, int64 [B] (for tests and demos)."""
        return np.sign(self._ball_col - self._paddle_col) + 1
