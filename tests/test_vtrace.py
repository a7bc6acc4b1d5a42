"""V-trace against an O(T²) loop written from the paper's formula, plus property tests.

The canonical inputs follow DeepMind scalable_agent's ``vtrace_test.py`` (spec section 3).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from s3ta import vtrace

DTYPE = torch.float64


def ground_truth_vtrace(
    log_rhos,
    discounts,
    rewards,
    values,
    bootstrap_value,
    clip_rho_threshold,
    clip_pg_rho_threshold,
):
    """vs_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t-1} γ_i)(Π_{i=s}^{t-1} c_i) ρ_t δ_t, term by term."""
    T = log_rhos.shape[0]
    rhos = torch.exp(log_rhos)
    clipped_rhos = rhos if clip_rho_threshold is None else torch.clamp(rhos, max=clip_rho_threshold)
    clipped_pg_rhos = (
        rhos if clip_pg_rho_threshold is None else torch.clamp(rhos, max=clip_pg_rho_threshold)
    )
    cs = torch.clamp(rhos, max=1.0)
    values_t_plus_1 = torch.cat([values[1:], bootstrap_value[None]], dim=0)

    vs = []
    for s in range(T):
        v_s = values[s].clone()
        for t in range(s, T):
            delta_t = rewards[t] + discounts[t] * values_t_plus_1[t] - values[t]
            v_s += (
                torch.prod(discounts[s:t], dim=0)
                * torch.prod(cs[s:t], dim=0)
                * clipped_rhos[t]
                * delta_t
            )
        vs.append(v_s)
    vs = torch.stack(vs)

    vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value[None]], dim=0)
    pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_t_plus_1 - values)
    return vs, pg_advantages


def scalable_agent_inputs(T: int, B: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    log_rhos = 5.0 * (torch.arange(T * B, dtype=DTYPE) / (T * B) - 0.5)  # ρ on both sides of ρ̄
    log_rhos = log_rhos.reshape(T, B)
    discounts = torch.tensor([[0.9 / (b + 1) for b in range(B)] for _ in range(T)], dtype=DTYPE)
    rewards = torch.randn(T, B, dtype=DTYPE, generator=generator)
    values = torch.randn(T, B, dtype=DTYPE, generator=generator)
    bootstrap_value = torch.randn(B, dtype=DTYPE, generator=generator)
    return dict(
        log_rhos=log_rhos,
        discounts=discounts,
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
    )


THRESHOLDS = [(3.7, 2.2), (None, None), (1.0, 1.0), (None, 2.2)]
CANONICAL = dict(clip_rho_threshold=3.7, clip_pg_rho_threshold=2.2)  # scalable_agent's ρ̄, ρ̄_pg


@pytest.mark.parametrize("batch_size", [1, 5])
@pytest.mark.parametrize("clip_rho_threshold, clip_pg_rho_threshold", THRESHOLDS)
def test_matches_ground_truth(batch_size, clip_rho_threshold, clip_pg_rho_threshold):
    inputs = scalable_agent_inputs(T=5, B=batch_size)
    out = vtrace.from_importance_weights(
        **inputs,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    vs, pg_advantages = ground_truth_vtrace(
        **inputs,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    assert isinstance(out, vtrace.VTraceReturns)
    assert out.vs.shape == (5, batch_size) and out.pg_advantages.shape == (5, batch_size)
    torch.testing.assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.pg_advantages, pg_advantages, rtol=1e-10, atol=1e-10)


def test_clipping_is_exercised():
    """The canonical ρ span both sides of 3.7 and 2.2, so clipping changes the answer."""
    inputs = scalable_agent_inputs(T=5, B=5)
    rhos = inputs["log_rhos"].exp()
    assert (rhos > 3.7).any() and (rhos < 1.0).any()
    clipped = vtrace.from_importance_weights(**inputs, **CANONICAL)
    unclipped = vtrace.from_importance_weights(
        **inputs, clip_rho_threshold=None, clip_pg_rho_threshold=None
    )
    assert not torch.allclose(clipped.vs, unclipped.vs)
    assert not torch.allclose(clipped.pg_advantages, unclipped.pg_advantages)


def test_on_policy_equals_discounted_return():
    """ρ = c = 1: vs_s is the bootstrapped discounted return Σ γ^{t−s} r_t + γ^{T−s} V(x_T)."""
    T, B, gamma = 6, 3, 0.9
    generator = torch.Generator().manual_seed(1)
    rewards = torch.randn(T, B, dtype=DTYPE, generator=generator)
    values = torch.randn(T, B, dtype=DTYPE, generator=generator)
    bootstrap_value = torch.randn(B, dtype=DTYPE, generator=generator)
    out = vtrace.from_importance_weights(
        log_rhos=torch.zeros(T, B, dtype=DTYPE),
        discounts=torch.full((T, B), gamma, dtype=DTYPE),
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
    )
    for s in range(T):
        expected = sum(gamma ** (t - s) * rewards[t] for t in range(s, T))
        expected = expected + gamma ** (T - s) * bootstrap_value
        torch.testing.assert_close(out.vs[s], expected)
    expected_adv = rewards + gamma * torch.cat([out.vs[1:], bootstrap_value[None]]) - values
    torch.testing.assert_close(out.pg_advantages, expected_adv)


@pytest.mark.parametrize("batch_size", [1, 5])
def test_zero_discount_matches_ground_truth(batch_size):
    inputs = scalable_agent_inputs(T=5, B=batch_size, seed=2)
    inputs["discounts"][2] = 0.0  # every unroll's episode ends on transition 2
    if batch_size > 1:
        inputs["discounts"][0, 1] = 0.0
    out = vtrace.from_importance_weights(**inputs, **CANONICAL)
    vs, pg_advantages = ground_truth_vtrace(**inputs, **CANONICAL)
    torch.testing.assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.pg_advantages, pg_advantages, rtol=1e-10, atol=1e-10)


def test_zero_discount_cuts_the_trace():
    """With γ_k = 0, nothing after transition k reaches vs[:k+1] or pg_advantages[:k+1]."""
    T, B, k = 6, 4, 2
    inputs = scalable_agent_inputs(T=T, B=B, seed=3)
    inputs["discounts"][k] = 0.0
    before = vtrace.from_importance_weights(**inputs)

    generator = torch.Generator().manual_seed(4)
    perturbed = {name: tensor.clone() for name, tensor in inputs.items()}
    perturbed["rewards"][k + 1 :] += torch.randn(T - k - 1, B, dtype=DTYPE, generator=generator)
    perturbed["values"][k + 1 :] += torch.randn(T - k - 1, B, dtype=DTYPE, generator=generator)
    perturbed["log_rhos"][k + 1 :] += torch.randn(T - k - 1, B, dtype=DTYPE, generator=generator)
    perturbed["bootstrap_value"] += 10.0
    after = vtrace.from_importance_weights(**perturbed)

    torch.testing.assert_close(after.vs[: k + 1], before.vs[: k + 1], rtol=0, atol=0)
    torch.testing.assert_close(
        after.pg_advantages[: k + 1], before.pg_advantages[: k + 1], rtol=0, atol=0
    )
    assert not torch.allclose(after.vs[k + 1 :], before.vs[k + 1 :])
    # At the boundary the target is one step: vs_k = V_k + ρ_k (r_k − V_k).
    rho_k = inputs["log_rhos"][k].exp().clamp(max=1.0)
    torch.testing.assert_close(
        before.vs[k],
        inputs["values"][k] + rho_k * (inputs["rewards"][k] - inputs["values"][k]),
    )


@pytest.mark.parametrize("k", [0, 2, 4])
def test_episode_boundary_equals_two_separate_traces(k):
    """A trace with γ_k = 0 equals the trace over [0, k] (bootstrapped with V(x_{k+1}), which
    γ_k = 0 ignores) followed by an independent trace over [k+1, T)."""
    T, B = 6, 3
    inputs = scalable_agent_inputs(T=T, B=B, seed=5)
    inputs["discounts"][k] = 0.0
    kwargs = CANONICAL
    joint = vtrace.from_importance_weights(**inputs, **kwargs)

    first = vtrace.from_importance_weights(
        log_rhos=inputs["log_rhos"][: k + 1],
        discounts=inputs["discounts"][: k + 1],
        rewards=inputs["rewards"][: k + 1],
        values=inputs["values"][: k + 1],
        bootstrap_value=inputs["values"][k + 1],
        **kwargs,
    )
    second = vtrace.from_importance_weights(
        log_rhos=inputs["log_rhos"][k + 1 :],
        discounts=inputs["discounts"][k + 1 :],
        rewards=inputs["rewards"][k + 1 :],
        values=inputs["values"][k + 1 :],
        bootstrap_value=inputs["bootstrap_value"],
        **kwargs,
    )
    torch.testing.assert_close(joint.vs, torch.cat([first.vs, second.vs]), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        joint.pg_advantages,
        torch.cat([first.pg_advantages, second.pg_advantages]),
        rtol=1e-12,
        atol=1e-12,
    )


def test_batched_equals_per_unroll():
    inputs = scalable_agent_inputs(T=5, B=5, seed=6)
    batched = vtrace.from_importance_weights(**inputs, **CANONICAL)
    for b in range(5):
        single = vtrace.from_importance_weights(
            log_rhos=inputs["log_rhos"][:, b : b + 1],
            discounts=inputs["discounts"][:, b : b + 1],
            rewards=inputs["rewards"][:, b : b + 1],
            values=inputs["values"][:, b : b + 1],
            bootstrap_value=inputs["bootstrap_value"][b : b + 1],
            **CANONICAL,
        )
        torch.testing.assert_close(batched.vs[:, b : b + 1], single.vs)
        torch.testing.assert_close(batched.pg_advantages[:, b : b + 1], single.pg_advantages)


def logits_inputs(T=5, B=4, A=3, seed=7):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        behaviour_policy_logits=torch.randn(T, B, A, dtype=DTYPE, generator=generator),
        target_policy_logits=torch.randn(T, B, A, dtype=DTYPE, generator=generator),
        actions=torch.randint(0, A, (T, B), generator=generator),
        discounts=torch.full((T, B), 0.95, dtype=DTYPE),
        rewards=torch.randn(T, B, dtype=DTYPE, generator=generator),
        values=torch.randn(T, B, dtype=DTYPE, generator=generator),
        bootstrap_value=torch.randn(B, dtype=DTYPE, generator=generator),
    )


@pytest.mark.parametrize("clip_rho_threshold, clip_pg_rho_threshold", THRESHOLDS)
def test_from_logits_equals_from_importance_weights(clip_rho_threshold, clip_pg_rho_threshold):
    inputs = logits_inputs()
    kwargs = dict(
        clip_rho_threshold=clip_rho_threshold, clip_pg_rho_threshold=clip_pg_rho_threshold
    )
    out = vtrace.from_logits(**inputs, **kwargs)
    assert isinstance(out, vtrace.VTraceFromLogitsReturns)

    actions = inputs["actions"]
    behaviour_log_probs = F.log_softmax(inputs["behaviour_policy_logits"], dim=-1)
    target_log_probs = F.log_softmax(inputs["target_policy_logits"], dim=-1)
    T, B = actions.shape
    expected_behaviour = torch.empty(T, B, dtype=DTYPE)
    expected_target = torch.empty(T, B, dtype=DTYPE)
    for t in range(T):
        for b in range(B):
            expected_behaviour[t, b] = behaviour_log_probs[t, b, actions[t, b]]
            expected_target[t, b] = target_log_probs[t, b, actions[t, b]]
    torch.testing.assert_close(out.behaviour_action_log_probs, expected_behaviour)
    torch.testing.assert_close(out.target_action_log_probs, expected_target)
    torch.testing.assert_close(out.log_rhos, expected_target - expected_behaviour)

    reference = vtrace.from_importance_weights(
        log_rhos=expected_target - expected_behaviour,
        discounts=inputs["discounts"],
        rewards=inputs["rewards"],
        values=inputs["values"],
        bootstrap_value=inputs["bootstrap_value"],
        **kwargs,
    )
    torch.testing.assert_close(out.vs, reference.vs)
    torch.testing.assert_close(out.pg_advantages, reference.pg_advantages)


def test_action_log_probs():
    logits = torch.tensor([[[0.0, math.log(3.0)]]], dtype=DTYPE)  # [1, 1, 2], π = (1/4, 3/4)
    actions = torch.tensor([[1]])
    torch.testing.assert_close(
        vtrace.action_log_probs(logits, actions), torch.tensor([[math.log(0.75)]], dtype=DTYPE)
    )


def test_no_gradient_through_targets():
    inputs = logits_inputs()
    for tensor in inputs.values():
        if tensor.is_floating_point():
            tensor.requires_grad_(True)
    out = vtrace.from_logits(**inputs)
    assert not out.vs.requires_grad
    assert not out.pg_advantages.requires_grad
    # The log-probabilities keep their graph, so the policy-gradient loss can use them.
    assert out.target_action_log_probs.requires_grad

    raw = scalable_agent_inputs(T=5, B=2)
    for tensor in raw.values():
        tensor.requires_grad_(True)
    out = vtrace.from_importance_weights(**raw)
    assert not out.vs.requires_grad and out.vs.grad_fn is None
    assert not out.pg_advantages.requires_grad and out.pg_advantages.grad_fn is None


def test_shape_errors():
    good = scalable_agent_inputs(T=5, B=3)

    def call(**overrides):
        return vtrace.from_importance_weights(**{**good, **overrides})

    with pytest.raises(ValueError, match="log_rhos"):
        call(log_rhos=good["log_rhos"][..., None])
    with pytest.raises(ValueError, match="discounts"):
        call(discounts=good["discounts"][:4])
    with pytest.raises(ValueError, match="rewards"):
        call(rewards=good["rewards"].T)
    with pytest.raises(ValueError, match="values"):
        call(values=good["values"][..., None])
    with pytest.raises(ValueError, match="bootstrap_value"):
        call(bootstrap_value=good["bootstrap_value"][None])
    with pytest.raises(ValueError, match="bootstrap_value"):
        call(bootstrap_value=good["bootstrap_value"][:2])
    with pytest.raises(ValueError, match="T >= 1"):
        call(**{name: tensor[:0] for name, tensor in good.items() if name != "bootstrap_value"})
    with pytest.raises(ValueError, match="clip_rho_threshold"):
        call(clip_rho_threshold=0.0)

    logits = logits_inputs(T=5, B=4, A=3)

    def call_logits(**overrides):
        return vtrace.from_logits(**{**logits, **overrides})

    with pytest.raises(ValueError, match="same"):
        call_logits(target_policy_logits=logits["target_policy_logits"][..., :2])
    with pytest.raises(ValueError, match="policy_logits"):
        call_logits(
            behaviour_policy_logits=logits["behaviour_policy_logits"][0],
            target_policy_logits=logits["target_policy_logits"][0],
        )
    with pytest.raises(ValueError, match="actions"):
        call_logits(actions=logits["actions"][:3])
    with pytest.raises(ValueError, match="integer"):
        call_logits(actions=logits["actions"].to(DTYPE))
    with pytest.raises(ValueError, match="values"):
        call_logits(values=logits["values"][:, :2])
