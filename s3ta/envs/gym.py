"""Any Gymnasium env with image observations and discrete actions, as an s3ta VecEnv.

Owns the checks that an env fits the agents (uint8 image obs, Discrete actions) and the layout
conversion to [B, C, H, W]; batching is ``gymnasium.vector.SyncVectorEnv`` with same-step autoreset.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from s3ta.envs._common import EpisodeTracker, check_actions, check_num_envs
from s3ta.envs.base import TimeStep

_CHANNELS = (1, 3, 4)


def image_layout(space: Any) -> str:
    """Layout ("HWC", "CHW" or "HW") of a uint8 image Box space; ValueError for anything else."""
    from gymnasium import spaces

    shape = getattr(space, "shape", None) or ()
    if isinstance(space, spaces.Box) and space.dtype == np.uint8:
        if len(shape) == 2 and min(shape) >= 8:
            return "HW"
        if len(shape) == 3 and shape[-1] in _CHANNELS and min(shape[:2]) >= 8:
            return "HWC"
        if len(shape) == 3 and shape[0] in _CHANNELS and min(shape[1:]) >= 8:
            return "CHW"
    raise ValueError(
        f"observation space {space} is not an image: s3ta needs a uint8 Box of shape (H, W, C), "
        f"(C, H, W) or (H, W) with C in {_CHANNELS} and H, W >= 8"
    )


class GymEnv:
    """``num_envs`` copies of ``gymnasium.make(env_id, **kwargs)``; frames_per_step is 1.

    Info key ``truncated`` (bool [B]): where done, the episode was cut by a time limit.
    """

    frames_per_step = 1

    def __init__(self, env_id: str, num_envs: int, seed: int | None = None, **kwargs: Any):
        import gymnasium

        self.num_envs = check_num_envs(num_envs)
        autoreset = getattr(gymnasium.vector, "AutoresetMode", None)
        if autoreset is None:
            raise RuntimeError(
                f"s3ta needs gymnasium >= 1.1 (same-step autoreset), found {gymnasium.__version__}"
            )
        try:
            self._env = gymnasium.vector.SyncVectorEnv(
                [partial(gymnasium.make, env_id, **kwargs) for _ in range(self.num_envs)],
                autoreset_mode=autoreset.SAME_STEP,
            )
        except gymnasium.error.DependencyNotInstalled as error:  # e.g. CarRacing without Box2D: say what to install
            raise ValueError(f"{env_id} needs a package that is not installed: {error}") from None
        try:
            self._layout = image_layout(self._env.single_observation_space)
            action_space = self._env.single_action_space
            if not isinstance(action_space, gymnasium.spaces.Discrete):
                raise ValueError(
                    f"{env_id}: s3ta needs a Discrete action space, got {action_space}"
                )
        except ValueError:
            self._env.close()
            raise
        shape = self._env.single_observation_space.shape
        if self._layout == "HW":
            self.observation_shape = (1, shape[0], shape[1])
        elif self._layout == "HWC":
            self.observation_shape = (shape[2], shape[0], shape[1])
        else:
            self.observation_shape = tuple(shape)
        self.num_actions = int(action_space.n)
        self._action_start = int(action_space.start)
        meanings = getattr(self._env.envs[0].unwrapped, "get_action_meanings", None)
        self.action_names = (
            tuple(meanings()) if meanings else tuple(f"ACTION_{i}" for i in range(self.num_actions))
        )
        self._seed = seed  # used by the first reset() that gets no seed of its own
        self._episodes = EpisodeTracker(self.num_envs)

    def reset(self, seed: int | None = None) -> TimeStep:
        """Reset every env; an int seed seeds env b with ``seed + b``."""
        seed, self._seed = (self._seed if seed is None else seed), None
        obs, _ = self._env.reset(seed=seed)
        return self._episodes.first(
            self._convert(obs), {"truncated": np.zeros(self.num_envs, bool)}
        )

    def step(self, actions: np.ndarray) -> TimeStep:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        obs, reward, terminated, truncated, _ = self._env.step(actions + self._action_start)
        info = {"truncated": truncated & ~terminated}
        reward = np.asarray(reward, np.float32)
        return self._episodes.step(self._convert(obs), reward, terminated | truncated, info)

    def close(self) -> None:
        self._env.close()

    def _convert(self, obs: np.ndarray) -> np.ndarray:
        # SyncVectorEnv (copy=True) hands back a fresh array, so views are safe here.
        if self._layout == "HW":
            return obs[:, None]
        if self._layout == "HWC":
            return np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
        return obs
