"""The S3TA attention agent (paper section 2, spec sections 1-2), its top-down ablations, and the
same agent without attention (its vision output projected to the answers' width: an equal-torso baseline).

Vision core (conv net + ConvLSTM) -> keys and values + fixed spatial basis -> N queries from the
policy LSTM's previous hidden state -> spatial softmax per head -> answers and queries into the
LSTM core -> policy logits and baseline. Shape letters as in ``s3ta.agents.core``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from s3ta.agents.attention import l2_key_attention, override_attention, query_attention, spatial_basis
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

QUERY_MODES = ("top-down", "fixed", "l2-keys", "projection")
PADDING_MODES = ("zeros", "replicate")

# An intervention on attention: (weights [B, N, h, w], t) -> replacement weights [B, N, h, w].
AttentionOverride = Callable[[Tensor, int], Tensor]


@dataclass(frozen=True)
class AttentionAgentConfig:
    """Sizes of the attention agent. Defaults are the spec's paper configuration for Atari."""

    conv_channels: tuple[int, ...] = (32, 64, 64)
    """Output channels of each vision conv layer (ReLU after each)."""
    conv_kernels: tuple[int, ...] = (8, 4, 3)
    """Kernel size of each vision conv layer."""
    conv_strides: tuple[int, ...] = (4, 2, 1)
    """Stride of each vision conv layer; padding is TF-style "same" (210x160 -> 27x20)."""
    convlstm_kernel: int = 3
    """Kernel size of the ConvLSTM. Its hidden channels are key channels + value_channels."""
    padding_mode: str = "zeros"
    """How the vision convs and the ConvLSTM pad the map's border: "zeros" or "replicate" (the edge
    pixels repeated). Zeros make the border look unlike a non-black background (e.g. Pong's brown), so
    keys there differ from the rest of the background and content-driven heads can lock onto it."""
    key_channels: int = 8
    """C_k: key channels per query (l2-keys: per head, so the key part of O is N * C_k)."""
    value_channels: int = 120
    """C_v: value channels of the vision output."""
    num_heads: int = 4
    """N: attention heads (queries)."""
    basis_frequencies: int = 4
    """Fourier frequencies per axis of the spatial basis; C_S = (2 * F)^2 (64 for F = 4)."""
    query_hidden: tuple[int, ...] = (128, 288)
    """Hidden layers (ReLU) of the query MLP on h(t-1); its output layer is N * (C_k + C_S)."""
    core_hidden: tuple[int, ...] = (512, 256)
    """MLP (ReLU) from [answers, queries, prev reward, prev action] to the LSTM core input."""
    lstm_size: int = 256
    """Units of the policy LSTM core."""
    queries: str = "top-down"
    """"top-down" (the paper's agent), "fixed" (a learned query tensor), "l2-keys" (no queries), or
    "projection" (no attention: a learned linear map of the whole vision output O, c x h x w, to the
    answers' width N (C_v + C_S); the LSTM baseline with this agent's torso and core)."""
    query_init_gain: float = 1.0
    """Scale of the initial query output layer (or fixed queries). Keys from a ConvLSTM on sparse
    frames are small, so gain 1 gives near-uniform attention that learns slowly; see docs/design.md."""
    forget_bias: float = 1.0
    """Initial bias of the ConvLSTM forget gate (vision convs use He initialisation)."""
    convlstm_init_gain: float = 1.0
    """Scale of the ConvLSTM's convolution weights at initialisation (PyTorch's default times this).
    Larger weights make the keys differ more between objects and background."""
    query_content_bias_gain: float = 1.0
    """Scale of the content part (q_K) of the initial query bias (top-down) or fixed queries. At
    initialisation h(t-1) is small, so each query is mostly its bias; a large q_K bias makes the
    gradient that teaches heads *what* to look at (q_K times the keys' differences) larger."""

    def __post_init__(self):
        if not (len(self.conv_channels) == len(self.conv_kernels) == len(self.conv_strides) >= 1):
            raise ValueError("conv_channels, conv_kernels and conv_strides must have the same length >= 1")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if self.queries not in QUERY_MODES:
            raise ValueError(f"queries must be one of {QUERY_MODES}, got {self.queries!r}")
        if self.convlstm_init_gain <= 0 or self.query_content_bias_gain < 0:
            raise ValueError("convlstm_init_gain must be > 0 and query_content_bias_gain >= 0, got "
                             f"{self.convlstm_init_gain} and {self.query_content_bias_gain}")
        positive = dict(key_channels=self.key_channels, value_channels=self.value_channels,
                        num_heads=self.num_heads, basis_frequencies=self.basis_frequencies,
                        lstm_size=self.lstm_size, convlstm_kernel=self.convlstm_kernel)
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")

    @property
    def basis_channels(self) -> int:
        return (2 * self.basis_frequencies) ** 2

    @property
    def key_part_channels(self) -> int:
        """Channels of O used as keys: C_k, or N * C_k for the l2-keys ablation."""
        return self.key_channels * (self.num_heads if self.queries == "l2-keys" else 1)

    @property
    def vision_channels(self) -> int:
        """c = channels of the ConvLSTM output O, split into keys and values."""
        return self.key_part_channels + self.value_channels


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF "SAME" padding along one axis: (pad_before, pad_after, output_size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def vision_conv_stack(config: AttentionAgentConfig, in_channels: int, height: int, width: int):
    """The conv layers of the vision core with "same" padding; returns (module, out_h, out_w)."""
    layers: list[nn.Module] = []
    for channels, kernel, stride in zip(config.conv_channels, config.conv_kernels, config.conv_strides):
        top, bottom, height = same_padding(height, kernel, stride)
        left, right, width = same_padding(width, kernel, stride)
        pad = nn.ZeroPad2d if config.padding_mode == "zeros" else nn.ReplicationPad2d
        layers += [pad((left, right, top, bottom)), nn.Conv2d(in_channels, channels, kernel, stride), nn.ReLU()]
        in_channels = channels
    return nn.Sequential(*layers), height, width


def mlp(sizes: list[int], final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if final_activation or i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ConvLSTM(nn.Module):
    """A convolutional LSTM whose input convolution is applied to all T steps at once (the fast
    path); only the hidden-to-hidden convolution runs inside the time loop."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int, padding_mode: str = "zeros"):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.input_conv = nn.Conv2d(in_channels, 4 * hidden_channels, kernel, padding=kernel // 2,
                                    padding_mode=padding_mode)
        self.hidden_conv = nn.Conv2d(hidden_channels, 4 * hidden_channels, kernel,
                                     padding=kernel // 2, bias=False, padding_mode=padding_mode)

    def step(self, input_gates: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """input_gates = input_conv(x): [B, 4c, h, w]; state (h, c): [B, c, h, w] each."""
        hidden, cell = state
        gates = at_least_fp32(input_gates + self.hidden_conv(hidden))  # the cell's maths in fp32 under bf16 autocast
        i, f, g, o = gates.chunk(4, dim=1)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(cell)
        return hidden, cell


class AttentionAgent(nn.Module):
    """S3TA and its ablations; ``config.queries`` picks the query mechanism."""

    def __init__(self, config: AttentionAgentConfig, observation_shape: tuple[int, int, int], num_actions: int):
        super().__init__()
        channels, height, width = observation_shape
        self.config = config
        self.observation_shape = tuple(observation_shape)
        self.num_actions = num_actions
        self.vision, self.map_height, self.map_width = vision_conv_stack(config, channels, height, width)
        self.convlstm = ConvLSTM(config.conv_channels[-1], config.vision_channels, config.convlstm_kernel,
                                 config.padding_mode)
        self.register_buffer("basis", spatial_basis(self.map_height, self.map_width, config.basis_frequencies),
                             persistent=False)  # [S, h, w]

        heads, query_size = config.num_heads, config.key_channels + config.basis_channels
        self.query_size = query_size
        if config.queries == "top-down":
            self.query_net = mlp([config.lstm_size, *config.query_hidden, heads * query_size], final_activation=False)
        elif config.queries == "fixed":
            self.fixed_queries = nn.Parameter(torch.randn(heads, query_size) * 0.1)  # [N, K + S]
        answer_size = heads * (config.value_channels + config.basis_channels)
        if config.queries == "projection":
            self.projection = nn.Linear(config.vision_channels * self.map_height * self.map_width, answer_size)
        query_input = heads * query_size if config.queries in ("top-down", "fixed") else 0
        core_input = answer_size + query_input + num_actions + 1
        self.core_mlp = mlp([core_input, *config.core_hidden], final_activation=True)
        self.core = LSTMCore(config.core_hidden[-1] if config.core_hidden else core_input, config.lstm_size)
        self.policy = nn.Linear(config.lstm_size, num_actions)
        self.baseline = nn.Linear(config.lstm_size, 1)
        self._initialise()

    @torch.no_grad()
    def _initialise(self) -> None:
        """He initialisation of the ReLU layers (see ``init_relu_layers``: PyTorch's default leaves
        keys and core inputs near zero), the forget-gate bias, the ConvLSTM gain and the query gains."""
        init_relu_layers(self.vision)
        init_relu_layers(self.core_mlp)
        if self.config.queries == "top-down":
            init_relu_layers(self.query_net[:-1])
        hidden = self.convlstm.hidden_channels
        self.convlstm.input_conv.weight.mul_(self.config.convlstm_init_gain)
        self.convlstm.hidden_conv.weight.mul_(self.config.convlstm_init_gain)
        self.convlstm.input_conv.bias[hidden:2 * hidden].fill_(self.config.forget_bias)  # gates i, f, g, o
        keys = self.config.key_channels
        if self.config.queries == "top-down":
            self.query_net[-1].weight.mul_(self.config.query_init_gain)
            self.query_net[-1].bias.view(self.config.num_heads, self.query_size)[:, :keys].mul_(
                self.config.query_content_bias_gain)
        elif self.config.queries == "fixed":
            self.fixed_queries.mul_(self.config.query_init_gain)
            self.fixed_queries[:, :keys].mul_(self.config.query_content_bias_gain)

    @property
    def has_attention(self) -> bool:
        return self.config.queries != "projection"

    @property
    def attention_shape(self) -> tuple[int, int, int]:
        return (self.config.num_heads, self.map_height, self.map_width)

    def initial_state(self, batch_size: int) -> State:
        device = self.policy.weight.device
        vision = torch.zeros(batch_size, self.config.vision_channels, self.map_height, self.map_width, device=device)
        return (vision, vision.clone(), *self.core.initial_state(batch_size))

    def queries(self, core_hidden: Tensor) -> Tensor | None:
        """[B, N, K + S] queries from h(t-1) (top-down), the learned tensor (fixed), or None."""
        batch = core_hidden.shape[0]
        if self.config.queries == "top-down":
            return self.query_net(core_hidden).view(batch, self.config.num_heads, self.query_size)
        if self.config.queries == "fixed":
            return self.fixed_queries.unsqueeze(0).expand(batch, -1, -1)
        return None

    def encode(self, obs: Tensor) -> Tensor:
        """The time-parallel part: vision convs and the ConvLSTM's input convolution of every frame,
        obs [T, B, C, H, W] uint8 -> input gates [T, B, 4c, h, w]."""
        check_observation(obs, self.observation_shape)
        steps, batch = obs.shape[:2]
        # The first layer pads the uint8 frames (the same pixels in a quarter of the bytes, and no
        # gradient), then they are converted once, straight into the dtype the convolutions compute in
        # (docs/benchmarks.md, "bf16": channels-last costs more here than it gains).
        first_pad, layers = self.vision[0], self.vision[1:]
        frames = pixels(first_pad(obs.flatten(0, 1)), compute_dtype(self.policy.weight))  # [T*B, C, H', W']
        input_gates = self.convlstm.input_conv(layers(frames))  # [T*B, 4c, h, w]
        return input_gates.view(steps, batch, *input_gates.shape[1:])

    def forward(self, inputs: AgentInputs, state: State,
                attention_override: AttentionOverride | None = None) -> tuple[AgentOutput, State]:
        """Unroll over T steps. ``attention_override``, for interventions, replaces each step's
        attention weights before the answers are read; outputs then report the weights used."""
        inputs = as_inputs(inputs)
        return self.unroll(self.encode(inputs.obs), inputs, state, attention_override)

    def unroll(self, encoded: Tensor, inputs: AgentInputs, state: State,
               attention_override: AttentionOverride | None = None) -> tuple[AgentOutput, State]:
        """The sequential part of ``forward``, step by step from ``encoded = encode(inputs.obs)``."""
        steps, batch = encoded.shape[:2]
        config = self.config
        action_reward = previous_action_reward(inputs, self.num_actions, self.policy.weight.dtype)  # [T, B, A + 1]
        # unbind once: indexing [t] inside the loop would cost a full-size zero gradient per step
        input_gates, action_reward, done = encoded.unbind(0), action_reward.unbind(0), inputs.done.unbind(0)

        vision_h, vision_c, core_h, core_c = state
        starts = episode_starts(inputs.done)
        outputs = []
        for t in range(steps):
            if starts[t]:
                vision_h, vision_c, core_h, core_c = reset_state((vision_h, vision_c, core_h, core_c), done[t])
            vision_h, vision_c = self.convlstm.step(input_gates[t], (vision_h, vision_c))  # O: [B, c, h, w]
            if not self.has_attention:  # the equal-torso baseline: O projected, no attention
                core_input = [self.projection(vision_h.flatten(1)), action_reward[t]]  # [B, N(V + S)], [B, A + 1]
                core_out, (core_h, core_c) = self.core.step(self.core_mlp(torch.cat(core_input, dim=1)), (core_h, core_c))
                outputs.append((core_out, None, None, None, None))
                continue
            keys, values = vision_h.split([config.key_part_channels, config.value_channels], dim=1)
            queries = self.queries(core_h)
            with full_precision(vision_h):  # logits and softmax in fp32 under bf16 autocast: logits of ~30
                keys, values = at_least_fp32(keys), at_least_fp32(values)  # would be off by ~0.1 in bf16, weights by ~10%
                if queries is None:
                    keys = keys.view(batch, config.num_heads, config.key_channels, *keys.shape[-2:])
                    attention = l2_key_attention(keys, values, self.basis)
                else:
                    queries = at_least_fp32(queries)
                    attention = query_attention(queries, keys, values, self.basis)
                if attention_override is not None:
                    attention = override_attention(attention, attention_override(attention.weights, t), values,
                                                   self.basis)
            core_input = [attention.answers.flatten(1), action_reward[t]]  # [B, N(V + S)], [B, A + 1]
            if queries is not None:
                core_input.insert(1, queries.flatten(1))  # [B, N(K + S)]
            core_out, (core_h, core_c) = self.core.step(self.core_mlp(torch.cat(core_input, dim=1)), (core_h, core_c))
            outputs.append((core_out, attention.weights, queries, attention.content_logits, attention.spatial_logits))

        core_out, weights, queries, content, spatial = zip(*outputs)
        core_out = at_least_fp32(torch.stack(core_out))  # [T, B, lstm]
        with full_precision(core_out):  # the heads in fp32: V-trace's ratios compare these logits with the actor's
            policy_logits, baseline = self.policy(core_out), self.baseline(core_out).squeeze(-1)  # [T, B, A], [T, B]
        output = AgentOutput(
            policy_logits=policy_logits,
            baseline=baseline,
            attention=None if weights[0] is None else torch.stack(weights),  # [T, B, N, h, w]
            queries=None if queries[0] is None else torch.stack(queries),  # [T, B, N, K + S]
            content_logits=None if content[0] is None else torch.stack(content),
            spatial_logits=None if spatial[0] is None else torch.stack(spatial),
        )
        return output, (vision_h, vision_c, core_h, core_c)
