"""The interface every s3ta agent shares: time-major inputs, outputs, and state helpers.

Shape letters used across ``s3ta.agents``:
  T: time steps of an unroll        B: batch (environments)     A: actions
  C, H, W: observation channels, height, width                h, w: attention map size
  N: attention heads    K: key channels C_k    V: value channels C_v    S: basis channels C_S
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class AgentInputs(NamedTuple):
    obs: Tensor  # [T, B, C, H, W] uint8
    prev_action: Tensor  # [T, B] int64, action taken before this step
    prev_reward: Tensor  # [T, B] float, raw reward received before this step
    done: Tensor  # [T, B] bool, True where an episode starts at this step


class AgentOutput(NamedTuple):
    policy_logits: Tensor  # [T, B, A]
    baseline: Tensor  # [T, B]
    attention: Tensor | None = None  # [T, B, N, h, w], each map sums to 1
    queries: Tensor | None = None  # [T, B, N, K + S]
    content_logits: Tensor | None = None  # [T, B, N, h, w], the q_K . K part of the logits
    spatial_logits: Tensor | None = None  # [T, B, N, h, w], the q_S . S part of the logits


def as_inputs(inputs: AgentInputs | Mapping[str, Tensor]) -> AgentInputs:
    """Accept an AgentInputs or a dict with the same keys; check ranks and dtypes."""
    if not isinstance(inputs, AgentInputs):
        missing = [k for k in AgentInputs._fields if k not in inputs]
        if missing:
            raise ValueError(f"agent inputs are missing {missing}; expected {AgentInputs._fields}")
        inputs = AgentInputs(**{k: inputs[k] for k in AgentInputs._fields})
    obs = inputs.obs
    if obs.dim() != 5:
        raise ValueError(f"obs must be [T, B, C, H, W], got shape {tuple(obs.shape)}")
    if obs.dtype != torch.uint8:
        raise ValueError(f"obs must be uint8 pixels, got {obs.dtype}")
    time_batch = tuple(obs.shape[:2])
    for name in ("prev_action", "prev_reward", "done"):
        shape = tuple(getattr(inputs, name).shape)
        if shape != time_batch:
            raise ValueError(f"{name} must be [T, B] = {list(time_batch)}, got {list(shape)}")
    return inputs


def check_observation(obs: Tensor, expected_shape: tuple[int, int, int]) -> None:
    if tuple(obs.shape[2:]) != tuple(expected_shape):
        raise ValueError(
            f"this agent was built for observations of shape (C, H, W) = {tuple(expected_shape)}, "
            f"got {tuple(obs.shape[2:])}"
        )


def reset_state(state: State, done: Tensor) -> State:
    """Zero every state tensor of the batch entries where an episode starts. done: [B]."""
    keep = (~done).to(state[0].dtype) if state else None
    return tuple(s * keep.view(-1, *([1] * (s.dim() - 1))) for s in state)


def episode_starts(done: Tensor) -> list[bool]:
    """For each step of done [T, B]: does an episode start anywhere in the batch? One read of a [T] tensor
    per unroll, so that the time loop skips ``reset_state`` (4 multiplies, forward and backward) where
    none does. Off the CPU every step answers True: reading the flags would make the host wait for the
    device, and the multiplies (by ones where no episode starts) cost it less than the wait."""
    if done.device.type != "cpu":
        return [True] * done.shape[0]
    return done.any(dim=1).tolist()


def pixels(obs: Tensor, dtype: torch.dtype) -> Tensor:
    """[T, B, C, H, W] or [T*B, C, H, W] uint8 -> [T*B, C, H, W] in [0, 1]: one conversion, one in-place
    division (a second full-size tensor costs more than the arithmetic)."""
    return obs.flatten(0, -4).to(dtype).div_(255.0)


def previous_action_reward(inputs: AgentInputs, num_actions: int, dtype: torch.dtype) -> Tensor:
    """[T, B, A + 1]: one-hot previous action and clipped previous reward, zero at episode starts
    (they belong to the episode that just ended)."""
    keep = (~inputs.done).unsqueeze(-1).to(dtype)
    one_hot = nn.functional.one_hot(inputs.prev_action.long(), num_actions).to(dtype)
    reward = inputs.prev_reward.to(dtype).clamp(-1.0, 1.0).unsqueeze(-1)
    return torch.cat([one_hot, reward], dim=-1) * keep


@torch.no_grad()
def init_relu_layers(module: nn.Module) -> None:
    """He initialisation (fan-in, ReLU gain) of every Conv2d and Linear in ``module``, zero biases.

    PyTorch's default shrinks activations ~2.5x per ReLU layer; after a deep encoder the features
    that vary with the observation come out ~200x smaller than the one-hot previous action fed
    beside them, and recurrent agents barely learn. Call it on stacks whose layers feed ReLUs.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class LSTMCore(nn.Module):
    """An LSTM cell stepped over T with resets at episode starts: the recurrent core shared by the
    attention agent's policy LSTM and the LSTM baseline."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.cell = nn.LSTMCell(input_size, hidden_size)

    def initial_state(self, batch_size: int) -> State:
        zeros = torch.zeros(batch_size, self.hidden_size, device=self.cell.weight_hh.device)
        return (zeros, zeros.clone())

    def step(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        h, c = self.cell(x, state)  # [B, hidden]
        return h, (h, c)
