"""Running a trained (or untrained) agent in a batched environment, one step at a time.

``AgentRunner`` keeps the recurrent state and previous action across steps; ``run_episodes``
plays whole episodes and yields every step, for evaluation and for recording explanations.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch
from torch import nn

from s3ta.agents import AgentInputs, AgentOutput
from s3ta.envs.base import TimeStep, VecEnv


class Step(NamedTuple):
    timestep: TimeStep  # what the agent saw
    action: np.ndarray  # [B] the action it chose
    output: AgentOutput  # its outputs on this step, with T = 1 removed: policy_logits [B, A], ...
    result: TimeStep  # what the environment returned for the action (reward, done, episode stats)


def step_inputs(timestep: TimeStep, prev_action: torch.Tensor) -> AgentInputs:
    """One batched environment step as agent inputs with T = 1, on ``prev_action``'s device."""
    device = prev_action.device
    return AgentInputs(
        obs=torch.from_numpy(timestep.obs).to(device)[None],  # [1, B, C, H, W]
        prev_action=prev_action[None],
        prev_reward=torch.from_numpy(np.asarray(timestep.reward, np.float32)).to(device)[None],
        done=torch.from_numpy(np.asarray(timestep.done, bool)).to(device)[None],
    )


def sample_actions(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """[B, A] policy logits -> [B] actions sampled from their softmax."""
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


class AgentRunner:
    """Feeds TimeSteps to an agent and picks actions (sampled, or greedy = argmax)."""

    def __init__(self, agent: nn.Module, num_envs: int, greedy: bool = False, seed: int | None = None):
        self.agent = agent
        self.greedy = greedy
        self.device = next(agent.parameters()).device
        self.state = agent.initial_state(num_envs)
        self.prev_action = torch.zeros(num_envs, dtype=torch.int64, device=self.device)
        self.generator = torch.Generator(device=self.device)
        if seed is not None:
            self.generator.manual_seed(seed)

    @torch.no_grad()
    def step(self, timestep: TimeStep) -> tuple[np.ndarray, AgentOutput]:
        output, self.state = self.agent(step_inputs(timestep, self.prev_action), self.state)
        logits = output.policy_logits[0]  # [B, A]
        action = logits.argmax(-1) if self.greedy else sample_actions(logits, self.generator)
        self.prev_action = action
        squeezed = AgentOutput(*(None if x is None else x[0] for x in output))
        return action.cpu().numpy(), squeezed


def run_episodes(agent: nn.Module, env: VecEnv, num_episodes: int, *, greedy: bool = False,
                 seed: int | None = None, max_steps: int | None = None) -> Iterator[Step]:
    """Yield every step of the agent in ``env`` until ``num_episodes`` episodes have finished
    (counted over all envs of the batch) or ``max_steps`` batched steps have run."""
    runner = AgentRunner(agent, env.num_envs, greedy=greedy, seed=seed)
    timestep = env.reset(seed=seed)
    finished, steps = 0, 0
    while finished < num_episodes and (max_steps is None or steps < max_steps):
        action, output = runner.step(timestep)
        result = env.step(action)
        yield Step(timestep, action, output, result)
        timestep = result
        steps += 1
        finished += int(np.sum(result.done))
