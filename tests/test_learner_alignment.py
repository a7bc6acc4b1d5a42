"""The learner's pairing of an unroll [T + 1, B] with the loss's T transitions: rewards, discounts,
actions, behaviour logits, values and bootstrap value, checked against values written out by hand on
a small unroll (an episode starting mid-unroll, a reward of 5 that the loss sees as 1); and the
update's gradient clipping."""

import copy

import pytest
import torch
from torch import nn

from s3ta import agents, envs
from s3ta.agents import AgentOutput
from s3ta.training import TrainConfig, learner
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs

T, B, A = 3, 2, 3


class StubAgent(nn.Module):
    """V(x_t) = the observation's pixel value + the incoming state (one number per row); policy logits
    that name the step and row. No resets: only the learner's indexing is under test."""

    num_actions = A

    def initial_state(self, batch_size: int):
        return (torch.zeros(batch_size, dtype=torch.float64),)

    def forward(self, inputs, state):
        pixel = inputs.obs[:, :, 0, 0, 0].double()  # [T + 1, B]
        baseline = pixel + state[0]
        logits = pixel.unsqueeze(-1) + 0.1 * torch.arange(A, dtype=torch.float64)  # [T + 1, B, A]
        return AgentOutput(policy_logits=logits, baseline=baseline), state


def hand_built_unroll() -> dict[str, torch.Tensor]:
    steps = torch.arange(T + 1).view(-1, 1) * 10 + torch.arange(B)  # [T + 1, B]: 10 t + b
    return {
        "obs": steps.to(torch.uint8).view(T + 1, B, 1, 1, 1),
        # step 0 repeats the previous unroll's last step; row 1's next episode starts at step 2
        "done": torch.tensor([[True, False], [False, False], [False, True], [False, False]]),
        # reward[t] is received on arriving at step t
        "reward": torch.tensor([[0.0, 0.0], [5.0, -0.5], [0.25, -3.0], [-1.0, 1.0]], dtype=torch.float64),
        "action": torch.tensor([[0, 1], [2, 0], [1, 2], [2, 2]]),
        "prev_action": torch.zeros(T + 1, B, dtype=torch.long),
        "behaviour_logits": torch.arange((T + 1) * B * A, dtype=torch.float64).view(T + 1, B, A),
    }


@pytest.fixture
def loss_inputs(monkeypatch):
    """The keyword arguments forward_loss gives impala_loss for the hand-built unroll."""
    captured = {}

    def capture(**kwargs):
        captured.update(kwargs)
        return None

    monkeypatch.setattr(learner, "impala_loss", capture)
    saved_state = (torch.tensor([100.0, 200.0], dtype=torch.float64),)  # where the actor's unroll started
    learner.forward_loss(StubAgent(), hand_built_unroll(), saved_state, TrainConfig())
    return captured


def test_values_and_bootstrap_come_from_the_saved_state(loss_inputs):
    # V = 10 t + b + saved state; an agent started from zeros would give 10 t + b
    torch.testing.assert_close(loss_inputs["values"], torch.tensor([[100.0, 201.0], [110.0, 211.0],
                                                                    [120.0, 221.0]], dtype=torch.float64))
    torch.testing.assert_close(loss_inputs["bootstrap_value"], torch.tensor([130.0, 231.0], dtype=torch.float64))


def test_rewards_are_those_after_each_step_clipped(loss_inputs):
    torch.testing.assert_close(loss_inputs["rewards"], torch.tensor([[1.0, -0.5], [0.25, -1.0], [-1.0, 1.0]],
                                                                    dtype=torch.float64))


def test_discounts_cut_the_trace_where_the_next_step_starts_an_episode(loss_inputs):
    torch.testing.assert_close(loss_inputs["discounts"], torch.tensor([[0.99, 0.99], [0.99, 0.0], [0.99, 0.99]],
                                                                      dtype=torch.float64))


def test_actions_and_policies_are_those_of_each_step(loss_inputs):
    assert torch.equal(loss_inputs["actions"], torch.tensor([[0, 1], [2, 0], [1, 2]]))
    behaviour = torch.arange(T * B * A, dtype=torch.float64).view(T, B, A)  # steps 0..T-1 of the unroll
    torch.testing.assert_close(loss_inputs["behaviour_logits"], behaviour)
    target = torch.tensor([[0.0, 1.0], [10.0, 11.0], [20.0, 21.0]], dtype=torch.float64).unsqueeze(-1)
    torch.testing.assert_close(loss_inputs["target_logits"], target + torch.tensor([0.0, 0.1, 0.2],
                                                                                  dtype=torch.float64))


def test_loss_costs_and_thresholds_are_the_configs(loss_inputs):
    config = TrainConfig()
    assert loss_inputs["baseline_cost"] == config.baseline_cost
    assert loss_inputs["entropy_cost"] == config.entropy_cost
    assert loss_inputs["clip_rho_threshold"] == config.clip_rho_threshold
    assert loss_inputs["clip_pg_rho_threshold"] == config.clip_pg_rho_threshold


def test_a_huge_gradient_is_rescaled_to_norm_40():
    small = {"stage_channels": [4, 8, 8], "hidden_size": 32, "lstm_size": 32}
    config = TrainConfig(agent="lstm", agent_overrides=small, unroll_length=5, batch_size=2, baseline_cost=1e4)
    env = envs.make("catch", 2, seed=0)
    torch.manual_seed(0)
    agent = agents.build("lstm", env.observation_shape, env.num_actions, **small)
    unroll, state = allocate_unroll(unroll_specs(5, 2, env.observation_shape, env.num_actions)), allocate_state(agent, 2)
    Actor(env, agent, 5, seed=0).fill(unroll, state)
    reference = copy.deepcopy(agent)

    lr = 1e-3  # plain SGD: the step is lr times the (clipped) gradient
    optimizer = torch.optim.SGD(agent.parameters(), lr=lr)
    stats = learner.learn(agent, optimizer, learner.make_scheduler(optimizer, config, 10), unroll, state, config)

    loss, _ = learner.forward_loss(reference, unroll, state, config)
    loss.total.backward()
    grads = [p.grad for p in reference.parameters() if p.grad is not None]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    assert norm > 400 and stats["grad_norm"] == pytest.approx(norm, rel=1e-4)
    with torch.no_grad():
        for p in reference.parameters():
            if p.grad is not None:
                p -= lr * p.grad * (40.0 / norm)
    for (key, updated), expected in zip(agent.named_parameters(), reference.parameters()):
        torch.testing.assert_close(updated, expected, msg=key)
