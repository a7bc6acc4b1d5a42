"""The paper's baselines (section 4.1): IMPALA's deep ResNet, either feedforward to policy and
baseline, or followed by an LSTM that also gets the previous action and reward. No attention.
Shape letters as in ``s3ta.agents.core``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from s3ta.agents.core import (
    AgentInputs,
    AgentOutput,
    LSTMCore,
    State,
    as_inputs,
    check_observation,
    episode_starts,
    init_relu_layers,
    pixels,
    previous_action_reward,
    reset_state,
)
from s3ta.precision import at_least_fp32, compute_dtype, full_precision


@dataclass(frozen=True)
class ResNetAgentConfig:
    """Sizes of the IMPALA deep-ResNet baselines."""

    stage_channels: tuple[int, ...] = (16, 32, 32)
    """Channels of each stage: conv 3x3 -> max-pool 3x3 stride 2 -> residual blocks."""
    blocks_per_stage: int = 2
    """Residual blocks [ReLU, conv 3x3, ReLU, conv 3x3] per stage."""
    hidden_size: int = 256
    """Width of the Linear layer after the ResNet."""
    use_lstm: bool = False
    """False: the feedforward baseline; True: the LSTM baseline."""
    lstm_size: int = 256
    """Units of the LSTM (LSTM baseline only)."""

    def __post_init__(self):
        if not self.stage_channels or min(self.stage_channels) < 1:
            raise ValueError(f"stage_channels must be non-empty and positive, got {self.stage_channels}")
        if self.blocks_per_stage < 0 or self.hidden_size < 1 or self.lstm_size < 1:
            raise ValueError("blocks_per_stage must be >= 0 and hidden_size, lstm_size >= 1")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ResNetAgent(nn.Module):
    """Feedforward or LSTM baseline on IMPALA's deep ResNet encoder."""

    def __init__(self, config: ResNetAgentConfig, observation_shape: tuple[int, int, int], num_actions: int):
        super().__init__()
        channels, height, width = observation_shape
        self.config = config
        self.observation_shape = tuple(observation_shape)
        self.num_actions = num_actions
        layers: list[nn.Module] = []
        for out_channels in config.stage_channels:
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1)]
            layers += [ResidualBlock(out_channels) for _ in range(config.blocks_per_stage)]
            channels, height, width = out_channels, (height - 1) // 2 + 1, (width - 1) // 2 + 1
        layers += [nn.ReLU(), nn.Flatten(), nn.Linear(channels * height * width, config.hidden_size), nn.ReLU()]
        self.encoder = nn.Sequential(*layers)
        init_relu_layers(self.encoder)
        head_size = config.hidden_size
        if config.use_lstm:
            self.core = LSTMCore(config.hidden_size + num_actions + 1, config.lstm_size)
            head_size = config.lstm_size
        self.policy = nn.Linear(head_size, num_actions)
        self.baseline = nn.Linear(head_size, 1)

    def initial_state(self, batch_size: int) -> State:
        return self.core.initial_state(batch_size) if self.config.use_lstm else ()

    def encode(self, obs: Tensor) -> Tensor:
        """The time-parallel part: the encoder on every frame, obs [T, B, C, H, W] uint8 -> [T, B, hidden]."""
        check_observation(obs, self.observation_shape)
        steps, batch = obs.shape[:2]
        # channels-last: oneDNN runs these narrow 3x3 convolutions ~1.5-2x faster (docs/benchmarks.md)
        frames = pixels(obs, compute_dtype(self.policy.weight)).contiguous(memory_format=torch.channels_last)
        return self.encoder(frames).view(steps, batch, -1)

    def forward(self, inputs: AgentInputs, state: State) -> tuple[AgentOutput, State]:
        inputs = as_inputs(inputs)
        return self.unroll(self.encode(inputs.obs), inputs, state)

    def unroll(self, encoded: Tensor, inputs: AgentInputs, state: State) -> tuple[AgentOutput, State]:
        """The sequential part of ``forward`` (the LSTM, if any, and the heads) from ``encoded = encode(inputs.obs)``."""
        features = encoded  # [T, B, hidden]
        if self.config.use_lstm:
            action_reward = previous_action_reward(inputs, self.num_actions, encoded.dtype)
            core_input = torch.cat([features, action_reward], dim=-1)
            core_out = []
            steps_in = zip(core_input.unbind(0), inputs.done.unbind(0), episode_starts(inputs.done))
            for step_input, done, start in steps_in:  # unbind: no per-step [t] gradients
                if start:
                    state = reset_state(state, done)
                out, state = self.core.step(step_input, state)
                core_out.append(out)
            features = torch.stack(core_out)  # [T, B, lstm]
        features = at_least_fp32(features)
        with full_precision(features):  # the heads in fp32: V-trace's ratios compare these logits with the actor's
            output = AgentOutput(policy_logits=self.policy(features), baseline=self.baseline(features).squeeze(-1))
        return output, state
