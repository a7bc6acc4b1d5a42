"""A trained agent for scripts and notebooks: ``load(source)`` gives a ``Policy`` with the agent, the env
it was trained on (``make_env``) and ``step``, which takes an observation batch and returns the actions
with what the agent attended to (per-head attention maps and their what/where logits), keeping the
recurrent state and previous action between calls. The stepping is ``s3ta.rollout.AgentRunner``'s, the
loop `s3ta eval` and `s3ta explain record` play with. docs/api.md has an example.

Shape letters: B = environments stepped together, A = actions, N = attention heads, h x w = the
attention map, C, H, W = the observation's channels, height and width.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from s3ta.checkpoints import Checkpoint, load_agent, skipped_note
from s3ta.envs.base import TimeStep, VecEnv

if TYPE_CHECKING:
    import torch

    from s3ta.rollout import AgentRunner


class PolicyStep(NamedTuple):
    """What the agent did on one step of B environments (NumPy arrays; None where the agent has no attention)."""

    action: np.ndarray  # [B] int64, the action chosen (sampled, or argmax when greedy)
    policy_logits: np.ndarray  # [B, A]
    baseline: np.ndarray  # [B], the value estimate
    attention: np.ndarray | None  # [B, N, h, w], each head's map over the frame's cells, summing to 1
    content_logits: np.ndarray | None  # [B, N, h, w], the "what" part of the attention logits (query . keys)
    spatial_logits: np.ndarray | None  # [B, N, h, w], the "where" part (query . spatial basis)


class Policy:
    """A loaded agent that acts one step at a time (build it with ``load``).

    ``step`` keeps the agent's recurrent state and previous action from one call to the next, as an
    episode runs; an episode that ends inside a batch is reset by the ``done`` flags of the steps, as in
    training. ``reset()`` starts over (fresh state, the action sampler re-seeded).
    """

    def __init__(self, agent: Any, checkpoint: Checkpoint, *, greedy: bool = False, seed: int | None = None):
        self.agent = agent
        self.checkpoint = checkpoint
        self.greedy = greedy
        self.seed = seed
        self._runner: AgentRunner | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The training config of the checkpoint (TrainConfig.to_dict())."""
        return self.checkpoint.config

    @property
    def env_id(self) -> str:
        return self.config["env"]

    @property
    def protocol(self) -> str:
        return self.config.get("protocol", "paper")

    def make_env(self, num_envs: int = 1, seed: int | None = None, **kwargs: Any) -> VecEnv:
        """The environment the agent was trained on, under its protocol: ``num_envs`` copies stepped
        together (``s3ta.envs.make``; ``kwargs`` go to it). ``seed`` seeds the env (default: unseeded)."""
        from s3ta import envs

        env = envs.make(self.env_id, num_envs, seed=seed, protocol=self.protocol, **kwargs)
        expected = tuple(self.agent.observation_shape)
        if tuple(env.observation_shape) != expected or env.num_actions != self.agent.num_actions:
            env.close()
            raise ValueError(f"env {self.env_id!r} gives observations {tuple(env.observation_shape)} and "
                             f"{env.num_actions} actions, but the agent was built for {expected} and "
                             f"{self.agent.num_actions}")
        return env

    def reset(self) -> None:
        """Forget the recurrent state and previous action; the next ``step`` starts new episodes."""
        self._runner = None

    def step(self, observation: TimeStep | np.ndarray, reward: np.ndarray | None = None,
             done: np.ndarray | None = None) -> PolicyStep:
        """The agent's step on a batch of B observations: a ``TimeStep`` from ``make_env()``'s ``reset`` or
        ``step``, or uint8 pixels [B, C, H, W] with the reward of the previous action ([B], default 0) and
        ``done`` ([B] bool: an episode starts at this observation; default True on the first step after
        ``load`` or ``reset``, else False)."""
        from s3ta.rollout import AgentRunner

        timestep = self._timestep(observation, reward, done)
        batch = timestep.obs.shape[0]
        if self._runner is not None and self._runner.prev_action.shape[0] != batch:
            raise ValueError(f"step got {batch} observations after steps of {self._runner.prev_action.shape[0]}; "
                             "call reset() to start over with another batch size")
        if self._runner is None:
            self._runner = AgentRunner(self.agent, batch, greedy=self.greedy, seed=self.seed)
        self._runner.greedy = self.greedy
        action, output = self._runner.step(timestep)
        return PolicyStep(action, _numpy(output.policy_logits), _numpy(output.baseline), _numpy(output.attention),
                          _numpy(output.content_logits), _numpy(output.spatial_logits))

    def _timestep(self, observation: TimeStep | np.ndarray, reward: np.ndarray | None,
                  done: np.ndarray | None) -> TimeStep:
        """``observation`` as a TimeStep, its shape and dtype checked against the agent's."""
        if isinstance(observation, TimeStep):
            if reward is not None or done is not None:
                raise ValueError("a TimeStep carries its own reward and done; pass them only with raw observations")
            obs = observation.obs
        else:
            obs = observation
        obs = np.asarray(obs)
        expected = tuple(self.agent.observation_shape)
        if obs.ndim != 4 or tuple(obs.shape[1:]) != expected:
            raise ValueError(f"observations must be [B, C, H, W] = [B, {', '.join(map(str, expected))}] "
                             f"(channels first), got shape {tuple(obs.shape)}")
        if obs.dtype != np.uint8:
            raise ValueError(f"observations must be uint8 pixels, got {obs.dtype}")
        if isinstance(observation, TimeStep):
            return observation
        batch = obs.shape[0]
        reward = np.zeros(batch, np.float32) if reward is None else np.asarray(reward, np.float32)
        done = np.full(batch, self._runner is None) if done is None else np.asarray(done, bool)
        for name, value in (("reward", reward), ("done", done)):
            if value.shape != (batch,):
                raise ValueError(f"{name} must be [B] = [{batch}], got shape {value.shape}")
        return TimeStep(obs, reward, done, np.full(batch, np.nan), np.zeros(batch, np.int64), {})


def _numpy(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.detach().float().cpu().numpy()


def load(source: str | Path, *, greedy: bool = False, seed: int | None = None,
         device: str | torch.device = "cpu") -> Policy:
    """The agent of ``source`` as a ``Policy``: ``"zoo:NAME"`` (a shipped agent, ``s3ta zoo list``), a
    checkpoint file, or a run directory (its newest checkpoint that loads; newer ones that do not are
    skipped with a warning). ``greedy``: act by argmax instead of sampling from the policy (sampling is
    how the agents are scored). ``seed``: the action sampler's seed, for repeatable runs."""
    agent, checkpoint = load_agent(source, device=device)
    if checkpoint.skipped:
        warnings.warn(skipped_note(checkpoint), stacklevel=2)
    return Policy(agent, checkpoint, greedy=greedy, seed=seed)
