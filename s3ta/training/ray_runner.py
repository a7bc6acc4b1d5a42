"""Acting on a Ray cluster (``--backend ray``): ``RayRunner`` keeps Ray actors filling whole unrolls
with published weights, restarts the ones that die, and hands the learner batches [T + 1, B].
Imported only when the ray backend is chosen, so the rest of s3ta works without Ray installed.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import uuid
import warnings
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from s3ta import agents, envs
from s3ta.agents import State
from s3ta.runtime import tune_allocator
from s3ta.optional import import_ray
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs
from s3ta.training.batch import allocate_batch, write_unroll
from s3ta.training.config import TrainConfig
from s3ta.training.runners import actor_seeds

ray = import_ray()

MAX_FAILURES_IN_A_ROW = 10  # an actor whose last this-many unrolls all failed is broken, not unlucky
STALL_WARNING_SECONDS = 120.0  # say so when no unroll arrives for this long (e.g. actors unschedulable)
RESTART_WAIT_SECONDS = 300.0  # how long an actor Ray reports as restarting may take before it counts as broken


class UnrollInfo(NamedTuple):
    """Where one unroll came from: which actor life (a restart starts a new one), its unroll
    number within that life, and the weights version it acted with."""

    actor: int
    incarnation: str
    number: int
    version: int


def fresh_seed() -> int:
    """A seed from OS entropy, for an actor that Ray restarted (its original seed was used up)."""
    return int(np.random.SeedSequence().generate_state(1)[0] % 2**31)


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)
class UnrollWorker:
    """One Ray actor: E = config.actor_batch environments, a CPU copy of the agent and an ``Actor``.
    A restart by Ray runs ``__init__`` again: a new seed, fresh environments and agent state."""

    def __init__(self, index: int, config_dict: dict, description: dict, seed: int):
        tune_allocator()
        torch.set_num_threads(1)
        with warnings.catch_warnings():  # the property reads a deprecated field inside Ray
            warnings.simplefilter("ignore")
            if ray.get_runtime_context().was_current_actor_reconstructed:
                seed = fresh_seed()
        config = TrainConfig.from_dict(config_dict)
        self.index = index
        self.agent = agents.from_description(description).eval()
        env = envs.make(config.env, config.actor_batch, seed=None, protocol=config.protocol)
        self.actor = Actor(env, self.agent, config.unroll_length, seed=seed, precision=config.precision)
        specs = unroll_specs(config.unroll_length, config.actor_batch, self.agent.observation_shape,
                             self.agent.num_actions)
        self.buffer = allocate_unroll(specs)
        self.initial_state = allocate_state(self.agent, config.actor_batch)
        self.version = -1
        self.incarnation = uuid.uuid4().hex
        self.count = 0

    def fill(self, weights: list, version: int) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, ...], UnrollInfo]:
        """The next unroll [T + 1, E] and the agent state before its step 0, as numpy arrays (one
        object in the object store). ``weights`` is ``[ObjectRef]``: nested, so Ray fetches it only
        here, when ``version`` changed."""
        try:
            if version != self.version:
                state_dict = ray.get(weights[0])
                self.agent.load_state_dict({k: torch.tensor(v) for k, v in state_dict.items()})
                self.version = version
            self.actor.fill(self.buffer, self.initial_state)
        except Exception:  # noqa: BLE001 - e.g. an env crash: die, so that Ray restarts a clean actor
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
        info = UnrollInfo(self.index, self.incarnation, self.count, version)
        self.count += 1
        return {k: v.numpy() for k, v in self.buffer.items()}, tuple(s.numpy() for s in self.initial_state), info

    def pid(self) -> int:
        return os.getpid()


def _read_only_tensor(array: np.ndarray) -> Tensor:
    """A tensor viewing an array of Ray's object store, which is read-only: it is only copied from here."""
    with warnings.catch_warnings():  # torch warns that it cannot mark the tensor read-only
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(array)


def _numpy_state_dict(agent: nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in agent.state_dict().items()}


class RayRunner:
    """``config.num_actors`` Ray actors with one unroll request in flight each; the learner (this
    process) gathers B / E unrolls per batch in arrival order and publishes weights with one
    ``ray.put`` per update. An actor that dies is restarted by Ray; its lost request is resubmitted
    and the restart is reported through ``log`` and ``stats()``."""

    def __init__(self, config: TrainConfig, agent: nn.Module, device: torch.device, generation: int = 0,
                 log: Callable[[str], None] = print):
        self.log = log
        self.actor_batch = config.actor_batch
        self.unrolls_per_batch = config.batch_size // config.actor_batch
        self.batch, self.state = allocate_batch(config, agent, device)
        self.started_ray = not ray.is_initialized()
        if self.started_ray:
            address = config.ray_address or None
            try:  # a local instance gets a CPU per actor even on a smaller machine, as local processes do
                ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
                         num_cpus=None if address else max(os.cpu_count() or 1, config.num_actors))
            except ConnectionError as error:
                raise ValueError(f"cannot connect to a Ray cluster at {config.ray_address!r} ({error}); is one running "
                                 f"(`ray start --head`)? With an explicit address and token authentication, set "
                                 f"RAY_AUTH_MODE=token (see docs/ray.md)") from None
        seeds = actor_seeds(config.seed, config.num_actors, generation)
        # OMP_WAIT_POLICY before torch loads in the worker: waiting OpenMP threads sleep, not spin.
        options = dict(runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}})
        self.workers = [UnrollWorker.options(**options).remote(i, config.to_dict(), agents.describe(agent), seeds[i])
                        for i in range(config.num_actors)]
        self.version = 0
        self.weights = ray.put(_numpy_state_dict(agent))
        self.pending: dict = {}  # ObjectRef -> actor index
        self.incarnations: list[str | None] = [None] * config.num_actors
        self.failures = [0] * config.num_actors
        self.restarting_since: list[float | None] = [None] * config.num_actors
        self.restarts = 0
        self.sources: list[UnrollInfo] = []  # of the last batch, in column order
        for index in range(config.num_actors):
            self._submit(index)

    def _submit(self, index: int) -> None:
        self.pending[self.workers[index].fill.remote([self.weights], self.version)] = index

    def _next_unroll(self):
        """The next finished unroll of any actor; its actor immediately starts another."""
        while True:
            ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=STALL_WARNING_SECONDS)
            if not ready:
                self.log(f"no unroll arrived in {STALL_WARNING_SECONDS:.0f} s; waiting for Ray to schedule the "
                         f"actors (see `ray status`)")
                continue
            index = self.pending.pop(ready[0])
            try:
                unroll, state, info = ray.get(ready[0])
            except ray.exceptions.ActorUnavailableError as error:  # Ray is restarting it: wait, do not count
                self._wait_for_restart(index, error)
                self._submit(index)
                continue
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:  # the actor (or its node) died: ask its successor
                self.failures[index] += 1
                if self.failures[index] >= MAX_FAILURES_IN_A_ROW:
                    raise RuntimeError(f"actor {index} failed {self.failures[index]} times in a row; "
                                       f"last error: {error}") from None
                self._submit(index)
                continue
            self.failures[index] = 0
            self.restarting_since[index] = None
            self._submit(index)
            if info.incarnation != self.incarnations[index]:
                if self.incarnations[index] is not None:
                    self.restarts += 1
                    self.log(f"actor {index} died and was restarted (restarts so far: {self.restarts})")
                self.incarnations[index] = info.incarnation
            return unroll, state, info

    def _wait_for_restart(self, index: int, error: Exception) -> None:
        """A request to an actor Ray is still restarting fails at once; a restart on a busy machine
        can take many seconds, so pause before asking again, up to ``RESTART_WAIT_SECONDS``."""
        now = time.monotonic()
        since = self.restarting_since[index] = self.restarting_since[index] or now
        if now - since > RESTART_WAIT_SECONDS:
            raise RuntimeError(f"actor {index} has been restarting for {now - since:.0f} s; last error: {error}") from None
        time.sleep(0.2)

    def next_batch(self) -> tuple[dict[str, Tensor], State]:
        """The host batch [T + 1, B] and states [B], copied from B / E unrolls in arrival order (``sources``
        says whose); valid until the next call."""
        self.sources = []
        for position in range(self.unrolls_per_batch):
            unroll, state, info = self._next_unroll()
            write_unroll(self.batch, self.state, position * self.actor_batch,
                         {k: _read_only_tensor(v) for k, v in unroll.items()}, tuple(map(_read_only_tensor, state)))
            self.sources.append(info)
        return self.batch, self.state

    def publish(self, agent: nn.Module) -> None:
        self.version += 1
        self.weights = ray.put(_numpy_state_dict(agent))

    def acted_steps(self) -> None:
        """Unknown here: Ray actors report only whole unrolls."""
        return None

    def stats(self) -> dict[str, float]:
        return {"ray/actor_restarts": float(self.restarts)}

    def actor_pids(self) -> list[int]:
        """Process ids of the actors (each answers after its unroll in flight)."""
        return ray.get([worker.pid.remote() for worker in self.workers])

    def close(self) -> None:
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.pending.clear()
        if self.started_ray:
            ray.shutdown()
