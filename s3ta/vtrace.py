"""V-trace off-policy targets (Espeholt et al. 2018, IMPALA), as pure torch functions.

Owns the maths only: time-major tensors in, NamedTuples out; no configs, processes or files.
Shape letters: T = unroll length (transitions), B = batch of unrolls, A = number of actions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = [
    "VTraceReturns",
    "VTraceFromLogitsReturns",
    "action_log_probs",
    "from_importance_weights",
    "from_logits",
]


class VTraceReturns(NamedTuple):
    """V-trace targets; both are detached (no gradient flows through them)."""

    vs: torch.Tensor  # [T, B] value targets v_s
    pg_advantages: torch.Tensor  # [T, B] min(ρ̄_pg, π/μ)·(r_s + γ_s v_{s+1} − V(x_s))


class VTraceFromLogitsReturns(NamedTuple):
    """V-trace targets plus the log-probabilities they were computed from.

    ``vs`` and ``pg_advantages`` are detached; the three log-probability tensors keep the
    autograd graph of the logits they came from (so ``target_action_log_probs`` can be used
    directly in the policy-gradient loss).
    """

    vs: torch.Tensor  # [T, B]
    pg_advantages: torch.Tensor  # [T, B]
    log_rhos: torch.Tensor  # [T, B] log π(a_t|x_t) − log μ(a_t|x_t)
    behaviour_action_log_probs: torch.Tensor  # [T, B] log μ(a_t|x_t)
    target_action_log_probs: torch.Tensor  # [T, B] log π(a_t|x_t)


def _check_threshold(name: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def action_log_probs(policy_logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(actions) under ``policy_logits``: logits [T, B, A], actions [T, B] → [T, B]."""
    if policy_logits.dim() != 3:
        raise ValueError(
            f"policy_logits must be [T, B, A], got shape {tuple(policy_logits.shape)}"
        )
    if tuple(actions.shape) != tuple(policy_logits.shape[:2]):
        raise ValueError(
            f"actions must be [T, B] = {tuple(policy_logits.shape[:2])} to match policy_logits "
            f"{tuple(policy_logits.shape)}, got shape {tuple(actions.shape)}"
        )
    if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
        raise ValueError(f"actions must be an integer tensor (int64), got dtype {actions.dtype}")
    log_probs = F.log_softmax(policy_logits, dim=-1)  # [T, B, A]
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)  # [T, B]


def from_importance_weights(
    log_rhos: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceReturns:
    """V-trace targets from log importance weights log(π/μ) of the taken actions.

    All inputs are time-major over the T transitions of an unroll: ``values[t]`` = V(x_t),
    ``rewards[t]`` and ``discounts[t]`` (γ_t = γ·(1 − done), 0 where the transition ends an
    episode) belong to the transition x_t → x_{t+1}, and ``bootstrap_value`` [B] = V(x_T).

        vs_s = V(x_s) + Σ_{t≥s} (Π_{i=s}^{t-1} γ_i c_i) ρ_t δ_t,
        δ_t = r_t + γ_t V(x_{t+1}) − V(x_t),  ρ_t = min(ρ̄, π/μ),  c_i = min(1, π/μ),

    computed by the backward recursion vs_s − V(x_s) = ρ_s δ_s + γ_s c_s (vs_{s+1} − V(x_{s+1})),
    vectorised over B. The trace-cutting threshold c̄ is fixed at 1 (IMPALA). A threshold of
    None means no clipping. The result is computed under ``torch.no_grad()``.
    """
    if log_rhos.dim() != 2:
        raise ValueError(f"log_rhos must be [T, B], got shape {tuple(log_rhos.shape)}")
    T, B = log_rhos.shape
    if T < 1:
        raise ValueError("V-trace needs at least one time step (T >= 1), got T = 0")
    for name, tensor in (("discounts", discounts), ("rewards", rewards), ("values", values)):
        if tuple(tensor.shape) != (T, B):
            raise ValueError(
                f"{name} must be [T, B] = {(T, B)} like log_rhos, "
                f"got shape {tuple(tensor.shape)}"
            )
    if tuple(bootstrap_value.shape) != (B,):
        raise ValueError(
            f"bootstrap_value must be [B] = {(B,)}, got shape {tuple(bootstrap_value.shape)}"
        )
    _check_threshold("clip_rho_threshold", clip_rho_threshold)
    _check_threshold("clip_pg_rho_threshold", clip_pg_rho_threshold)

    with torch.no_grad():
        rhos = torch.exp(log_rhos)  # [T, B]
        clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
        cs = rhos.clamp(max=1.0)  # [T, B]

        values_t_plus_1 = torch.cat([values[1:], bootstrap_value.unsqueeze(0)], dim=0)  # [T, B]
        deltas = clipped_rhos * (rewards + discounts * values_t_plus_1 - values)  # [T, B]

        acc = torch.zeros_like(bootstrap_value)  # [B] vs_{t+1} − V(x_{t+1}), 0 past the end
        vs_minus_v_xs = []
        for t in reversed(range(T)):
            acc = deltas[t] + discounts[t] * cs[t] * acc
            vs_minus_v_xs.append(acc)
        vs = torch.stack(vs_minus_v_xs[::-1]) + values  # [T, B]

        vs_t_plus_1 = torch.cat([vs[1:], bootstrap_value.unsqueeze(0)], dim=0)  # [T, B]
        clipped_pg_rhos = (
            rhos if clip_pg_rho_threshold is None else rhos.clamp(max=clip_pg_rho_threshold)
        )
        pg_advantages = clipped_pg_rhos * (rewards + discounts * vs_t_plus_1 - values)  # [T, B]

    return VTraceReturns(vs=vs, pg_advantages=pg_advantages)


def from_logits(
    behaviour_policy_logits: torch.Tensor,
    target_policy_logits: torch.Tensor,
    actions: torch.Tensor,
    discounts: torch.Tensor,
    rewards: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> VTraceFromLogitsReturns:
    """V-trace targets from behaviour (actor, μ) and target (learner, π) logits [T, B, A].

    ``actions`` [T, B] (int64) are the actions the behaviour policy took; the importance
    weights are log_rhos = log π(a) − log μ(a). Same time alignment and clipping as
    :func:`from_importance_weights`, which this equals on those log ratios.
    """
    if tuple(behaviour_policy_logits.shape) != tuple(target_policy_logits.shape):
        raise ValueError(
            "behaviour_policy_logits and target_policy_logits must have the same [T, B, A] "
            f"shape, got {tuple(behaviour_policy_logits.shape)} and "
            f"{tuple(target_policy_logits.shape)}"
        )
    behaviour_action_log_probs = action_log_probs(behaviour_policy_logits, actions)  # [T, B]
    target_action_log_probs = action_log_probs(target_policy_logits, actions)  # [T, B]
    log_rhos = target_action_log_probs - behaviour_action_log_probs  # [T, B]
    vtrace_returns = from_importance_weights(
        log_rhos=log_rhos,
        discounts=discounts,
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    return VTraceFromLogitsReturns(
        vs=vtrace_returns.vs,
        pg_advantages=vtrace_returns.pg_advantages,
        log_rhos=log_rhos,
        behaviour_action_log_probs=behaviour_action_log_probs,
        target_action_log_probs=target_action_log_probs,
    )
