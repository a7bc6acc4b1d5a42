"""Learning: one IMPALA update from a batch of unrolls [T + 1, B] — forward the agent from the
unrolls' initial state, re-align "step t" with "transition t -> t+1", V-trace loss, RMSProp step.
``learn`` is made of pieces (forward_loss, stats_vector, finish_update) that the data-parallel
learner in s3ta.training.distributed reuses around its all-reduces. An update waits for its device
once: ``read_stats`` reads all its numbers at once, and the finiteness checks use what it read.
"""

from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from s3ta.agents import AgentInputs, State
from s3ta.losses import LossOutput, clip_rewards, impala_loss
from s3ta.precision import autocast
from s3ta.training.actor import allocate_unroll, unroll_specs
from s3ta.training.config import TrainConfig
from s3ta.training.errors import NonFiniteLossError


LOSS_TERMS = ("total", "policy_gradient", "baseline", "entropy")  # LossOutput's sums over T and B; the rest are means
REPORTED = {"total": "loss/total", "policy_gradient": "loss/policy_gradient", "baseline": "loss/baseline",
            "entropy": "loss/entropy", "mean_policy_entropy": "policy_entropy",
            "mean_abs_advantage": "mean_abs_advantage", "mean_clipped_rho": "mean_clipped_rho"}
"""The LossOutput fields an update reports, and their names in the log."""
SMALL_STEP_FLOPS = 5e8
"""A time step of the agent's loop (forward, at the learner's batch) under this many FLOPs runs on one CPU
thread: its many small operators lose more to waking the other threads than they gain from them."""


def make_optimizer(agent: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(agent.parameters(), lr=config.learning_rate, alpha=config.rmsprop_alpha,
                               eps=config.rmsprop_eps, momentum=config.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, frames_per_update: int):
    """Linear decay of the learning rate to 0 at total_frames (held for the first lr_constant_frames), or
    constant; stepped per update."""
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0)
    total, hold = config.total_frames, config.lr_constant_frames

    def linear(update: int) -> float:
        frames = update * frames_per_update
        return 1.0 if frames < hold else max(0.0, 1.0 - frames / total)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, linear)


def restore_schedule(optimizer: torch.optim.Optimizer, scheduler, state: dict, config: TrainConfig) -> None:
    """Continue ``scheduler`` from a checkpoint's ``state`` (its update count) on the schedule ``config``
    gives, and set the optimizer's rate to it. The config is the run's record: a rate, schedule or total
    changed in it (``--resume --total-frames``, a fork) takes effect from the saved update, instead of the
    base rate and the rate stored in the checkpoint."""
    scheduler.load_state_dict(state)
    scheduler.base_lrs = [config.learning_rate for _ in optimizer.param_groups]
    for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"] = config.learning_rate
        group["lr"] = config.learning_rate * factor(scheduler.last_epoch)


def attention_entropy(attention: Tensor) -> Tensor:
    """[T, B, N, h, w] -> [N]: mean entropy (nats) of each head's spatial distribution."""
    p = attention.flatten(-2)  # [T, B, N, h*w]
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean(dim=(0, 1))


def agent_inputs(batch: dict[str, Tensor]) -> AgentInputs:
    """The agent's inputs from a batch of unrolls (its other tensors are the loss's)."""
    return AgentInputs(batch["obs"], batch["prev_action"], batch["reward"], batch["done"])


def forward_loss(agent: nn.Module, batch: dict[str, Tensor], initial_state: State,
                 config: TrainConfig, encoded: Tensor | None = None) -> tuple[LossOutput, Tensor | None]:
    """The loss of ``batch`` ([T + 1, B, ...]) summed over T and B, and the per-head attention
    entropy [N] (None for agents without attention); no gradient is taken yet. With ``encoded``
    (``agent.encode(batch["obs"])``, computed by the caller) only the agent's time loop runs here."""
    inputs = agent_inputs(batch)
    with autocast(config.precision, inputs.obs.device):  # the heads' outputs stay fp32 (s3ta.precision)
        if encoded is None:
            output, _ = agent(inputs, initial_state)  # [T + 1, B, ...]
        else:
            output, _ = agent.unroll(encoded, inputs, initial_state)

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


def stats_vector(loss: LossOutput, head_entropy: Tensor | None) -> Tensor:
    """[len(REPORTED) + N] fp32, detached, on the loss's device: the reported loss terms (sums over T and
    B), the diagnostics and each head's attention entropy (means). One tensor, so that data-parallel ranks
    add theirs up in one all-reduce and the host reads it in one transfer."""
    terms = torch.stack([getattr(loss, field).detach().float() for field in REPORTED])
    return terms if head_entropy is None else torch.cat([terms, head_entropy.detach().float()])


def read_stats(vector: Tensor, grad_norm: Tensor, lr: float, shards: int = 1) -> dict[str, float]:
    """The numbers one update reports, from ``stats_vector`` and the gradient norm: read from the device
    in one transfer, the update's one wait for it. ``vector`` may be the sum of ``shards`` equal shards'
    vectors: the sums add up, the means are divided by ``shards``."""
    numbers = torch.cat([vector, grad_norm.detach().float().reshape(1)]).tolist()
    grad_norm_value = numbers.pop()
    stats = {name: numbers[i] / (1 if field in LOSS_TERMS else shards)
             for i, (field, name) in enumerate(REPORTED.items())}
    stats.update({"grad_norm": grad_norm_value, "learning_rate": lr})
    for head, entropy in enumerate(numbers[len(REPORTED):]):
        stats[f"attention_entropy/head{head}"] = entropy / shards
    return stats


def check_finite(stats: dict[str, float]) -> None:
    """Raise NonFiniteLossError when an update's loss or gradient norm (``read_stats``) is NaN or Inf."""
    if not math.isfinite(stats["loss/total"]):
        raise NonFiniteLossError(f"the loss became {stats['loss/total']} (policy {stats['loss/policy_gradient']:.4g}, "
                                 f"baseline {stats['loss/baseline']:.4g}, entropy {stats['loss/entropy']:.4g})")
    if not math.isfinite(stats["grad_norm"]):
        raise NonFiniteLossError(f"the gradient norm became {stats['grad_norm']}")


def finish_update(agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler, vector: Tensor,
                  config: TrainConfig, shards: int = 1) -> dict[str, float]:
    """After the backward pass: clip the global gradient norm, read the update's numbers (``read_stats``),
    and take the optimizer and schedule steps unless the loss or the gradient norm is NaN or Inf, which
    raises NonFiniteLossError with the weights and the optimizer state unchanged."""
    grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), config.grad_norm_clip or math.inf)
    stats = read_stats(vector, grad_norm, optimizer.param_groups[0]["lr"], shards)
    check_finite(stats)
    optimizer.step()
    scheduler.step()
    return stats


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` intra-op torch threads, then restore the previous number."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def choose_unroll_threads(agent: nn.Module, config: TrainConfig, device: torch.device) -> int | None:
    """CPU threads for the learner's time loop (``learn``'s ``unroll_threads``): ``config.unroll_threads``, or
    for 0, one thread when a step of the loop costs under SMALL_STEP_FLOPS at the learner's batch and the
    learner's threads otherwise (docs/benchmarks.md). None, for no split, on GPU, with data-parallel
    learners, and where the answer equals the learner's threads."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or config.num_learners > 1 or (threads == 1 and not config.unroll_threads):
        return None
    chosen = config.unroll_threads or (1 if unroll_step_flops(agent, config.batch_size) < SMALL_STEP_FLOPS else threads)
    return chosen if chosen != threads else None


@torch.no_grad()
def unroll_step_flops(agent: nn.Module, batch_size: int) -> int:
    """FLOPs of one forward step of ``agent.unroll`` for ``batch_size`` environments (blank inputs, on CPU)."""
    inputs = agent_inputs(allocate_unroll(unroll_specs(0, batch_size, agent.observation_shape, agent.num_actions)))
    encoded = agent.encode(inputs.obs)
    with FlopCounterMode(display=False) as counter:
        agent.unroll(encoded, inputs, agent.initial_state(batch_size))
    return counter.get_total_flops()


def learn(agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler, batch: dict[str, Tensor],
          initial_state: State, config: TrainConfig, unroll_threads: int | None = None) -> dict[str, float]:
    """One update on ``batch`` (unroll tensors, [T + 1, B, ...], on the learner's device).

    With ``unroll_threads`` (see ``choose_unroll_threads``), the agent's time loop and the loss run, forward
    and backward, on that many torch threads, and its time-parallel encoder on the current ones: the
    graph is cut at the encoder's output, whose gradient is carried across by hand.
    """
    encoded = cut = None
    if unroll_threads is not None:
        with autocast(config.precision, batch["obs"].device):
            encoded = agent.encode(batch["obs"])  # [T + 1, B, ...]
        cut = encoded.detach().requires_grad_()
    with torch_threads(unroll_threads) if unroll_threads is not None else nullcontext():
        loss, head_entropy = forward_loss(agent, batch, initial_state, config, encoded=cut)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
    if encoded is not None:
        encoded.backward(cut.grad)
    return finish_update(agent, optimizer, scheduler, stats_vector(loss, head_entropy), config)
