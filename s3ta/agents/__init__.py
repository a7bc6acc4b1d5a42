"""The agent registry: ``build(name, observation_shape, num_actions, **overrides)`` for the S3TA agent,
the paper's ResNet baselines and its top-down ablations, and CPU-sized versions of S3TA, its ablations
and an LSTM baseline with the same torso (the ``-small`` agents).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import replace
from typing import Any

from torch import nn

from s3ta.agents.attention import Attention, l2_key_attention, query_attention, spatial_basis
from s3ta.agents.attention_agent import AttentionAgent, AttentionAgentConfig
from s3ta.agents.core import AgentInputs, AgentOutput, State
from s3ta.agents.resnet import ResNetAgent, ResNetAgentConfig

# s3ta-small: the same mechanism sized for CPUs. Narrower convs, a 32-channel ConvLSTM (C_k 8,
# C_v 24), the full 64-channel basis and 4 heads, a 256 -> LSTM 128 core. On 210x160 it keeps the
# 27x20 map; on the 64x64 built-in tasks the map is 8x8. About 10x fewer FLOPs than s3ta.
SMALL = AttentionAgentConfig(
    conv_channels=(16, 32, 32),
    value_channels=24,
    query_hidden=(64,),
    core_hidden=(256,),
    lstm_size=128,
)

PRESETS: dict[str, tuple[type[nn.Module], Any]] = {
    "s3ta": (AttentionAgent, AttentionAgentConfig()),
    "s3ta-small": (AttentionAgent, SMALL),
    # the comparison at s3ta-small's size: its ablations, and its vision core and LSTM core without
    # attention (the vision output projected to the answers' width), so that only the attention differs
    "lstm-small": (AttentionAgent, replace(SMALL, queries="projection")),
    "fixed-query-small": (AttentionAgent, replace(SMALL, queries="fixed")),
    "l2-keys-small": (AttentionAgent, replace(SMALL, queries="l2-keys")),
    "fixed-query": (AttentionAgent, AttentionAgentConfig(queries="fixed")),
    "l2-keys": (AttentionAgent, AttentionAgentConfig(queries="l2-keys")),
    "feedforward": (ResNetAgent, ResNetAgentConfig()),
    "lstm": (ResNetAgent, ResNetAgentConfig(use_lstm=True)),
}


def names() -> list[str]:
    return list(PRESETS)


def config_field_names(name: str) -> list[str]:
    """The config fields of agent ``name`` (ValueError for an unknown agent)."""
    return [f.name for f in dataclasses.fields(config_for(name))]


def config_for(name: str, **overrides) -> Any:
    """The preset config of ``name`` with ``overrides`` applied (lists become tuples)."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown agent {name!r}; known agents: {', '.join(PRESETS)}.{hint}")
    config = PRESETS[name][1]
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"agent {name!r} has no config fields {unknown}; its fields are {sorted(fields)}")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return dataclasses.replace(config, **overrides)


def build(name: str, observation_shape: tuple[int, int, int], num_actions: int, **overrides) -> nn.Module:
    """Build agent ``name`` for observations (C, H, W) and ``num_actions`` discrete actions.

    ``overrides`` replace fields of the preset's config dataclass, e.g. ``num_heads=8``.
    The returned module has ``initial_state(batch_size)`` and ``forward(inputs, state)``, which is
    ``unroll(encode(inputs.obs), inputs, state)``: the time-parallel encoder, then the time loop and heads.
    """
    config = config_for(name, **overrides)
    if len(observation_shape) != 3 or min(observation_shape) < 1:
        raise ValueError(f"observation_shape must be (C, H, W), got {observation_shape}")
    if num_actions < 1:
        raise ValueError(f"num_actions must be >= 1, got {num_actions}")
    agent = PRESETS[name][0](config, tuple(observation_shape), int(num_actions))
    agent.name = name
    return agent


def describe(agent: nn.Module) -> dict[str, Any]:
    """What is needed to rebuild ``agent`` with ``build``: JSON-serialisable."""
    return {
        "name": agent.name,
        "observation_shape": list(agent.observation_shape),
        "num_actions": agent.num_actions,
        "config": dataclasses.asdict(agent.config),
    }


def from_description(description: dict[str, Any]) -> nn.Module:
    return build(description["name"], tuple(description["observation_shape"]), description["num_actions"],
                 **description["config"])


def is_attention_agent(agent: nn.Module) -> bool:
    """Whether ``agent`` returns attention maps (an AttentionAgent other than the projection baseline)."""
    return isinstance(agent, AttentionAgent) and agent.has_attention


__all__ = [
    "AgentInputs", "AgentOutput", "Attention", "AttentionAgent", "AttentionAgentConfig", "ResNetAgent",
    "ResNetAgentConfig", "State", "build", "config_field_names", "config_for", "describe", "from_description", "is_attention_agent",
    "l2_key_attention", "names", "query_attention", "spatial_basis",
]
