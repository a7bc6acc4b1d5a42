"""Helpers shared by every s3ta environment: action checking and episode bookkeeping.

Keeps the TimeStep conventions of ``base.py`` (done / episode_return / episode_length) in one place.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s3ta.envs.base import TimeStep


def check_actions(actions: Any, num_envs: int, num_actions: int) -> np.ndarray:
    """Return ``actions`` as an int64 array [B], or raise ValueError naming what is wrong."""
    actions = np.asarray(actions)
    if actions.shape != (num_envs,):
        raise ValueError(f"actions must have shape ({num_envs},), got {actions.shape}")
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
    if num_envs and (actions.min() < 0 or actions.max() >= num_actions):
        raise ValueError(f"actions must lie in [0, {num_actions}), got {actions.tolist()}")
    return actions.astype(np.int64, copy=False)


def check_num_envs(num_envs: Any) -> int:
    if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
    return int(num_envs)


class EpisodeTracker:
    """Running raw return and length (agent steps) of each env's current episode."""

    def __init__(self, num_envs: int):
        self._return = np.zeros(num_envs, np.float64)  # [B]
        self._length = np.zeros(num_envs, np.int64)  # [B]

    def first(self, obs: np.ndarray, info: dict[str, Any]) -> TimeStep:
        """Forget running episodes and return the TimeStep of a full reset."""
        num_envs = len(self._return)
        self._return[:] = 0.0
        self._length[:] = 0
        return TimeStep(
            obs=obs,
            reward=np.zeros(num_envs, np.float32),
            done=np.ones(num_envs, bool),
            episode_return=np.full(num_envs, np.nan),
            episode_length=np.zeros(num_envs, np.int64),
            info=info,
        )

    def step(
        self, obs: np.ndarray, reward: np.ndarray, done: np.ndarray, info: dict[str, Any]
    ) -> TimeStep:
        """Add one step's raw ``reward``; report and restart the episodes that ended (``done``)."""
        self._return += reward
        self._length += 1
        episode_return = np.where(done, self._return, np.nan)
        episode_length = np.where(done, self._length, 0)
        self._return[done] = 0.0
        self._length[done] = 0
        return TimeStep(
            obs, reward.astype(np.float32, copy=False), done, episode_return, episode_length, info
        )
