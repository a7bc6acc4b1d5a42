"""Learning: one IMPALA update from a batch of unrolls [T + 1, B] — forward the agent from the
unrolls' initial state, re-align "step t" with "transition t -> t+1", V-trace loss, RMSProp step.
``learn`` is made of pieces (forward_loss, check_finite, clip_and_step, update_stats) that the
data-parallel learner in s3ta.training.distributed reuses around its all-reduces.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from s3ta.agents import AgentInputs, State
from s3ta.losses import LossOutput, clip_rewards, impala_loss
from s3ta.training.config import TrainConfig


LOSS_TERMS = ("total", "policy_gradient", "baseline", "entropy")  # LossOutput's sums over T and B; the rest are means


class NonFiniteLossError(RuntimeError):
    """The loss or the gradient norm became NaN or Inf."""


def make_optimizer(agent: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(agent.parameters(), lr=config.learning_rate, alpha=config.rmsprop_alpha,
                               eps=config.rmsprop_eps, momentum=config.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, frames_per_update: int):
    """Linear decay of the learning rate to 0 at total_frames (or constant), stepped per update."""
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0)
    total = config.total_frames

    def linear(update: int) -> float:
        return max(0.0, 1.0 - update * frames_per_update / total)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, linear)


def attention_entropy(attention: Tensor) -> Tensor:
    """[T, B, N, h, w] -> [N]: mean entropy (nats) of each head's spatial distribution."""
    p = attention.flatten(-2)  # [T, B, N, h*w]
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean(dim=(0, 1))


def forward_loss(agent: nn.Module, batch: dict[str, Tensor], initial_state: State,
                 config: TrainConfig) -> tuple[LossOutput, Tensor | None]:
    """The loss of ``batch`` ([T + 1, B, ...]) summed over T and B, and the per-head attention
    entropy [N] (None for agents without attention); no gradient is taken yet."""
    inputs = AgentInputs(batch["obs"], batch["prev_action"], batch["reward"], batch["done"])
    output, _ = agent(inputs, initial_state)  # [T + 1, B, ...]

    # Step t's outputs pair with the transition t -> t+1: its reward and whether t+1 starts anew.
    loss = impala_loss(
        target_logits=output.policy_logits[:-1],  # [T, B, A]
        values=output.baseline[:-1],  # [T, B]
        bootstrap_value=output.baseline[-1],  # [B]
        behaviour_logits=batch["behaviour_logits"][:-1],
        actions=batch["action"][:-1],
        rewards=clip_rewards(batch["reward"][1:], config.reward_clip),
        discounts=(~batch["done"][1:]).to(output.baseline.dtype) * config.discount,
        baseline_cost=config.baseline_cost,
        entropy_cost=config.entropy_cost,
        clip_rho_threshold=config.clip_rho_threshold,
        clip_pg_rho_threshold=config.clip_pg_rho_threshold,
    )
    head_entropy = None if output.attention is None else attention_entropy(output.attention[:-1].detach())
    return loss, head_entropy


def check_finite(loss: LossOutput) -> None:
    """Raise NonFiniteLossError (before any gradient is taken) when the loss is NaN or Inf."""
    if not torch.isfinite(loss.total):
        raise NonFiniteLossError(f"the loss became {loss.total.item()} (policy {loss.policy_gradient.item():.4g}, "
                                 f"baseline {loss.baseline.item():.4g}, entropy {loss.entropy.item():.4g})")


def clip_and_step(agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                  config: TrainConfig) -> tuple[Tensor, float]:
    """Clip the global gradient norm, take the optimizer and scheduler steps; (norm before clipping, lr used)."""
    grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), config.grad_norm_clip or math.inf)
    if not torch.isfinite(grad_norm):
        raise NonFiniteLossError(f"the gradient norm became {grad_norm.item()}")
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    return grad_norm, lr


def update_stats(loss: LossOutput, head_entropy: Tensor | None, grad_norm: Tensor, lr: float) -> dict[str, float]:
    """The numbers one update reports (loss terms, diagnostics, per-head attention entropy)."""
    stats = {f"loss/{k}": v.item() for k, v in loss._asdict().items() if k in LOSS_TERMS}
    stats.update({"policy_entropy": loss.mean_policy_entropy.item(), "mean_abs_advantage": loss.mean_abs_advantage.item(),
                  "mean_clipped_rho": loss.mean_clipped_rho.item(), "grad_norm": grad_norm.item(), "learning_rate": lr})
    if head_entropy is not None:
        for head, entropy in enumerate(head_entropy.tolist()):
            stats[f"attention_entropy/head{head}"] = entropy
    return stats


def learn(agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict[str, Tensor],
          initial_state: State, config: TrainConfig) -> dict[str, float]:
    """One update on ``batch`` (unroll tensors, [T + 1, B, ...], on the learner's device)."""
    loss, head_entropy = forward_loss(agent, batch, initial_state, config)
    check_finite(loss)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()
    grad_norm, lr = clip_and_step(agent, optimizer, scheduler, config)
    return update_stats(loss, head_entropy, grad_norm, lr)
