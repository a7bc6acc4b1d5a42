"""The IMPALA loss: hand-computed small cases, sum reduction, gradients and the entropy sign."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s3ta import losses, vtrace

DTYPE = torch.float64


def hand_case():
    """T = 2, B = 1, A = 2, on-policy (ρ = 1), so V-trace targets are n-step returns."""
    target_logits = torch.tensor(
        [[[math.log(3.0), 0.0]], [[0.0, 0.0]]], dtype=DTYPE
    )  # π(·|x_0) = (3/4, 1/4), π(·|x_1) = (1/2, 1/2)
    return dict(
        target_logits=target_logits,
        values=torch.tensor([[0.5], [0.25]], dtype=DTYPE),
        bootstrap_value=torch.tensor([2.0], dtype=DTYPE),
        behaviour_logits=target_logits.clone(),
        actions=torch.tensor([[0], [1]]),
        rewards=torch.tensor([[1.0], [0.0]], dtype=DTYPE),
        discounts=torch.tensor([[0.5], [0.5]], dtype=DTYPE),
    )


def random_case(T=5, B=3, A=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        target_logits=torch.randn(T, B, A, dtype=DTYPE, generator=generator),
        values=torch.randn(T, B, dtype=DTYPE, generator=generator),
        bootstrap_value=torch.randn(B, dtype=DTYPE, generator=generator),
        behaviour_logits=torch.randn(T, B, A, dtype=DTYPE, generator=generator),
        actions=torch.randint(0, A, (T, B), generator=generator),
        rewards=losses.clip_rewards(2.0 * torch.randn(T, B, dtype=DTYPE, generator=generator)),
        discounts=0.99 * (torch.rand(T, B, dtype=DTYPE, generator=generator) > 0.2).to(DTYPE),
    )


def test_hand_computed_on_policy():
    # vs_1 = r_1 + γ V(x_2) = 0 + 0.5·2 = 1;  vs_0 = r_0 + γ vs_1 = 1 + 0.5·1 = 1.5
    # adv_0 = r_0 + γ vs_1 − V_0 = 1 + 0.5 − 0.5 = 1;  adv_1 = 0 + 0.5·2 − 0.25 = 0.75
    out = losses.impala_loss(**hand_case(), baseline_cost=0.5, entropy_cost=0.01)

    policy_gradient = -(math.log(0.75) * 1.0 + math.log(0.5) * 0.75)
    baseline = 0.5 * 0.5 * ((1.5 - 0.5) ** 2 + (1.0 - 0.25) ** 2)  # = 0.390625
    entropy_0 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    entropy_1 = math.log(2.0)
    entropy = -0.01 * (entropy_0 + entropy_1)

    assert out.policy_gradient.item() == pytest.approx(policy_gradient, rel=1e-12)
    assert out.baseline.item() == pytest.approx(0.390625, rel=1e-12)
    assert out.baseline.item() == pytest.approx(baseline, rel=1e-12)
    assert out.entropy.item() == pytest.approx(entropy, rel=1e-12)
    assert out.total.item() == pytest.approx(policy_gradient + baseline + entropy, rel=1e-12)
    assert out.mean_policy_entropy.item() == pytest.approx((entropy_0 + entropy_1) / 2, rel=1e-12)
    assert out.mean_abs_advantage.item() == pytest.approx((1.0 + 0.75) / 2, rel=1e-12)
    assert out.mean_clipped_rho.item() == pytest.approx(1.0, rel=1e-12)
    assert out.mean_vs.item() == pytest.approx((1.5 + 1.0) / 2, rel=1e-12)
    for value in out:
        assert value.shape == ()


@pytest.mark.parametrize(
    "clip_rho_threshold, clip_pg_rho_threshold, rho_bar, rho_pg_bar",
    [(1.0, 1.0, 1.0, 1.0), (None, None, 1.5, 1.5)],
)
def test_hand_computed_off_policy(
    clip_rho_threshold, clip_pg_rho_threshold, rho_bar, rho_pg_bar
):
    # T = 1: μ(a) = 1/2, π(a) = 3/4, so ρ = 1.5; clipped to 1 by ρ̄ = 1, kept without a threshold.
    out = losses.impala_loss(
        target_logits=torch.tensor([[[math.log(3.0), 0.0]]], dtype=DTYPE),
        values=torch.tensor([[0.5]], dtype=DTYPE),
        bootstrap_value=torch.tensor([1.0], dtype=DTYPE),
        behaviour_logits=torch.tensor([[[0.0, 0.0]]], dtype=DTYPE),
        actions=torch.tensor([[0]]),
        rewards=torch.tensor([[1.0]], dtype=DTYPE),
        discounts=torch.tensor([[0.9]], dtype=DTYPE),
        baseline_cost=1.0,
        entropy_cost=0.0,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    delta = 1.0 + 0.9 * 1.0 - 0.5  # r + γ V(x_1) − V(x_0) = 1.4
    vs = 0.5 + rho_bar * delta
    advantage = rho_pg_bar * delta  # vs_{t+1} is the bootstrap value at the last step
    assert out.baseline.item() == pytest.approx(0.5 * (vs - 0.5) ** 2, rel=1e-12)
    assert out.policy_gradient.item() == pytest.approx(-math.log(0.75) * advantage, rel=1e-12)
    assert out.entropy.item() == 0.0
    assert out.mean_clipped_rho.item() == pytest.approx(rho_bar, rel=1e-12)
    assert out.mean_vs.item() == pytest.approx(vs, rel=1e-12)


def test_sum_reduction_doubles_with_duplicated_batch():
    case = random_case()
    doubled = {
        name: torch.cat([tensor, tensor], dim=0 if name == "bootstrap_value" else 1)
        for name, tensor in case.items()
    }
    single = losses.impala_loss(**case)
    double = losses.impala_loss(**doubled)
    for name in ("total", "policy_gradient", "baseline", "entropy"):
        torch.testing.assert_close(getattr(double, name), 2.0 * getattr(single, name))
    for name in ("mean_policy_entropy", "mean_abs_advantage", "mean_clipped_rho", "mean_vs"):
        torch.testing.assert_close(getattr(double, name), getattr(single, name))


def test_sum_reduction_over_time():
    """Splitting an unroll at an episode boundary (γ_k = 0) splits the summed loss exactly."""
    case = random_case(T=6, B=2, seed=1)
    k = 2
    case["discounts"][k] = 0.0
    joint = losses.impala_loss(**case)
    first = {name: tensor[: k + 1] for name, tensor in case.items() if name != "bootstrap_value"}
    first["bootstrap_value"] = case["values"][k + 1]
    second = {name: tensor[k + 1 :] for name, tensor in case.items() if name != "bootstrap_value"}
    second["bootstrap_value"] = case["bootstrap_value"]
    parts = [losses.impala_loss(**first), losses.impala_loss(**second)]
    for name in ("total", "policy_gradient", "baseline", "entropy"):
        expected = sum(getattr(part, name) for part in parts)
        torch.testing.assert_close(getattr(joint, name), expected)


def test_gradients_flow_into_logits_and_values_only():
    case = random_case()
    for name in ("target_logits", "values", "bootstrap_value", "behaviour_logits"):
        case[name].requires_grad_(True)
    out = losses.impala_loss(**case, baseline_cost=0.5, entropy_cost=0.01)
    out.total.backward()

    assert case["target_logits"].grad is not None and case["target_logits"].grad.abs().sum() > 0
    assert case["values"].grad is not None and case["values"].grad.abs().sum() > 0
    # Targets are constants: the actor's logits and the bootstrap value get no gradient.
    assert case["behaviour_logits"].grad is None
    assert case["bootstrap_value"].grad is None
    for name in ("mean_policy_entropy", "mean_abs_advantage", "mean_clipped_rho", "mean_vs"):
        assert not getattr(out, name).requires_grad


def test_gradients_match_analytic_forms():
    """d baseline / dV = −baseline_cost (vs − V); d policy_gradient / dz = −adv (onehot(a) − π)."""
    case = random_case(seed=2)
    case["target_logits"].requires_grad_(True)
    case["values"].requires_grad_(True)
    out = losses.impala_loss(**case, baseline_cost=0.5, entropy_cost=0.0)
    out.total.backward()

    targets = vtrace.from_logits(
        behaviour_policy_logits=case["behaviour_logits"],
        target_policy_logits=case["target_logits"].detach(),
        actions=case["actions"],
        discounts=case["discounts"],
        rewards=case["rewards"],
        values=case["values"].detach(),
        bootstrap_value=case["bootstrap_value"],
    )
    expected_values_grad = -0.5 * (targets.vs - case["values"].detach())
    torch.testing.assert_close(case["values"].grad, expected_values_grad)

    probs = F.softmax(case["target_logits"].detach(), dim=-1)
    onehot = F.one_hot(case["actions"], probs.shape[-1]).to(DTYPE)
    expected_logits_grad = -targets.pg_advantages[..., None] * (onehot - probs)
    torch.testing.assert_close(case["target_logits"].grad, expected_logits_grad)


def test_entropy_term_rewards_exploration():
    """With zero advantages the loss is the entropy term alone: lowest for the uniform policy,
    and a gradient step on it raises the entropy."""
    T, B, A = 3, 2, 4
    zeros = dict(
        values=torch.zeros(T, B, dtype=DTYPE),
        bootstrap_value=torch.zeros(B, dtype=DTYPE),
        actions=torch.zeros(T, B, dtype=torch.int64),
        rewards=torch.zeros(T, B, dtype=DTYPE),
        discounts=torch.full((T, B), 0.99, dtype=DTYPE),
    )
    uniform = torch.zeros(T, B, A, dtype=DTYPE)
    peaked = torch.zeros(T, B, A, dtype=DTYPE)
    peaked[..., 0] = 3.0

    uniform_out = losses.impala_loss(target_logits=uniform, behaviour_logits=uniform, **zeros)
    peaked_out = losses.impala_loss(target_logits=peaked, behaviour_logits=peaked, **zeros)
    assert uniform_out.policy_gradient.item() == 0.0 and uniform_out.baseline.item() == 0.0
    assert uniform_out.entropy.item() == pytest.approx(-0.01 * T * B * math.log(A), rel=1e-12)
    assert uniform_out.entropy < 0
    assert uniform_out.total < peaked_out.total
    assert uniform_out.mean_policy_entropy > peaked_out.mean_policy_entropy

    logits = peaked.clone().requires_grad_(True)
    out = losses.impala_loss(target_logits=logits, behaviour_logits=peaked, **zeros)
    out.total.backward()
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad
    after = losses.impala_loss(target_logits=stepped, behaviour_logits=peaked, **zeros)
    assert after.mean_policy_entropy > out.mean_policy_entropy


def test_costs_scale_their_terms():
    case = random_case(seed=3)
    base = losses.impala_loss(**case, baseline_cost=1.0, entropy_cost=1.0)
    scaled = losses.impala_loss(**case, baseline_cost=0.25, entropy_cost=0.02)
    torch.testing.assert_close(scaled.baseline, 0.25 * base.baseline)
    torch.testing.assert_close(scaled.entropy, 0.02 * base.entropy)
    torch.testing.assert_close(scaled.policy_gradient, base.policy_gradient)


def test_clip_rewards():
    rewards = torch.tensor([-5.0, -1.0, -0.3, 0.0, 0.7, 1.0, 12.0])
    torch.testing.assert_close(
        losses.clip_rewards(rewards), torch.tensor([-1.0, -1.0, -0.3, 0.0, 0.7, 1.0, 1.0])
    )
    torch.testing.assert_close(
        losses.clip_rewards(rewards, bound=0.5),
        torch.tensor([-0.5, -0.5, -0.3, 0.0, 0.5, 0.5, 0.5]),
    )
    with pytest.raises(ValueError, match="bound"):
        losses.clip_rewards(rewards, bound=0.0)


def test_shape_errors():
    case = random_case(T=5, B=3, A=4)

    def call(**overrides):
        return losses.impala_loss(**{**case, **overrides})

    with pytest.raises(ValueError, match="target_logits"):
        call(target_logits=case["target_logits"][0])
    with pytest.raises(ValueError, match="values"):
        call(values=case["values"][..., None])
    with pytest.raises(ValueError, match="same"):
        call(behaviour_logits=case["behaviour_logits"][:, :2])
    with pytest.raises(ValueError, match="actions"):
        call(actions=case["actions"][:, :2])
    with pytest.raises(ValueError, match="rewards"):
        call(rewards=case["rewards"][:4])
    with pytest.raises(ValueError, match="discounts"):
        call(discounts=case["discounts"][:, None])
    with pytest.raises(ValueError, match="bootstrap_value"):
        call(bootstrap_value=case["bootstrap_value"][:1])
