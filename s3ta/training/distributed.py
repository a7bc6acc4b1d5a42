"""Data-parallel learning: each batch's B unrolls are split across ``num_learners`` processes (one
per GPU with NCCL, or CPU processes with gloo) that update in lockstep, their gradients summed.
Owns the process groups, the learner worker processes and one rank's update (``learn_shard``).

The loss is a sum over T and B, so the full batch's gradient is the *sum* of the shards'
gradients: DDP's default all-reduce averages, so ``wrap`` installs a summing hook, and gradient
clipping then sees the same summed gradient on every rank.

Each rank reads its columns of the runner's host batch, which lives in shared memory, and takes them
to its own device (s3ta.training.batch.LearnerBatch): the batch never passes through rank 0's GPU.
Rank 0's commands (learn, check, stop) travel over a CPU (gloo) group, on which the other ranks wait
asleep between updates instead of spinning a core on a GPU synchronisation.
"""

from __future__ import annotations

import inspect
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
from s3ta.training.batch import LEARN_KEYS, LearnerBatch
from s3ta.training.config import TrainConfig
from s3ta.training.learner import (
    NonFiniteLossError,
    finish_update,
    forward_loss,
    make_optimizer,
    make_scheduler,
    stats_vector,
)

TIMEOUT = timedelta(minutes=30)  # of a collective: workers wait for the next batch while the driver acts
_STOP, _LEARN, _CHECK = 0, 1, 2  # commands rank 0 broadcasts over the control group before each collective step


def check_learners(config: TrainConfig, device: torch.device) -> None:
    """Raise a one-line ValueError when this machine cannot run ``config.num_learners`` learners on
    ``device`` (rank i on cuda:i): checked before a run creates anything, and again when they start."""
    world = config.num_learners
    if world == 1:
        return
    if dist.is_available() and dist.is_initialized():
        raise ValueError("num_learners > 1 starts its own torch.distributed process group, but this process "
                         "already has one (e.g. under torchrun): run `s3ta train` as a plain process")
    if device.type == "cuda":
        if torch.cuda.device_count() < world:
            raise ValueError(f"num_learners={world} needs {world} GPUs (rank i on cuda:i), "
                             f"torch sees {torch.cuda.device_count()}")
        if (device.index if device.index is not None else torch.cuda.current_device()) != 0:
            raise ValueError(f"the data-parallel learner's rank 0 runs on cuda:0, the agent is on {device}")


def sum_gradients_hook(process_group, bucket):  # no annotations: DDP checks them, and this module's are strings
    """DDP communication hook on a dist.GradBucket: all-reduce SUM (DDP's default divides by the world size)."""
    group = process_group if process_group is not None else dist.group.WORLD
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def wrap(agent: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``agent`` as one replica of the data-parallel learner; DDP copies rank 0's weights to every rank
    here. The agents' buffers are constants (the spatial basis), so they are not broadcast again before
    every forward pass (the flag's name changed in torch 2.13)."""
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    model = DistributedDataParallel(agent, device_ids=[device] if device.type == "cuda" else None,
                                    **{"forward_sync_buffers" if renamed else "broadcast_buffers": False})
    model.register_comm_hook(None, sum_gradients_hook)
    return model


def learn_shard(model: DistributedDataParallel, optimizer: torch.optim.Optimizer, scheduler,
                shard: dict[str, Tensor], shard_state: State, config: TrainConfig) -> dict[str, float]:
    """This rank's part of one update (every rank of the group calls it with its shard
    [T + 1, B / n, ...] at the same time); returns the stats of the whole batch, as learn() would.

    Same steps as learner.learn. The shards' stats are summed in one all-reduce, so every rank reads the
    same loss and the same (summed) gradient norm, and a NaN or Inf in any shard makes every rank raise
    NonFiniteLossError together, after the backward pass (every rank joins the gradient all-reduce) and
    before any change to the weights.
    """
    loss, head_entropy = forward_loss(model, shard, shard_state, config)
    vector = stats_vector(loss, head_entropy)
    dist.all_reduce(vector)  # the loss terms add up; the means of the equal shards are divided in read_stats
    optimizer.zero_grad(set_to_none=True)
    loss.total.backward()  # the hook sums the ranks' gradients, bucket by bucket
    return finish_update(model, optimizer, scheduler, vector, config, shards=dist.get_world_size())


def parameters_in_sync(model: nn.Module) -> bool:
    """Collective: whether every rank holds exactly the same parameters."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    highest, lowest = flat.clone(), flat.clone()
    dist.all_reduce(highest, op=dist.ReduceOp.MAX)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    return bool(torch.equal(highest, lowest))


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
    """Rank 0 of ``config.num_learners`` learners, in the training process. It spawns ranks 1..n-1, which
    read their columns of every batch from ``host`` (the runner's host batch and states, in shared memory:
    ``batch.allocate_batch``), and updates ``agent`` in lockstep with them; ``learn(batch, initial_state)``
    has learner.learn's contract for that host batch, so the loop, publishing and checkpoints see one
    agent. On CUDA rank i runs on cuda:i with NCCL; on the CPU every rank uses gloo."""

    def __init__(self, config: TrainConfig, agent: nn.Module, optimizer: torch.optim.Optimizer, scheduler,
                 device: torch.device, frames_per_update: int, host: tuple[dict[str, Tensor], State]):
        check_learners(config, device)
        world = config.num_learners
        device, backend = (torch.device("cuda", 0), "nccl") if device.type == "cuda" else (device, "gloo")
        self.host = ({key: host[0][key] for key in LEARN_KEYS}, tuple(host[1]))
        if not all(tensor.is_shared() for tensor in (*self.host[0].values(), *self.host[1])):
            raise ValueError("the data-parallel learner's ranks read the host batch from shared memory: "
                             "allocate it with s3ta.training.batch.allocate_batch")
        self.config, self.optimizer, self.scheduler, self.world = config, optimizer, scheduler, world
        self._closed = False
        store = dist.TCPStore("127.0.0.1", 0, world, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
        context = torch.multiprocessing.get_context("spawn")
        worker_args = (world, store.port, backend, config.to_dict(), agents.describe(agent),
                       _to_cpu(agent.state_dict()), _to_cpu(optimizer.state_dict()), scheduler.state_dict(),
                       frames_per_update, os.getpid(), self.host)
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
            self.control = dist.new_group(backend="gloo", timeout=TIMEOUT)
            self.model = wrap(agent, device)
        except BaseException:
            self._stop_workers()
            if dist.is_initialized():
                dist.destroy_process_group()
            raise
        self._command = torch.zeros(1, dtype=torch.int64)  # on the CPU, for the gloo control group
        self.inputs = LearnerBatch(config, agent, device, rank=0)

    def _check_workers(self, when: str) -> None:
        for rank, process in enumerate(self.processes, 1):
            if not process.is_alive():
                raise RuntimeError(f"learner rank {rank} died {when} with exit code {process.exitcode} "
                                   "(see its traceback above)")

    def _broadcast_command(self, command: int) -> None:
        self._command.fill_(command)
        dist.broadcast(self._command, src=0, group=self.control)

    def learn(self, batch: dict[str, Tensor], initial_state: State) -> dict[str, float]:
        """One update on the host batch ``batch`` [T + 1, B, ...] (the ``host`` given at construction), each
        rank taking its columns. The ranks have copied their columns by the time this returns: the runner
        may then refill the host batch."""
        if any(batch[key].data_ptr() != tensor.data_ptr() for key, tensor in self.host[0].items()) or \
                any(s.data_ptr() != t.data_ptr() for s, t in zip(initial_state, self.host[1], strict=True)):
            raise ValueError("the data-parallel learner learns from the host batch it was built with (the "
                             "other ranks read it from shared memory), got another")
        shard, shard_state = self.inputs.load(batch, initial_state)  # before the others start: it checks shapes
        try:
            self._broadcast_command(_LEARN)
            return learn_shard(self.model, self.optimizer, self.scheduler, shard, shard_state, self.config)
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
        """Stop the workers and leave the process groups (idempotent; never raises)."""
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
                 parent_pid: int, host: tuple[dict[str, Tensor], State]) -> None:
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
        inputs = LearnerBatch(config, agent, device, rank)

        store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=TIMEOUT)
        store.set(f"s3ta/ready/{rank}", "1")
        dist.init_process_group(backend, store=store, rank=rank, world_size=world, timeout=TIMEOUT)
        control = dist.new_group(backend="gloo", timeout=TIMEOUT)
        model = wrap(agent, device)
        command = torch.zeros(1, dtype=torch.int64)
        while True:
            dist.broadcast(command, src=0, group=control)  # asleep in gloo while rank 0 waits for actors
            if command.item() == _STOP:
                break
            if command.item() == _CHECK:
                parameters_in_sync(model)
                continue
            shard, shard_state = inputs.load(*host)
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
