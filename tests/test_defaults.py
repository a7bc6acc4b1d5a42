"""The paper's values pinned (spec sections 2-3): TrainConfig's defaults and the optimiser built from
them, the `s3ta` preset's layer sizes as built, the baselines', and the wiring the spec fixes: keys
are the first C_k channels of the vision output and queries read the policy LSTM's h(t-1), not c."""

import math

import pytest
import torch
from torch import nn

from s3ta import agents, vtrace
from s3ta.agents import AgentInputs
from s3ta.training import TrainConfig
from s3ta.training.learner import make_optimizer

ATARI = (3, 210, 160)


def test_training_defaults_are_the_papers():
    config = TrainConfig()
    assert (config.unroll_length, config.batch_size) == (50, 32)
    assert config.discount == 0.99 and config.reward_clip == 1.0
    assert (config.baseline_cost, config.entropy_cost) == (0.5, 0.01)
    assert (config.clip_rho_threshold, config.clip_pg_rho_threshold) == (1.0, 1.0)
    assert config.learning_rate == 2e-4 and config.lr_schedule == "linear"
    assert (config.rmsprop_eps, config.rmsprop_alpha, config.momentum) == (0.01, 0.99, 0.0)
    assert config.grad_norm_clip == 40.0
    optimizer = make_optimizer(nn.Linear(2, 2), config)
    assert isinstance(optimizer, torch.optim.RMSprop)
    settings = optimizer.defaults
    assert (settings["lr"], settings["eps"], settings["alpha"], settings["momentum"]) == (2e-4, 0.01, 0.99, 0.0)
    assert not settings["centered"] and settings["weight_decay"] == 0


def test_vtrace_cuts_traces_at_c_bar_1():
    # rho = 3 everywhere, rho-bar off: vs_0 - V_0 = rho_0 delta_0 + gamma c_0 rho_1 delta_1 with c_0 = min(1, 3)
    ones = torch.ones(2, 1)
    returns = vtrace.from_importance_weights(log_rhos=ones * math.log(3.0), discounts=ones * 0.5, rewards=ones,
                                             values=ones * 0, bootstrap_value=torch.zeros(1), clip_rho_threshold=None)
    torch.testing.assert_close(returns.vs[0], torch.tensor([3.0 + 0.5 * 1.0 * 3.0]))


def linear_sizes(module: nn.Module) -> list[tuple[int, int]]:
    return [(m.in_features, m.out_features) for m in module.modules() if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("name", ["s3ta", "fixed-query", "l2-keys"])
def test_s3ta_preset_sizes_as_built(name):
    config = agents.config_for(name)
    assert (config.conv_channels, config.conv_kernels, config.conv_strides) == ((32, 64, 64), (8, 4, 3), (4, 2, 1))
    assert (config.key_channels, config.value_channels, config.basis_channels) == (8, 120, 64)
    assert config.num_heads == 4 and config.lstm_size == 256 and config.convlstm_kernel == 3
    agent = agents.build(name, ATARI, 18)
    convs = [m for m in agent.vision.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    sizes, map_size = [], torch.zeros(1, 3, 210, 160)
    for layer in agent.vision:
        map_size = layer(map_size)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(map_size.shape[-2:]))
    assert sizes == [(53, 40), (27, 20), (27, 20)]
    assert agent.convlstm.hidden_channels == (128 if name != "l2-keys" else 4 * 8 + 120)  # c = C_k (x N) + C_v
    assert agent.convlstm.input_conv.kernel_size == agent.convlstm.hidden_conv.kernel_size == (3, 3)
    assert tuple(agent.basis.shape) == (64, 27, 20) and agent.attention_shape == (4, 27, 20)
    answers, queries = 4 * (120 + 64), 4 * (8 + 64)
    if name == "s3ta":
        assert linear_sizes(agent.query_net) == [(256, 128), (128, 288), (288, 288)]
    if name == "fixed-query":
        assert tuple(agent.fixed_queries.shape) == (4, 72)
    core_input = answers + (0 if name == "l2-keys" else queries) + 18 + 1
    assert linear_sizes(agent.core_mlp) == [(core_input, 512), (512, 256)]
    assert (agent.core.cell.input_size, agent.core.cell.hidden_size) == (256, 256)
    assert linear_sizes(agent.policy) == [(256, 18)] and linear_sizes(agent.baseline) == [(256, 1)]


@pytest.mark.parametrize("name", ["feedforward", "lstm"])
def test_baseline_presets(name):
    config = agents.config_for(name)
    assert config.stage_channels == (16, 32, 32) and config.blocks_per_stage == 2 and config.hidden_size == 256
    agent = agents.build(name, ATARI, 18)
    convs = [m for m in agent.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16] * 5 + [32] * 5 + [32] * 5  # a conv and 2 blocks per stage
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert linear_sizes(agent.encoder)[-1][1] == 256
    if name == "lstm":
        assert (agent.core.cell.input_size, agent.core.cell.hidden_size) == (256 + 18 + 1, 256)
    assert linear_sizes(agent.policy) == [(256, 18)] and linear_sizes(agent.baseline) == [(256, 1)]


def test_keys_are_the_first_channels_and_queries_read_h():
    torch.manual_seed(0)
    agent = agents.build("s3ta", ATARI, 18)
    B = 2
    g = torch.Generator().manual_seed(1)
    inputs = AgentInputs(obs=torch.randint(0, 256, (1, B, *ATARI), generator=g, dtype=torch.uint8),
                         prev_action=torch.zeros(1, B, dtype=torch.long), prev_reward=torch.zeros(1, B),
                         done=torch.zeros(1, B, dtype=torch.bool))
    state = tuple(torch.randn(s.shape, generator=g) for s in agent.initial_state(B))  # h and c differ
    with torch.no_grad():
        output, (vision_h, *_) = agent(inputs, state)
        # queries from the policy LSTM's previous hidden state h (state[2]); its cell state is state[3]
        expected_queries = agent.query_net(state[2]).view(B, 4, 72)
    torch.testing.assert_close(output.queries[0], expected_queries)
    # content logits = q_K . K with K = the first C_k = 8 channels of O, the ConvLSTM's output
    keys = vision_h[:, :8]  # [B, 8, 27, 20]
    expected_content = torch.einsum("bnk,bkhw->bnhw", expected_queries[..., :8], keys)
    torch.testing.assert_close(output.content_logits[0], expected_content)
