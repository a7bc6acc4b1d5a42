"""The IMPALA actor-critic loss with V-trace targets, as a pure function of tensors.

Owns the loss maths and reward clipping: tensors and numbers in, a ``LossOutput`` out; no
configs, optimisers or files. Shape letters: T = transitions per unroll, B = unrolls, A = actions.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from s3ta import vtrace

__all__ = ["LossOutput", "clip_rewards", "impala_loss"]


class LossOutput(NamedTuple):
    """Scalar (0-d) loss terms, summed over T and B, and detached diagnostics for logging.

    ``total = policy_gradient + baseline + entropy``; the costs are already applied to the
    terms. ``entropy`` is the entropy *loss* (entropy_cost · Σ π log π, i.e. minus the scaled
    entropy); the diagnostics are means over the T·B steps and carry no gradient.
    """

    total: torch.Tensor  # the loss to minimise
    policy_gradient: torch.Tensor  # −Σ log π(a_t|x_t) · pg_advantage_t
    baseline: torch.Tensor  # baseline_cost · ½ Σ (vs_t − V(x_t))²
    entropy: torch.Tensor  # entropy_cost · Σ_t Σ_a π log π
    mean_policy_entropy: torch.Tensor  # mean_t H(π(·|x_t)), in nats
    mean_abs_advantage: torch.Tensor  # mean_t |pg_advantage_t|
    mean_clipped_rho: torch.Tensor  # mean_t min(ρ̄, π(a_t)/μ(a_t))
    mean_vs: torch.Tensor  # mean_t vs_t, to compare with the values


def clip_rewards(rewards: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """Clip rewards to [−bound, bound] (IMPALA clips to [−1, 1] in the loss only)."""
    if not bound > 0:
        raise ValueError(f"bound must be positive, got {bound!r}")
    return rewards.clamp(-bound, bound)


def impala_loss(
    target_logits: torch.Tensor,
    values: torch.Tensor,
    bootstrap_value: torch.Tensor,
    behaviour_logits: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    *,
    baseline_cost: float = 0.5,
    entropy_cost: float = 0.01,
    clip_rho_threshold: float | None = 1.0,
    clip_pg_rho_threshold: float | None = 1.0,
) -> LossOutput:
    """IMPALA loss over one batch of unrolls, **summed** over T and B (TorchBeast convention).

    Time alignment: the inputs are the T transitions of an unroll. At step t the agent sees
    x_t; ``target_logits[t]`` [T, B, A] (learner, π, with gradient) and ``behaviour_logits[t]``
    (actor, μ) are its policies there, ``values[t]`` [T, B] = V(x_t) (with gradient) and
    ``actions[t]`` [T, B] (int64) was sampled from μ. ``rewards[t]`` and ``discounts[t]``
    [T, B] belong to the transition that leaves step t (x_t → x_{t+1}):
    ``discounts[t] = γ·(1 − done_{t+1})``, where ``done_{t+1}`` says an episode starts at
    x_{t+1}, so the trace is cut there. ``bootstrap_value`` [B] = V(x_T), the value of the
    observation after the last transition (it receives no gradient).

    The caller clips rewards (to [−1, 1], see :func:`clip_rewards`) and computes discounts.

        policy_gradient = −Σ log π(a_t|x_t) · pg_advantage_t   (advantages detached)
        baseline        = baseline_cost · ½ Σ (vs_t − V(x_t))²   (vs detached)
        entropy         = entropy_cost · Σ_t Σ_a π(a|x_t) log π(a|x_t)
    """
    if target_logits.dim() != 3:
        raise ValueError(f"target_logits must be [T, B, A], got shape {tuple(target_logits.shape)}")
    if tuple(values.shape) != tuple(target_logits.shape[:2]):
        raise ValueError(
            f"values must be [T, B] = {tuple(target_logits.shape[:2])} to match target_logits "
            f"{tuple(target_logits.shape)}, got shape {tuple(values.shape)}"
        )

    vtrace_returns = vtrace.from_logits(
        behaviour_policy_logits=behaviour_logits,
        target_policy_logits=target_logits,
        actions=actions,
        discounts=discounts,
        rewards=rewards,
        values=values,
        bootstrap_value=bootstrap_value,
        clip_rho_threshold=clip_rho_threshold,
        clip_pg_rho_threshold=clip_pg_rho_threshold,
    )
    vs = vtrace_returns.vs  # [T, B], detached
    pg_advantages = vtrace_returns.pg_advantages  # [T, B], detached

    policy_gradient = -(vtrace_returns.target_action_log_probs * pg_advantages).sum()
    baseline = baseline_cost * 0.5 * ((vs - values) ** 2).sum()

    target_log_probs = F.log_softmax(target_logits, dim=-1)  # [T, B, A]
    neg_entropy = (target_log_probs.exp() * target_log_probs).sum(dim=-1)  # [T, B] Σ_a π log π
    entropy = entropy_cost * neg_entropy.sum()

    total = policy_gradient + baseline + entropy

    with torch.no_grad():
        rhos = vtrace_returns.log_rhos.exp()  # [T, B]
        clipped_rhos = rhos if clip_rho_threshold is None else rhos.clamp(max=clip_rho_threshold)
        mean_policy_entropy = -neg_entropy.mean()
        mean_abs_advantage = pg_advantages.abs().mean()
        mean_clipped_rho = clipped_rhos.mean()
        mean_vs = vs.mean()

    return LossOutput(
        total=total,
        policy_gradient=policy_gradient,
        baseline=baseline,
        entropy=entropy,
        mean_policy_entropy=mean_policy_entropy,
        mean_abs_advantage=mean_abs_advantage,
        mean_clipped_rho=mean_clipped_rho,
        mean_vs=mean_vs,
    )
