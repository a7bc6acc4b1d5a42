"""The batch's way from the actors to the learners. A runner copies each actor's unroll into a
preallocated host batch [T + 1, B] (``allocate_batch``, ``write_unroll``); each learner then takes
its own columns of what the loss reads (``LEARN_KEYS``) to its device (``LearnerBatch``), while the
episode statistics (``LOG_KEYS``) stay on the host for the log.

Shape letters: T unroll length, B batch size, E environments of one actor, n learners.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from s3ta.agents import State
from s3ta.training.actor import allocate_state, allocate_unroll, unroll_specs
from s3ta.training.config import TrainConfig

LEARN_KEYS = ("obs", "prev_action", "reward", "done", "action", "behaviour_logits")
"""What the learner's forward pass and loss read: the only keys that travel to its device."""
LOG_KEYS = ("episode_return", "episode_length")
"""Episodes that ended, read on the host for the log: they never leave it."""


def allocate_batch(config: TrainConfig, agent: nn.Module, device: torch.device) -> tuple[dict[str, Tensor], State]:
    """A runner's host batch: unrolls [T + 1, B, ...] (every key) and agent states [B, ...].

    In shared memory when several learner processes read their columns from it; pinned (page-locked)
    when a single learner copies it to a GPU, so that the copy is an asynchronous DMA. Memory cannot be
    both: with several learners each one gathers its columns into pinned memory of its own (LearnerBatch).
    """
    shared = config.num_learners > 1
    pin = device.type == "cuda" and not shared
    specs = unroll_specs(config.unroll_length, config.batch_size, agent.observation_shape, agent.num_actions)
    return (allocate_unroll(specs, shared=shared, pin=pin),
            allocate_state(agent, config.batch_size, shared=shared, pin=pin))


def _copy_into(target: dict[str, Tensor], target_state: State, unroll: dict[str, Tensor], state: State,
               non_blocking: bool = False) -> tuple[dict[str, Tensor], State]:
    """Copy ``unroll`` and ``state`` into the preallocated ``target`` tensors of the same shapes (checked:
    copy_ would broadcast a wrong shape silently); returns the targets."""
    pairs = [*((key, target[key], unroll[key]) for key in target),
             *((f"state[{i}]", t, s) for i, (t, s) in enumerate(zip(target_state, state, strict=True)))]
    for name, into, source in pairs:
        if into.shape != source.shape or into.dtype != source.dtype:
            raise ValueError(f"{name} is {tuple(source.shape)} {source.dtype}, "
                             f"expected {tuple(into.shape)} {into.dtype}")
    for _, into, source in pairs:
        into.copy_(source, non_blocking=non_blocking)
    return target, target_state


def write_unroll(batch: dict[str, Tensor], state: State, start: int, unroll: dict[str, Tensor],
                 unroll_state: State) -> None:
    """Copy one actor's unroll [T + 1, E, ...] and the agent state before its first step [E, ...] into
    columns ``start`` .. ``start + E`` of the host batch: every key, into its preallocated memory."""
    columns = slice(start, start + unroll["obs"].shape[1])
    _copy_into({key: tensor[:, columns] for key, tensor in batch.items()}, tuple(s[columns] for s in state),
               unroll, unroll_state)


def learner_columns(batch_size: int, num_learners: int, rank: int) -> slice:
    """The columns of a batch that learner ``rank`` of ``num_learners`` learns from: equal shares, in order."""
    share = batch_size // num_learners
    return slice(rank * share, (rank + 1) * share)


class LearnerBatch:
    """One learner's inputs: columns ``learner_columns(B, n, rank)`` of the host batch's LEARN_KEYS and agent
    states, on the learner's device, in memory allocated once.

    With one learner on the CPU they are views of the host batch (no copy). With several learners, each
    first gathers its columns into buffers of its own (pinned on CUDA), so that it never reads the shared
    host batch after its update's first step. On CUDA the copies to the device are asynchronous (from
    pinned memory, ``non_blocking``): the host memory they read may be written again once the update has
    read its statistics (``learner.read_stats``), which waits for the device's work, these copies included.
    """

    def __init__(self, config: TrainConfig, agent: nn.Module, device: torch.device, rank: int = 0):
        self.columns = learner_columns(config.batch_size, config.num_learners, rank)
        share = self.columns.stop - self.columns.start
        full = unroll_specs(config.unroll_length, config.batch_size, agent.observation_shape, agent.num_actions)
        self.expected = {key: full[key] for key in LEARN_KEYS}  # of the whole host batch
        specs = {key: ((full[key][0][0], share, *full[key][0][2:]), full[key][1]) for key in LEARN_KEYS}
        pin = device.type == "cuda"
        self.gathered = (allocate_unroll(specs, pin=pin), allocate_state(agent, share, pin=pin)) \
            if config.num_learners > 1 else None
        self.on_device = None if device.type == "cpu" else (
            {key: torch.empty(shape, dtype=dtype, device=device) for key, (shape, dtype) in specs.items()},
            tuple(torch.empty(s.shape, dtype=s.dtype, device=device) for s in agent.initial_state(share)))

    def load(self, batch: dict[str, Tensor], state: State) -> tuple[dict[str, Tensor], State]:
        """This learner's unrolls [T + 1, B / n, ...] (LEARN_KEYS only) and agent states [B / n, ...] on its
        device, from the host batch [T + 1, B, ...] and states [B, ...]."""
        for key, (shape, dtype) in self.expected.items():
            if tuple(batch[key].shape) != shape or batch[key].dtype != dtype:
                raise ValueError(f"the batch's {key} is {tuple(batch[key].shape)} {batch[key].dtype}, "
                                 f"expected {shape} {dtype} (the run's config)")
        unroll = {key: batch[key][:, self.columns] for key in LEARN_KEYS}  # views
        state = tuple(s[self.columns] for s in state)
        if self.gathered is not None:
            unroll, state = _copy_into(*self.gathered, unroll, state)
        if self.on_device is not None:
            unroll, state = _copy_into(*self.on_device, unroll, state, non_blocking=True)
        return unroll, state
