"""Batched environments behind one interface (``base.VecEnv``) and the ``make`` that builds them.

``make`` resolves an id to a built-in pixel task, an Atari game or a Gymnasium env, in that order.
"""

from __future__ import annotations

import difflib
from typing import Any

from s3ta.envs._common import check_num_envs
from s3ta.envs.atari import ATARI_GAMES, PROTOCOLS, AtariEnv, game_from_id, snake_name
from s3ta.envs.base import TimeStep, VecEnv
from s3ta.envs.catch import Catch
from s3ta.envs.find_target import FindTarget
from s3ta.envs.gym import GymEnv

BUILTIN_TASKS = {"catch": Catch, "find-target": FindTarget}

__all__ = ["ATARI_GAMES", "BUILTIN_TASKS", "PROTOCOLS", "TimeStep", "VecEnv", "check_env_id", "list_envs", "make"]


def list_envs() -> list[str]:
    """The built-in task names followed by the 57 Atari games (snake_case ROM names)."""
    return [*BUILTIN_TASKS, *ATARI_GAMES]


def make(
    env_id: str, num_envs: int, seed: int | None = None, protocol: str = "paper", **kwargs: Any
) -> VecEnv:
    """Build ``num_envs`` copies of ``env_id`` stepped together.

    ``env_id``: a built-in task ("catch", "find-target"); an Atari game by ROM name ("breakout",
    "ms_pacman") or ALE id ("ALE/Breakout-v5", "BreakoutNoFrameskip-v4"; only the game is taken
    from the id, the settings come from ``protocol``); else a Gymnasium id, "module:EnvName-v0"
    included. ``protocol`` ("paper" or "machado", see spec section 4) applies to Atari only.
    ``kwargs`` go to the env: ``size``/``grid`` (and task options) for built-ins, the few
    ``atari.OVERRIDABLE`` settings for Atari, ``gymnasium.make`` keyword arguments otherwise.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {tuple(PROTOCOLS)}")
    num_envs = check_num_envs(num_envs)
    check_env_id(env_id)
    if env_id in BUILTIN_TASKS:
        return BUILTIN_TASKS[env_id](num_envs, seed=seed, **kwargs)
    game = game_from_id(env_id)
    if game is not None:
        return AtariEnv(game, num_envs, seed=seed, protocol=protocol, **kwargs)
    return GymEnv(env_id, num_envs, seed=seed, **kwargs)


def check_env_id(env_id: str) -> None:
    """Raise ValueError (naming close matches and `s3ta list`) unless ``make`` resolves ``env_id``,
    without building the env. A 'module:EnvName-v0' id is accepted unchecked: only ``make``
    imports its module."""
    if env_id in BUILTIN_TASKS or game_from_id(env_id) is not None or ":" in env_id or _is_gym_id(env_id):
        return
    hint = ", ".join(repr(name) for name in close_matches(env_id))
    hint = f" Did you mean {hint}?" if hint else ""
    raise ValueError(
        f"unknown environment id {env_id!r}.{hint} Known: built-in tasks {tuple(BUILTIN_TASKS)}, "
        "the 57 Atari games by ROM name (`s3ta list` shows them all), ALE ids like 'ALE/Breakout-v5', "
        "or any registered Gymnasium id / 'module:EnvName-v0'."
    )


def _is_gym_id(env_id: str) -> bool:
    try:
        import gymnasium
    except ImportError:
        return False
    try:
        gymnasium.spec(env_id)  # also resolves an id given without its version
    except gymnasium.error.Error:
        return False
    return True


def close_matches(env_id: str, n: int = 5) -> list[str]:
    """Built-in and Atari ids spelled most like ``env_id`` (case, '-'/'_' and ALE style ignored)."""
    known = {name.replace("-", "_"): name for name in list_envs()}
    query = snake_name(env_id).lower().replace("-", "_")
    return [known[m] for m in difflib.get_close_matches(query, list(known), n=n, cutoff=0.6)]
