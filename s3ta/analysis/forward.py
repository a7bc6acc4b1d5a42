"""Running an agent over recorded inputs for analysis, with an optional intervention on its
attention: ``unroll(agent, inputs, state, override)`` is ``agent(inputs, state)`` with the agent's
own ``attention_override`` hook, so the analyses use the one implementation of the forward pass.
Baseline agents (no attention) are passed through unchanged. Shape letters as in ``s3ta.agents.core``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from s3ta import agents
from s3ta.agents.attention_agent import AttentionOverride as Override
from s3ta.agents.core import AgentInputs, AgentOutput, State


def unroll(agent: nn.Module, inputs: AgentInputs, state: State,
           override: Override | None = None) -> tuple[AgentOutput, State]:
    """``agent(inputs, state)`` with an optional attention override applied at every step.

    The output's ``attention`` holds the weights actually used (after the override); the content
    and spatial logits are those the agent computed.
    """
    if override is None:
        return agent(inputs, state)
    if not agents.is_attention_agent(agent):
        raise ValueError(f"agent {getattr(agent, 'name', type(agent).__name__)!r} has no attention to override")
    return agent(inputs, state, attention_override=override)


def forward_step(agent: nn.Module, inputs_t: AgentInputs, state: State,
                 override: Override | None = None) -> tuple[AgentOutput, State]:
    """One step (inputs with T = 1) of ``unroll``."""
    if inputs_t.obs.shape[0] != 1:
        raise ValueError(f"forward_step takes one step (T = 1), got T = {inputs_t.obs.shape[0]}")
    return unroll(agent, inputs_t, state, override)


class Replay(NamedTuple):
    output: AgentOutput  # [T, 1, ...] outputs on the recorded inputs
    states: list[State]  # states[t]: the agent state *before* step t, each tensor [1, ...]


def inputs_from_arrays(obs: np.ndarray, prev_action: np.ndarray, prev_reward: np.ndarray,
                       done: np.ndarray, device: torch.device | str = "cpu") -> AgentInputs:
    """AgentInputs [T, 1, ...] from one env's recorded arrays [T, ...]."""
    return AgentInputs(
        obs=torch.from_numpy(np.ascontiguousarray(obs)).to(device)[:, None],
        prev_action=torch.from_numpy(np.asarray(prev_action, np.int64)).to(device)[:, None],
        prev_reward=torch.from_numpy(np.asarray(prev_reward, np.float32)).to(device)[:, None],
        done=torch.from_numpy(np.asarray(done, bool)).to(device)[:, None],
    )


@torch.no_grad()
def replay(agent: nn.Module, inputs: AgentInputs, override: Override | None = None) -> Replay:
    """Feed recorded inputs [T, 1, ...] step by step from the initial state, keeping every state."""
    state = agent.initial_state(inputs.obs.shape[1])
    states, outputs = [], []
    for t in range(inputs.obs.shape[0]):
        states.append(state)
        step_inputs = AgentInputs(*(x[t:t + 1] for x in inputs))
        shifted = None if override is None else (lambda weights, _, t=t: override(weights, t))
        output, state = unroll(agent, step_inputs, state, shifted)
        outputs.append(output)
    fields = [None if outputs[0][i] is None else torch.cat([o[i] for o in outputs]) for i in range(len(AgentOutput._fields))]
    return Replay(AgentOutput(*fields), states)


def stack_states(states: list[State]) -> State:
    """Concatenate per-step states (each [1, ...]) along the batch: [len(states), ...]."""
    return tuple(torch.cat(parts) for parts in zip(*states))
