"""Data-parallel learning: each batch's B unrolls are split across ``num_learners`` processes (one
per GPU with NCCL, or CPU processes with gloo) that update in lockstep, their gradients summed.
Owns the process group, the learner worker processes and one rank's update (``learn_shard``).

The loss is a sum over T and B, so the full batch's gradient is the *sum* of the shards'
gradients: DDP's default all-reduce averages, so ``wrap`` installs a summing hook, and gradient
clipping then sees the same summed gradient on every rank.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from s3ta import agents
from s3ta.agents import State
from s3ta.runtime import tune_allocator
from s3ta.losses import LossOutput
from s3ta.training.actor import unroll_specs
from s3ta.training.config import TrainConfig
from s3ta.training.learner import (
    LOSS_TERMS,
    NonFiniteLossError,
    check_finite,
    clip_and_step,
    forward_loss,
    make_optimizer,
    make_scheduler,
    update_stats,
)

LEARN_KEYS = ("obs", "prev_action", "reward", "done", "action", "behaviour_logits")  # what a shard carries
TIMEOUT = timedelta(minutes=30)  # of a collective: workers wait for the next batch while the driver acts
_STOP, _LEARN, _CHECK = 0, 1, 2  # commands rank 0 broadcasts before each collective step


def sum_gradients_hook(process_group, bucket):  # no annotations: DDP checks them, and this module's are strings
    """DDP communication hook on a dist.GradBucket: all-reduce SUM (DDP's default divides by the world size)."""
    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def wrap(agent: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``agent`` as one replica of the data-parallel learner; DDP copies rank 0's weights to every rank here."""
    model = DistributedDataParallel(agent, device_ids=[device] if device.type == "cuda" else None)
    model.register_comm_hook(None, sum_gradients_hook)
    return model


def split_batch(batch: dict[str, Tensor], initial_state: State, parts: int) -> list[tuple[dict[str, Tensor], State]]:
    """``parts`` equal shards of a batch: unrolls [T + 1, B / parts, ...] (split on dim 1, the
    learning keys only) and agent states [B / parts, ...] (split on dim 0)."""
    batch_size = batch["obs"].shape[1]
    if batch_size % parts != 0:
        raise ValueError(f"a batch of {batch_size} unrolls does not split into {parts} equal shards")
    unrolls = {key: batch[key].chunk(parts, dim=1) for key in LEARN_KEYS}
    states = [tensor.chunk(parts, dim=0) for tensor in initial_state]
    return [({key: unrolls[key][i].contiguous() for key in LEARN_KEYS},
             tuple(state[i].contiguous() for state in states)) for i in range(parts)]


def _reduce_loss(loss: LossOutput, head_entropy: Tensor | None) -> tuple[LossOutput, Tensor | None]:
    """The full batch's loss and diagnostics from every rank's shard: the loss terms are sums over
    T and B, so they add up; the diagnostics are means over equal shards, so they average."""
    world = dist.get_world_size()
    terms = torch.stack([term.detach() for term in loss])  # [len(LossOutput)]
    heads = head_entropy if head_entropy is not None else terms.new_zeros(0)  # [N]
    flat = torch.cat([terms, heads])
    dist.all_reduce(flat)
    scale = torch.tensor([1.0 if name in LOSS_TERMS else 1.0 / world for name in LossOutput._fields],
                         dtype=flat.dtype, device=flat.device)
    reduced = LossOutput(*(flat[:len(terms)] * scale).unbind())
    return reduced, (flat[len(terms):] / world if head_entropy is not None else None)


def learn_shard(model: DistributedDataParallel, optimizer: torch.optim.Optimizer, scheduler,
                shard: dict[str, Tensor], shard_state: State, config: TrainConfig) -> dict[str, float]:
    """This rank's part of one update (every rank of the group calls it with its shard
    [T + 1, B / n, ...] at the same time); returns the stats of the whole batch, as learn() would.

    Same steps as learner.learn: the loss is checked on the all-ranks sum first, so that every rank
    raises NonFiniteLossError together instead of leaving the others waiting in the all-reduce.
    """
    loss, head_entropy = forward_loss(model, shard, shard_state, config)
    batch_loss, batch_head_entropy = _reduce_loss(loss, head_entropy)
    check_finite(batch_loss)
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()  # the hook sums the ranks' gradients, bucket by bucket
    grad_norm, lr = clip_and_step(model, optimizer, scheduler, config)
    return update_stats(batch_loss, batch_head_entropy, grad_norm, lr)


def parameters_in_sync(model: nn.Module) -> bool:
    """Collective: whether every rank holds exactly the same parameters."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    highest, lowest = flat.clone(), flat.clone()
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    return bool(torch.equal(highest, lowest))


def _scatter(shard: dict[str, Tensor], shard_state: State, parts: list | None) -> None:
    """Fill ``shard`` / ``shard_state`` with this rank's part; rank 0 passes every rank's ``parts``."""
    for key in LEARN_KEYS:
        dist.scatter(shard[key], [unrolls[key] for unrolls, _ in parts] if parts else None, src=0)
    for i, tensor in enumerate(shard_state):
        dist.scatter(tensor, [state[i] for _, state in parts] if parts else None, src=0)


def _shard_buffers(config: TrainConfig, agent: nn.Module, device: torch.device) -> tuple[dict[str, Tensor], State]:
    """Empty tensors of one shard, with the shapes and dtypes the runners produce."""
    shard_size = config.batch_size // config.num_learners
    specs = unroll_specs(config.unroll_length, shard_size, agent.observation_shape, agent.num_actions)
    unrolls = {key: torch.empty(shape, dtype=dtype, device=device) for key, (shape, dtype) in specs.items()
               if key in LEARN_KEYS}
    return unrolls, tuple(torch.empty_like(s) for s in agent.initial_state(shard_size))


def _layout(shard: dict[str, Tensor], shard_state: State) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(name, shape, dtype) of each tensor a shard carries, in the order they are sent."""
    named = [*((key, shard[key]) for key in LEARN_KEYS), *((f"state[{i}]", s) for i, s in enumerate(shard_state))]
    return [(name, tuple(tensor.shape), tensor.dtype) for name, tensor in named]


def _to_cpu(value: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU, to hand to a spawned process."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class DataParallelLearner:
    """Rank 0 of ``config.num_learners`` learners, in the training process. It spawns ranks 1..n-1,
    sends each its shard of every batch and updates ``agent`` in lockstep with them; ``learn(batch,
    initial_state)`` has learner.learn's contract, so the loop, publishing and checkpoints see one
    agent. On CUDA rank i runs on cuda:i with NCCL; on the CPU every rank uses gloo."""

    def __init__(self, config: TrainConfig, agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 device: torch.device, frames_per_update: int):
        if dist.is_initialized():
            raise RuntimeError("num_learners > 1 starts its own torch.distributed process group, but this process "
                               "already has one (e.g. under torchrun): run `s3ta train` as a plain process")
        world = config.num_learners
        if device.type == "cuda":
            if torch.cuda.device_count() < world:
                raise ValueError(f"num_learners={world} needs {world} GPUs (rank i on cuda:i), "
                                 f"torch sees {torch.cuda.device_count()}")
            if (device.index if device.index is not None else torch.cuda.current_device()) != 0:
                raise ValueError(f"the data-parallel learner's rank 0 runs on cuda:0, the agent is on {device}")
            device, backend = torch.device("cuda", 0), "nccl"
        else:
            backend = "gloo"
        self.config, self.optimizer, self.scheduler, self.world = config, optimizer, scheduler, world
        self._closed = False
        store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
        context = torch.multiprocessing.get_context("spawn")
        worker_args = (world, store.port, backend, config.to_dict(), agents.describe(agent),
                       _to_cpu(agent.state_dict()), _to_cpu(optimizer.state_dict()), scheduler.state_dict(),
                       frames_per_update, os.getpid())
        self.processes = []
        for rank in range(1, world):
            process = context.Process(target=_worker_main, args=(rank, *worker_args), daemon=True,
                                      name=f"s3ta-learner-{rank}")
            process.start()
            self.processes.append(process)
        try:
            while not store.check([f"s3ta/ready/{rank}" for rank in range(1, world)]):
                self._check_workers("while starting")
                time.sleep(0.05)
            dist.init_process_group(backend, store=store, rank=0, world_size=world, timeout=TIMEOUT)
            self.model = wrap(agent, device)
        except BaseException:
            self._stop_workers()
            if dist.is_initialized():
                dist.destroy_process_group()
            raise
        self._command = torch.zeros(1, dtype=torch.int64, device=device)
        self._shard, self._shard_state = _shard_buffers(config, agent, device)  # rank 0's part lands here

    def _check_workers(self, when: str) -> None:
        for rank, process in enumerate(self.processes, 1):
            if not process.is_alive():
                raise RuntimeError(f"learner rank {rank} died {when} with exit code {process.exitcode} "
                                   "(see its traceback above)")

    def _broadcast_command(self, command: int) -> None:
        self._command.fill_(command)
        dist.broadcast(self._command, src=0)

    def learn(self, batch: dict[str, Tensor], initial_state: State) -> dict[str, float]:
        """One update on ``batch`` ([T + 1, B, ...] on rank 0's device), shared among the ranks."""
        parts = split_batch(batch, initial_state, self.world)
        given, wanted = _layout(*parts[0]), _layout(self._shard, self._shard_state)
        if given != wanted:  # the other ranks receive into buffers of the configured layout
            wrong = [f"{name} {shape} {dtype}, expected {w_shape} {w_dtype}"
                     for (name, shape, dtype), (_, w_shape, w_dtype) in zip(given, wanted) if shape != w_shape or
                     dtype != w_dtype] or [f"{len(given) - len(LEARN_KEYS)} agent state tensors"]
            raise ValueError(f"the data-parallel learner got a shard with another layout than its config gives: "
                             f"{'; '.join(wrong[:3])}")
        try:
            self._broadcast_command(_LEARN)
            _scatter(self._shard, self._shard_state, parts)
            return learn_shard(self.model, self.optimizer, self.scheduler, self._shard, self._shard_state,
                               self.config)
        except NonFiniteLossError:
            raise
        except RuntimeError:  # a collective failed: say which rank died, if one did
            self._check_workers("during an update")
            raise

    def parameters_in_sync(self) -> bool:
        """Whether every rank holds exactly rank 0's parameters (they should, after any update)."""
        self._broadcast_command(_CHECK)
        return parameters_in_sync(self.model)

    def close(self) -> None:
        """Stop the workers and leave the process group (idempotent; never raises)."""
        if self._closed:
            return
        self._closed = True
        if all(process.is_alive() for process in self.processes):
            try:
                self._broadcast_command(_STOP)
            except RuntimeError:
                pass
        self._stop_workers()
        del self.model
        try:
            dist.destroy_process_group()
        except RuntimeError:
            pass

    def _stop_workers(self) -> None:
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _exit_with_parent(parent_pid: int) -> None:
    """Watchdog thread of a worker: exit when the training process is gone, even mid-collective."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _worker_main(rank: int, world: int, port: int, backend: str, config_dict: dict, description: dict,
                 model_state: dict, optimizer_state: dict, scheduler_state: dict, frames_per_update: int,
                 parent_pid: int) -> None:
    """Entry point of learner rank ``rank`` >= 1: follow rank 0's commands until it says stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the training process decides when to stop
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        config = TrainConfig.from_dict(config_dict)
        tune_allocator()
        torch.set_num_threads(config.learner_threads or 1)
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        agent = agents.from_description(description).to(device)
        agent.load_state_dict(model_state)
        optimizer = make_optimizer(agent, config)
        scheduler = make_scheduler(optimizer, config, frames_per_update)  # sets the lr of update 0 ...
        optimizer.load_state_dict(optimizer_state)  # ... which rank 0's state (lr included) replaces
        scheduler.load_state_dict(scheduler_state)
        shard, shard_state = _shard_buffers(config, agent, device)

        store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=TIMEOUT)
        store.set(f"s3ta/ready/{rank}", "1")
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=TIMEOUT)
        model = wrap(agent, device)
        command = torch.zeros(1, dtype=torch.int64, device=device)
        while True:
            dist.broadcast(command, src=0)
            if command.item() == _STOP:
                break
            if command.item() == _CHECK:
                parameters_in_sync(model)
                continue
            _scatter(shard, shard_state, None)
            try:
                learn_shard(model, optimizer, scheduler, shard, shard_state, config)
            except NonFiniteLossError:
                continue  # every rank raised it together; rank 0 reports it and decides
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - report any failure to rank 0 through the exit code
        if os.getppid() != parent_pid:  # the training process is gone: nothing to report to
            os._exit(1)
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
