"""Agents: shapes, attention normalisation and decomposition, unrolled == stepped, resets,
the spatial basis formula, ablation properties and input validation."""

import math

import pytest
import torch

from s3ta import agents
from s3ta.agents import AgentInputs

ATARI = (3, 210, 160)
SMALL_OBS = (3, 64, 64)
ATTENTION_AGENTS = ["s3ta", "s3ta-small", "fixed-query", "l2-keys", "fixed-query-small", "l2-keys-small"]


def random_inputs(T, B, obs_shape, num_actions, done_prob=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    done = torch.rand(T, B, generator=g) < done_prob
    return AgentInputs(
        obs=torch.randint(0, 256, (T, B, *obs_shape), generator=g, dtype=torch.uint8),
        prev_action=torch.randint(0, num_actions, (T, B), generator=g),
        prev_reward=torch.randn(T, B, generator=g) * 2,
        done=done,
    )


@pytest.mark.parametrize("name", agents.names())
@pytest.mark.parametrize("obs_shape", [ATARI, SMALL_OBS])
def test_output_shapes(name, obs_shape):
    torch.manual_seed(0)
    agent = agents.build(name, obs_shape, 18)
    T, B = 5, 2
    with torch.no_grad():
        out, state = agent(random_inputs(T, B, obs_shape, 18), agent.initial_state(B))
    assert out.policy_logits.shape == (T, B, 18)
    assert out.baseline.shape == (T, B)
    assert len(state) == len(agent.initial_state(B))
    if name not in ATTENTION_AGENTS:
        assert out.attention is None
        return
    N, h, w = agent.attention_shape
    assert out.attention.shape == (T, B, N, h, w)
    assert out.content_logits.shape == out.spatial_logits.shape == (T, B, N, h, w)
    torch.testing.assert_close(out.attention.sum(dim=(-1, -2)), torch.ones(T, B, N))
    assert (out.attention >= 0).all()
    if name.startswith("l2-keys"):
        assert out.queries is None
    else:
        assert out.queries.shape == (T, B, N, agent.config.key_channels + 64)


def test_paper_configuration_sizes():
    agent = agents.build("s3ta", ATARI, 18)
    assert agent.attention_shape == (4, 27, 20)
    assert agent.config.vision_channels == 128 and agent.config.basis_channels == 64
    assert agent.query_size == 72
    # query MLP 256 -> 128 -> 288 -> 288 and core MLP 512 -> 256 -> LSTM 256
    linear = [m for m in agent.query_net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(256, 128), (128, 288), (288, 288)]
    core = [m for m in agent.core_mlp if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in core] == [512, 256]
    assert core[0].in_features == 4 * 184 + 4 * 72 + 18 + 1
    assert agent.core.hidden_size == 256


def test_small_agent_keeps_heads_and_map():
    for shape in (ATARI, SMALL_OBS):
        heads, h, w = agents.build("s3ta-small", shape, 3).attention_shape
        assert heads >= 4 and h >= 8 and w >= 8


@pytest.mark.parametrize("name", agents.names())
def test_unrolled_equals_single_steps(name):
    torch.manual_seed(1)
    agent = agents.build(name, SMALL_OBS, 5).double()
    T, B = 6, 3
    inputs = random_inputs(T, B, SMALL_OBS, 5, done_prob=0.3, seed=2)
    with torch.no_grad():
        state0 = tuple(torch.randn_like(s.double()) for s in agent.initial_state(B))
        unrolled, final = agent(inputs, state0)
        state, stepped = state0, []
        for t in range(T):
            step_inputs = AgentInputs(*(x[t : t + 1] for x in inputs))
            out, state = agent(step_inputs, state)
            stepped.append(out)
    for field in unrolled._fields:
        full = getattr(unrolled, field)
        if full is None:
            continue
        torch.testing.assert_close(full, torch.cat([getattr(o, field) for o in stepped]))
    for a, b in zip(final, state):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["s3ta-small", "lstm", "l2-keys"])
def test_state_reset_on_done(name):
    """A step where an episode starts ignores the incoming state, prev action and prev reward."""
    torch.manual_seed(3)
    agent = agents.build(name, SMALL_OBS, 4)
    B = 2
    inputs = random_inputs(1, B, SMALL_OBS, 4, seed=4)._replace(done=torch.ones(1, B, dtype=torch.bool))
    garbage_state = tuple(torch.randn_like(s) * 5 for s in agent.initial_state(B))
    other_action = inputs._replace(prev_action=(inputs.prev_action + 1) % 4, prev_reward=inputs.prev_reward + 3)
    with torch.no_grad():
        reset_out, _ = agent(inputs, garbage_state)
        fresh_out, _ = agent(other_action, agent.initial_state(B))
        not_done_out, _ = agent(inputs._replace(done=torch.zeros(1, B, dtype=torch.bool)), garbage_state)
    torch.testing.assert_close(reset_out.policy_logits, fresh_out.policy_logits)
    torch.testing.assert_close(reset_out.baseline, fresh_out.baseline)
    assert not torch.allclose(reset_out.policy_logits, not_done_out.policy_logits)


@pytest.mark.parametrize("name", ["s3ta", "s3ta-small", "fixed-query"])
def test_content_plus_spatial_logits_are_the_attention_logits(name):
    torch.manual_seed(5)
    agent = agents.build(name, SMALL_OBS, 3)
    with torch.no_grad():
        out, _ = agent(random_inputs(3, 2, SMALL_OBS, 3), agent.initial_state(2))
    logits = out.content_logits + out.spatial_logits
    T, B, N, h, w = logits.shape
    torch.testing.assert_close(torch.softmax(logits.reshape(T, B, N, h * w), -1).reshape(logits.shape), out.attention)
    # the spatial part is exactly the basis part of the query dotted with the basis
    basis = agents.spatial_basis(h, w)
    expected_spatial = torch.einsum("tbns,shw->tbnhw", out.queries[..., agent.config.key_channels:], basis)
    torch.testing.assert_close(out.spatial_logits, expected_spatial)


def test_query_attention_by_hand():
    torch.manual_seed(6)
    B, N, K, V, h, w = 2, 3, 4, 5, 3, 2
    basis = agents.spatial_basis(h, w)
    S = basis.shape[0]
    queries, keys, values = torch.randn(B, N, K + S), torch.randn(B, K, h, w), torch.randn(B, V, h, w)
    att = agents.query_attention(queries, keys, values, basis)
    key_hat = torch.cat([keys, basis.expand(B, -1, -1, -1)], 1)  # [B, K + S, h, w]
    value_hat = torch.cat([values, basis.expand(B, -1, -1, -1)], 1)
    for b in range(B):
        for n in range(N):
            logits = torch.tensor([[sum(queries[b, n, c] * key_hat[b, c, i, j] for c in range(K + S))
                                    for j in range(w)] for i in range(h)])
            weights = logits.flatten().exp() / logits.flatten().exp().sum()
            torch.testing.assert_close(att.weights[b, n].flatten(), weights, rtol=1e-4, atol=1e-6)
            answer = (weights.view(1, h * w) * value_hat[b].flatten(1)).sum(-1)
            torch.testing.assert_close(att.answers[b, n], answer, rtol=1e-4, atol=1e-5)


def test_l2_key_attention_uses_each_heads_key_norm():
    torch.manual_seed(7)
    keys, values = torch.randn(2, 4, 3, 5, 6), torch.randn(2, 7, 5, 6)
    att = agents.l2_key_attention(keys, values, agents.spatial_basis(5, 6))
    expected = torch.softmax(keys.norm(dim=2).flatten(2), -1).view(2, 4, 5, 6)
    torch.testing.assert_close(att.weights, expected)
    assert torch.count_nonzero(att.spatial_logits) == 0


def test_spatial_basis_formula():
    h, w = 27, 20
    basis = agents.spatial_basis(h, w)
    assert basis.shape == (64, h, w)

    def f(k, x, n):  # k in [0, 8): cos for u = k + 1 (k < 4), sin for u = k - 3
        u = k + 1 if k < 4 else k - 3
        return math.cos(math.pi * u * x / n) if k < 4 else math.sin(math.pi * u * x / n)

    for channel in [0, 9, 27, 36, 63]:
        r, c = divmod(channel, 8)
        for i, j in [(0, 0), (5, 7), (26, 19)]:
            assert basis[channel, i, j].item() == pytest.approx(f(r, i, h) * f(c, j, w), abs=1e-6)
    # even-even example of the spec: S_ij,(u,v) = cos(pi u i / h) cos(pi v j / w)
    assert basis[1 * 8 + 2, 3, 4].item() == pytest.approx(math.cos(2 * math.pi * 3 / h) * math.cos(3 * math.pi * 4 / w), abs=1e-6)
    assert "basis" not in agents.build("s3ta", ATARI, 4).state_dict()  # fixed, not trained, not saved


def test_fixed_queries_do_not_depend_on_state():
    agent = agents.build("fixed-query", SMALL_OBS, 3)
    q1 = agent.queries(torch.randn(2, agent.config.lstm_size))
    q2 = agent.queries(torch.randn(2, agent.config.lstm_size) * 10)
    torch.testing.assert_close(q1, q2)
    top_down = agents.build("s3ta-small", SMALL_OBS, 3)
    assert not torch.allclose(top_down.queries(torch.randn(2, 128)), top_down.queries(torch.randn(2, 128)))


def test_gradients_reach_the_query_network():
    agent = agents.build("s3ta-small", SMALL_OBS, 3)
    out, _ = agent(random_inputs(4, 2, SMALL_OBS, 3), agent.initial_state(2))
    (out.policy_logits.square().sum() + out.baseline.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.query_net.parameters())


@pytest.mark.parametrize("name", ["s3ta-small", "fixed-query"])
def test_init_gains_scale_only_their_part(name):
    """convlstm_init_gain scales the ConvLSTM's weights (not the forget bias); query_content_bias_gain
    scales the q_K part of each head's initial query, not its q_S part."""
    torch.manual_seed(0)
    plain = agents.build(name, SMALL_OBS, 3)
    torch.manual_seed(0)
    scaled = agents.build(name, SMALL_OBS, 3, convlstm_init_gain=3.0, query_content_bias_gain=30.0)
    for conv in ("input_conv", "hidden_conv"):
        torch.testing.assert_close(getattr(scaled.convlstm, conv).weight, 3 * getattr(plain.convlstm, conv).weight)
    torch.testing.assert_close(scaled.convlstm.input_conv.bias, plain.convlstm.input_conv.bias)
    keys, heads = plain.config.key_channels, plain.config.num_heads
    if name == "fixed-query":
        before, after = plain.fixed_queries, scaled.fixed_queries
    else:
        before, after = (m.query_net[-1].bias.view(heads, -1) for m in (plain, scaled))
        torch.testing.assert_close(scaled.query_net[-1].weight, plain.query_net[-1].weight)
    torch.testing.assert_close(after[:, :keys], 30 * before[:, :keys])
    torch.testing.assert_close(after[:, keys:], before[:, keys:])
    with pytest.raises(ValueError, match="convlstm_init_gain"):
        agents.build(name, SMALL_OBS, 3, convlstm_init_gain=0.0)


@pytest.mark.parametrize("name", ["s3ta-small", "l2-keys"])
def test_replicate_padding_makes_a_uniform_frame_uniform_to_the_heads(name):
    """On a frame of one non-black colour (Pong's brown background), zero padding makes the map's border
    unlike its interior, so content logits differ there; with padding_mode="replicate" every cell, in the
    vision convs and in the ConvLSTM's steps, sees the same input and the content logits are flat."""
    brown = torch.tensor([144, 72, 17], dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(3, 2, 3, 210, 160)
    inputs = AgentInputs(brown.contiguous(), torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 2),
                         torch.zeros(3, 2, dtype=torch.bool))
    spread = {}
    for mode in ("zeros", "replicate"):
        torch.manual_seed(0)
        agent = agents.build(name, ATARI, 18, padding_mode=mode, convlstm_init_gain=3.0)
        with torch.no_grad():
            output, _ = agent(inputs, agent.initial_state(2))
        spread[mode] = output.content_logits.flatten(-2).std(-1).max().item()  # over the map, worst step/head
    assert spread["zeros"] > 1e-3
    assert spread["replicate"] < 1e-5 * max(1.0, spread["zeros"])
    with pytest.raises(ValueError, match="padding_mode"):
        agents.build(name, ATARI, 18, padding_mode="reflect")


def test_describe_round_trip():
    agent = agents.build("s3ta-small", SMALL_OBS, 3, num_heads=6)
    rebuilt = agents.from_description(agents.describe(agent))
    assert rebuilt.config == agent.config and rebuilt.attention_shape[0] == 6
    rebuilt.load_state_dict(agent.state_dict())


def test_clear_errors():
    with pytest.raises(ValueError, match="s3ta-small"):
        agents.build("s3ta-smal", ATARI, 18)
    with pytest.raises(ValueError, match="no config fields"):
        agents.build("s3ta", ATARI, 18, heads=3)
    with pytest.raises(ValueError, match="queries must be one of"):
        agents.build("s3ta", ATARI, 18, queries="bottom-up")
    agent = agents.build("s3ta-small", ATARI, 18)
    with pytest.raises(ValueError, match=r"\(3, 210, 160\)"):
        agent(random_inputs(2, 1, (3, 84, 84), 18), agent.initial_state(1))
    bad_dtype = random_inputs(2, 1, ATARI, 18)
    with pytest.raises(ValueError, match="uint8"):
        agent(bad_dtype._replace(obs=bad_dtype.obs.float()), agent.initial_state(1))
    with pytest.raises(ValueError, match=r"\[T, B, C, H, W\]"):
        agent(bad_dtype._replace(obs=bad_dtype.obs[0]), agent.initial_state(1))
    with pytest.raises(ValueError, match="missing"):
        agent({"obs": bad_dtype.obs}, agent.initial_state(1))


def test_attention_override_identity_changes_nothing_and_replacement_is_used():
    torch.manual_seed(8)
    agent = agents.build("s3ta-small", SMALL_OBS, 3)
    inputs = random_inputs(3, 2, SMALL_OBS, 3)
    with torch.no_grad():
        plain, _ = agent(inputs, agent.initial_state(2))
        same, _ = agent(inputs, agent.initial_state(2), attention_override=lambda weights, t: weights)
        uniform, _ = agent(inputs, agent.initial_state(2),
                           attention_override=lambda weights, t: torch.full_like(weights, 1 / weights[0, 0].numel()))
    torch.testing.assert_close(plain.policy_logits, same.policy_logits)
    torch.testing.assert_close(uniform.attention, torch.full_like(plain.attention, 1 / 64))
    assert not torch.allclose(plain.policy_logits, uniform.policy_logits)
    with pytest.raises(ValueError, match="replacement attention"):
        agent(inputs, agent.initial_state(2), attention_override=lambda weights, t: weights[:, :2])
