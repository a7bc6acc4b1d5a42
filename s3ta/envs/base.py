"""The one batched environment interface every s3ta environment implements.

Shape letters: B = number of environments, C/H/W = observation channels/height/width.
Conventions (TorchBeast-style, auto-reset in the same step):
  * ``reset()`` returns a TimeStep whose ``done`` is all True (every env starts an episode).
  * ``step(actions)`` applies ``actions[b]`` to env b. Where that action ended the episode,
    the returned ``reward[b]`` is the last reward of the old episode, ``done[b]`` is True and
    ``obs[b]`` is already the first observation of the new episode. So ``done[t]`` means
    "an episode starts at this observation", exactly what agents take as ``done``.
  * ``episode_return[b]`` / ``episode_length[b]`` hold the finished episode's raw score and
    its length in agent steps where ``done[b]`` is True, NaN / 0 elsewhere.
  * ``info["truncated"]`` ([B] bool) is in every TimeStep: where ``done[b]``, the episode was cut
    by a time limit / frame cap rather than ended by the game. Built-in tasks add ``boxes`` (B
    float32 [K, 4] arrays of (x0, y0, x1, y1) half-open pixel boxes in ``obs``) and
    ``box_labels`` (B lists of K str); Atari adds ``lives``, ``frame_number``,
    ``episode_frame_number`` (int32 [B], of ``obs``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import numpy as np


class TimeStep(NamedTuple):
    obs: np.ndarray  # [B, C, H, W] uint8
    reward: np.ndarray  # [B] float32, raw (unclipped) reward of the action just taken
    done: np.ndarray  # [B] bool, True where an episode starts at ``obs``
    episode_return: np.ndarray  # [B] float64, raw return of the episode that just ended, else NaN
    episode_length: np.ndarray  # [B] int64, agent steps of the episode that just ended, else 0
    info: dict[str, Any]  # extra per-env data, e.g. ground-truth object boxes


class VecEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together."""

    num_envs: int
    observation_shape: tuple[int, int, int]  # (C, H, W)
    num_actions: int
    frames_per_step: int  # emulator frames per agent step (action repeat), for frame counting
    action_names: tuple[str, ...]

    def reset(self, seed: int | None = None) -> TimeStep: ...

    def step(self, actions: np.ndarray) -> TimeStep: ...

    def close(self) -> None: ...
