"""Atari 2600 games through ale-py's vectorised C++ environment, under the paper's protocol.

Owns the list of the 57 games, the "paper" / "machado" evaluation settings (spec section 4) and
the adapter from ``ale_py.vector_env.AtariVectorEnv`` to the s3ta VecEnv interface.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from s3ta.envs._common import EpisodeTracker, check_actions, check_num_envs
from s3ta.envs.base import TimeStep

# The 57 games of the human-normalised score table (s3ta/data/atari_human_random.csv), as ROM names.
# fmt: off
ATARI_GAMES = (
    "alien", "amidar", "assault", "asterix", "asteroids", "atlantis", "bank_heist", "battle_zone",
    "beam_rider", "berzerk", "bowling", "boxing", "breakout", "centipede", "chopper_command",
    "crazy_climber", "defender", "demon_attack", "double_dunk", "enduro", "fishing_derby",
    "freeway", "frostbite", "gopher", "gravitar", "hero", "ice_hockey", "jamesbond", "kangaroo",
    "krull", "kung_fu_master", "montezuma_revenge", "ms_pacman", "name_this_game", "phoenix",
    "pitfall", "pong", "private_eye", "qbert", "riverraid", "road_runner", "robotank", "seaquest",
    "skiing", "solaris", "space_invaders", "star_gunner", "surround", "tennis", "time_pilot",
    "tutankham", "up_n_down", "venture", "video_pinball", "wizard_of_wor", "yars_revenge", "zaxxon",
)
# fmt: on

FRAMESKIP = 4
MAX_EPISODE_FRAMES = 108_000  # 30 minutes at 60 Hz, counted from the first frame after the no-ops
NOOP_MAX = 30  # the paper protocol starts each episode with 1..NOOP_MAX no-op frames, uniformly
_COMMON = dict(
    frameskip=FRAMESKIP,
    maxpool=True,
    max_num_frames_per_episode=MAX_EPISODE_FRAMES,
    full_action_space=True,
    reward_clipping=False,
    episodic_life=False,
    life_loss_info=False,
    use_fire_reset=False,
    img_height=210,
    img_width=160,
    grayscale=False,
    stack_num=1,
)
PROTOCOLS: dict[str, dict[str, Any]] = {
    # IMPALA-era: 1 to 30 random no-op frames at reset, deterministic actions. ``noop_max`` is the
    # protocol's; AtariEnv translates it for ale-py, which draws 0..noop_max - 1 (see _ale_settings).
    "paper": dict(_COMMON, noop_max=NOOP_MAX, repeat_action_probability=0.0),
    # Machado et al. 2018: sticky actions with p = 0.25 instead of no-ops.
    "machado": dict(_COMMON, noop_max=0, repeat_action_probability=0.25),
}
OVERRIDABLE = ("img_height", "img_width", "grayscale", "max_num_frames_per_episode", "num_threads")

_ALE_ID = re.compile(r"(?:ALE/)?([A-Z][A-Za-z0-9]*?)(?:NoFrameskip|Deterministic)?-v\d+")


def snake_name(env_id: str) -> str:
    """The ROM-style name an ALE id would map to ("ALE/MsPacman-v5" -> "ms_pacman"); else env_id."""
    match = _ALE_ID.fullmatch(env_id)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", match[1]).lower() if match else env_id


def game_from_id(env_id: str) -> str | None:
    """ROM name of an Atari id ("breakout", "ALE/Breakout-v5", "BreakoutNoFrameskip-v4"), else None.

    Short names and ALE ids outside the 57 are accepted if ale-py ships the ROM.
    """
    name = snake_name(env_id)
    if name in ATARI_GAMES:
        return name
    if re.fullmatch(r"[a-z0-9_]+", name):
        try:
            from ale_py import roms
        except ImportError:
            return None
        if name in roms.get_all_rom_ids():
            return name
    return None


def _ale_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """ale-py's AtariVectorEnv arguments for the protocol ``settings``: ale-py draws 0..noop_max - 1
    no-op frames at a reset, so it gets noop_max + 1 (and AtariEnv redraws the zeros)."""
    noop_max = settings["noop_max"]
    return dict(settings, noop_max=noop_max + 1 if noop_max else 0)


class AtariEnv:
    """A batch of one Atari game; obs [B, 3, 210, 160] uint8 (one RGB frame), 18 actions.

    ``step`` returns raw (unclipped) rewards; no life-loss signal reaches the agent. Info keys:
    ``lives``, ``frame_number``, ``episode_frame_number`` (of the returned obs, int32 [B]) and
    ``truncated`` (bool [B], where done: the episode hit the frame cap rather than game over).
    No-op frames count in ``episode_frame_number`` (an episode's first obs reports how many it had:
    1..30 under the paper protocol) but not towards the frame cap, which ale-py counts after them.
    Emulator RAM: ale-py 0.12's ``ALEVectorInterface`` exposes only reset/send/recv/
    get_action_set/get_observation_shape/handle, so per-env RAM is not readable here; one would
    need a separate ``ale_py.ALEInterface`` per env (the slow, non-vectorised path).
    """

    frames_per_step = FRAMESKIP

    def __init__(
        self,
        game: str,
        num_envs: int,
        seed: int | None = None,
        protocol: str = "paper",
        **overrides: Any,
    ):
        from ale_py.vector_env import AtariVectorEnv  # lazy: importing ale_py registers gym ids

        self.num_envs = check_num_envs(num_envs)
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {tuple(PROTOCOLS)}")
        unknown = set(overrides) - set(OVERRIDABLE)
        if unknown:
            raise TypeError(f"unsupported Atari options {sorted(unknown)}; allowed: {OVERRIDABLE}")
        self.game, self.protocol = game, protocol
        num_threads = overrides.pop("num_threads", min(self.num_envs, os.cpu_count() or 1))
        self.ale_kwargs = {**PROTOCOLS[protocol], **overrides}  # the protocol's settings in force
        self.max_episode_frames = self.ale_kwargs["max_num_frames_per_episode"]
        self._redraw_noops = self.ale_kwargs["noop_max"] > 0
        self._env = AtariVectorEnv(
            game,
            self.num_envs,
            autoreset_mode="SameStep",
            num_threads=num_threads,
            **_ale_settings(self.ale_kwargs),
        )
        self.action_names = tuple(a.name for a in self._env.ale.get_action_set())
        self.num_actions = len(self.action_names)
        channels = 1 if self.ale_kwargs["grayscale"] else 3
        self.observation_shape = (
            channels,
            self.ale_kwargs["img_height"],
            self.ale_kwargs["img_width"],
        )
        self._seed = seed  # used by the first reset() that gets no seed of its own
        self._episodes = EpisodeTracker(self.num_envs)

    def reset(self, seed: int | None = None) -> TimeStep:
        """Reset every env; an int seed seeds env b with ``seed + b``."""
        seed, self._seed = (self._seed if seed is None else seed), None
        if seed is not None:  # ALE seeds are C ints: one per env, as a plain int array in range
            seed = (np.arange(self.num_envs, dtype=np.int64) + int(seed)) % (2**31 - 1)
            seed = seed.astype(np.int32)
        obs, info = self._env.reset(seed=seed)
        obs, info = self._at_least_one_noop(obs, info, np.ones(self.num_envs, bool))
        obs, info = self._convert(obs, info)
        info["truncated"] = np.zeros(self.num_envs, bool)
        return self._episodes.first(obs, info)

    def step(self, actions: np.ndarray) -> TimeStep:
        actions = check_actions(actions, self.num_envs, self.num_actions)
        obs, reward, terminated, truncated, info = self._env.step(actions)
        obs, info = self._at_least_one_noop(obs, info, terminated | truncated)
        obs, info = self._convert(obs, info)
        info["truncated"] = truncated & ~terminated
        return self._episodes.step(obs, reward.astype(np.float32), terminated | truncated, info)

    def close(self) -> None:
        self._env.close()

    def _at_least_one_noop(self, obs: np.ndarray, info: dict[str, Any], started: np.ndarray):
        """Reset again, until each has had a no-op, the envs of ``started`` whose new episode began
        without one. ale-py draws 0..noop_max - 1 no-op frames and is given noop_max + 1, so the draws
        kept are uniform on 1..noop_max; 1 in noop_max + 1 episode starts costs one more reset."""
        if not self._redraw_noops:
            return obs, info
        again = started & (info["episode_frame_number"] == 0)
        while again.any():
            new_obs, new_info = self._env.reset(options={"reset_mask": again})
            obs, info = obs.copy(), dict(info)
            obs[again] = new_obs[again]
            for key in ("lives", "frame_number", "episode_frame_number"):
                info[key] = np.where(again, new_info[key], info[key])
            again &= info["episode_frame_number"] == 0
        return obs, info

    def _convert(self, obs: np.ndarray, info: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        # With batch_size == num_envs the C++ side returns envs in order; check rather than trust.
        if not np.array_equal(info["env_id"], np.arange(self.num_envs)):
            raise RuntimeError(f"ale-py returned envs out of order: {info['env_id']}")
        obs = obs[:, 0]  # [B, H, W, 3] RGB or [B, H, W] grayscale (stack_num is 1)
        obs = obs[:, None] if obs.ndim == 3 else np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
        keep = ("lives", "frame_number", "episode_frame_number")
        return obs, {key: info[key] for key in keep}
