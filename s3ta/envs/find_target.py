"""``find-target``: move a cursor onto the one target among distractors, found by its content.

Built-in pixel task for content-based (feature-conjunction) search, vectorised over the batch.
"""

from __future__ import annotations

import numpy as np

from s3ta.envs.grid import GridTask, Kind

RED, GREEN = (230, 40, 40), (40, 200, 60)
CURSOR = Kind("cursor", "ring", (255, 255, 255))
TARGET = Kind("target", "plus", RED)
DISTRACTORS = (  # share the target's colour, its shape, or neither
    Kind("distractor", "square", RED),
    Kind("distractor", "plus", GREEN),
    Kind("distractor", "square", GREEN),
)
_MOVES = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])  # (d_row, d_col) of UP, DOWN, LEFT, RIGHT


class FindTarget(GridTask):
    """Find the red plus on a ``grid`` x ``grid`` board (default 8 x 8 cells of 8 px).

    Each episode the cursor (white cell outline), the target (red plus) and ``num_distractors``
    distractors (red square, green plus or green square, drawn uniformly) are put on distinct
    random cells, so only the target's appearance tells where it is. Actions UP / DOWN / LEFT /
    RIGHT move the cursor (clipped at the walls; it may pass over distractors). Reaching the
    target gives reward +1 and ends the episode; after ``max_steps`` (default 30) steps the
    episode ends with reward 0 (``info["truncated"]`` True). Every target is reachable in at most
    14 steps, so the optimal return is 1.0 (about 5.3 steps on average); a uniformly random
    policy scores about 0.21 with the defaults.
    """

    KINDS = (CURSOR, TARGET, *DISTRACTORS)
    action_names = ("UP", "DOWN", "LEFT", "RIGHT")

    def __init__(
        self,
        num_envs: int,
        seed: int | None = None,
        size: int = 64,
        grid: int = 8,
        num_distractors: int = 4,
        max_steps: int = 30,
    ):
        super().__init__(num_envs, seed, size, grid)
        if not 0 <= num_distractors <= grid * grid - 2:
            raise ValueError(
                f"num_distractors must be in [0, {grid * grid - 2}], got {num_distractors}"
            )
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.num_distractors, self.max_steps = num_distractors, max_steps
        num_objects = num_distractors + 2
        self._cells = np.zeros((self.num_envs, num_objects), np.int64)  # [B, K]: row * G + col
        self._kind_ids = np.zeros((self.num_envs, num_objects), np.int64)  # [B, K]
        self._kind_ids[:, 1] = 1
        self._t = np.zeros(self.num_envs, np.int64)  # [B] steps taken this episode

    def _new_episodes(self, mask: np.ndarray) -> None:
        n, k = int(mask.sum()), self._cells.shape[1]
        cells = self._rng.random((n, self.grid * self.grid)).argsort(axis=1)[:, :k]  # distinct
        self._cells[mask] = cells
        self._kind_ids[mask, 2:] = self._rng.integers(2, len(self.KINDS), (n, k - 2))
        self._t[mask] = 0

    def _advance(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        row, col = np.divmod(self._cells[:, 0], self.grid)
        row = np.clip(row + _MOVES[actions, 0], 0, self.grid - 1)
        col = np.clip(col + _MOVES[actions, 1], 0, self.grid - 1)
        self._cells[:, 0] = row * self.grid + col
        self._t += 1
        terminated = self._cells[:, 0] == self._cells[:, 1]
        truncated = ~terminated & (self._t >= self.max_steps)
        return terminated.astype(np.float32), terminated, truncated

    def _objects(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows, cols = np.divmod(self._cells, self.grid)
        return self._kind_ids, rows, cols

    def optimal_actions(self) -> np.ndarray:
        """A shortest-path action towards the target in each env, int64 [B] (for tests/demos)."""
        (cursor_row, target_row), (cursor_col, target_col) = np.divmod(
            self._cells[:, :2].T, self.grid
        )
        vertical = np.where(target_row < cursor_row, 0, 1)
        horizontal = np.where(target_col < cursor_col, 2, 3)
        return np.where(target_row != cursor_row, vertical, horizontal)
