"""Acting: an ``Actor`` steps a batch of E environments with an agent and writes unrolls of
T + 1 steps into preallocated tensors (shared memory in parallel mode). Step 0 of each unroll
repeats step T of the previous one, so every transition is learned from exactly once.

Unroll layout, time-major [T + 1, E, ...], all entries aligned on the step they describe:
  obs[t], prev_action[t] (action before t), reward[t] (raw reward on arriving at t), done[t]
  (an episode starts at t): the agent's inputs at t; action[t], behaviour_logits[t]: what the
  behaviour policy did at t; episode_return[t], episode_length[t]: the episode that ended on
  arriving at t (NaN / 0 elsewhere).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from s3ta.agents import State
from s3ta.envs.base import TimeStep, VecEnv
from s3ta.precision import autocast, resolve_precision
from s3ta.rollout import sample_actions, step_inputs


def unroll_specs(unroll_length: int, num_envs: int, observation_shape, num_actions: int) -> dict:
    """name -> (shape, dtype) of one unroll's tensors."""
    steps = (unroll_length + 1, num_envs)
    return {
        "obs": ((*steps, *observation_shape), torch.uint8),
        "prev_action": (steps, torch.int64),
        "reward": (steps, torch.float32),
        "done": (steps, torch.bool),
        "action": (steps, torch.int64),
        "behaviour_logits": ((*steps, num_actions), torch.float32),
        "episode_return": (steps, torch.float32),
        "episode_length": (steps, torch.int32),
    }


def allocate_unroll(specs: dict, shared: bool = False, pin: bool = False) -> dict[str, Tensor]:
    """Zeroed host tensors of ``specs``, in memory shared between processes or pinned for GPU copies."""
    tensors = {name: torch.zeros(shape, dtype=dtype, pin_memory=pin) for name, (shape, dtype) in specs.items()}
    if shared:
        for tensor in tensors.values():
            tensor.share_memory_()
    return tensors


def allocate_state(agent: nn.Module, num_envs: int, shared: bool = False, pin: bool = False) -> State:
    """The agent's initial state for ``num_envs`` on the host, shared or pinned as ``allocate_unroll``."""
    state = tuple(s.detach().clone().cpu() for s in agent.initial_state(num_envs))
    if pin:
        state = tuple(s.pin_memory() for s in state)
    if shared:
        for tensor in state:
            tensor.share_memory_()
    return state


class _Entry(NamedTuple):
    timestep: TimeStep
    prev_action: Tensor  # [E]
    action: Tensor  # [E]
    logits: Tensor  # [E, A]
    state_before: State  # agent state before this step


class Actor:
    """Fills unrolls from a batch of environments; the agent's weights are read, never trained."""

    def __init__(self, env: VecEnv, agent: nn.Module, unroll_length: int, seed: int, counter=None,
                 precision: str = "fp32"):
        """``counter``: an optional shared ``multiprocessing.Value`` to which every step adds its number
        of environments (progress reports of the learner's process); ``steps`` counts them locally.
        ``precision``: the inference's arithmetic (``s3ta.precision``), fp32 where the agent's device has
        no native bf16."""
        self.env = env
        self.precision, _ = resolve_precision(precision, next(agent.parameters()).device)
        self.counter = counter
        self.steps = 0
        self.agent = agent
        self.unroll_length = unroll_length
        self.generator = torch.Generator().manual_seed(seed)
        self.timestep = env.reset(seed=seed)
        self.state = agent.initial_state(env.num_envs)
        self.prev_action = torch.zeros(env.num_envs, dtype=torch.int64)
        self._last: _Entry | None = None

    @torch.no_grad()
    def _act(self, timestep: TimeStep) -> _Entry:
        state_before = self.state
        with autocast(self.precision, self.prev_action.device):
            output, self.state = self.agent(step_inputs(timestep, self.prev_action), self.state)
        logits = output.policy_logits[0]  # [E, A]
        action = sample_actions(logits, self.generator)
        entry = _Entry(timestep, self.prev_action, action, logits, state_before)
        self.prev_action = action
        return entry

    @staticmethod
    def _write(unroll: dict[str, Tensor], t: int, entry: _Entry) -> None:
        ts = entry.timestep
        unroll["obs"][t].copy_(torch.from_numpy(ts.obs))
        unroll["prev_action"][t] = entry.prev_action
        unroll["reward"][t] = torch.from_numpy(np.asarray(ts.reward, dtype=np.float32))
        unroll["done"][t] = torch.from_numpy(np.asarray(ts.done, dtype=bool))
        unroll["action"][t] = entry.action
        unroll["behaviour_logits"][t] = entry.logits
        unroll["episode_return"][t] = torch.from_numpy(np.asarray(ts.episode_return, dtype=np.float32))
        unroll["episode_length"][t] = torch.from_numpy(np.asarray(ts.episode_length, dtype=np.int32))

    def fill(self, unroll: dict[str, Tensor], initial_state: State) -> None:
        """Write the next unroll into ``unroll`` and the agent state before its step 0 into
        ``initial_state`` (both preallocated, [T + 1, E, ...] and [E, ...])."""
        if self._last is None:
            self._last = self._act(self.timestep)
        entry = self._last
        for target, value in zip(initial_state, entry.state_before):
            target.copy_(value)
        self._write(unroll, 0, entry)
        for t in range(1, self.unroll_length + 1):
            self.timestep = self.env.step(entry.action.numpy())
            entry = self._act(self.timestep)
            self._write(unroll, t, entry)
            self.steps += self.env.num_envs
            if self.counter is not None:
                with self.counter.get_lock():
                    self.counter.value += self.env.num_envs
        self._last = entry

    def close(self) -> None:
        self.env.close()
