"""Where unrolls come from: ``SerialRunner`` (acting and learning alternate in one process,
deterministic for a seed) and ``ParallelRunner`` (actor processes fill shared-memory unroll slots
while the learner trains, TorchBeast-style, with weights published through shared memory).
Both fill a preallocated host batch [T + 1, B] and the agent state before its first step
(s3ta.training.batch), which the learners take to their devices.
"""

from __future__ import annotations

import copy
import os
import queue
import signal
import sys
import traceback

import numpy as np
import torch
from torch import Tensor, nn

from s3ta import agents, envs
from s3ta.agents import State
from s3ta.runtime import tune_allocator
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs
from s3ta.training.batch import allocate_batch, write_unroll
from s3ta.training.config import TrainConfig


def actor_seeds(seed: int, count: int, generation: int) -> list[int]:
    """Independent seeds for ``count`` actors; ``generation`` changes them on each resume."""
    sequence = np.random.SeedSequence([seed, generation])
    return [int(child.generate_state(1)[0] % 2**31) for child in sequence.spawn(count)]  # C-int range


class SerialRunner:
    """One process: act B environments into the host batch with the current weights, then learn from it."""

    def __init__(self, config: TrainConfig, agent: nn.Module, device: torch.device, generation: int = 0):
        self.acting_agent = agent if device.type == "cpu" else copy.deepcopy(agent).cpu()
        env = envs.make(config.env, config.batch_size, seed=None, protocol=config.protocol)
        seed = actor_seeds(config.seed, 1, generation)[0]
        self.actor = Actor(env, self.acting_agent, config.unroll_length, seed=seed,
                           precision=config.precision)
        self.batch, self.state = allocate_batch(config, agent, device)

    def acted_steps(self) -> int:
        """Agent steps acted so far (all environments)."""
        return self.actor.steps

    def next_batch(self) -> tuple[dict[str, Tensor], State]:
        """The host batch [T + 1, B] and states [B], acted into directly; valid until the next call."""
        self.actor.fill(self.batch, self.state)
        return self.batch, self.state

    def publish(self, agent: nn.Module) -> None:
        if self.acting_agent is not agent:
            self.acting_agent.load_state_dict(agent.state_dict())

    def stats(self) -> dict[str, float]:
        """Runner counters for the update log (none here)."""
        return {}

    def close(self) -> None:
        self.actor.close()


def _actor_main(index: int, config_dict: dict, description: dict, seed: int, shared_weights: dict[str, Tensor],
                version, lock, unrolls: list, states: list, free_queue, full_queue, parent_pid: int,
                acted=None) -> None:
    """Entry point of one actor process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the learner decides when to stop
    tune_allocator()
    torch.set_num_threads(1)
    try:
        config = TrainConfig.from_dict(config_dict)
        agent = agents.from_description(description).eval()
        env = envs.make(config.env, config.actor_batch, seed=None, protocol=config.protocol)
        local_version = -1
        actor = None
        while True:
            try:
                slot = free_queue.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:  # the learner died (e.g. SIGKILL): do not linger
                    return
                continue
            if slot is None:
                return
            if version.value != local_version:
                with lock:
                    agent.load_state_dict(shared_weights)
                    local_version = version.value
            if actor is None:
                actor = Actor(env, agent, config.unroll_length, seed=seed, counter=acted,
                              precision=config.precision)
            actor.fill(unrolls[slot], states[slot])
            full_queue.put(slot)
    except KeyboardInterrupt:
        return
    except Exception:  # noqa: BLE001 - report any failure to the learner through the exit code
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


class ParallelRunner:
    """Actor processes and the learner overlap; unrolls travel through shared-memory slots."""

    def __init__(self, config: TrainConfig, agent: nn.Module, device: torch.device, generation: int = 0):
        self.config = config
        self.batch, self.state = allocate_batch(config, agent, device)
        per_batch = config.batch_size // config.actor_batch
        num_slots = config.num_buffers or max(2 * per_batch, config.num_actors + per_batch)
        specs = unroll_specs(config.unroll_length, config.actor_batch, agent.observation_shape, agent.num_actions)
        self.unrolls = [allocate_unroll(specs, shared=True) for _ in range(num_slots)]
        self.states = [allocate_state(agent, config.actor_batch, shared=True) for _ in range(num_slots)]
        self.slots_per_batch = per_batch
        self.shared_weights = {k: v.detach().cpu().clone().share_memory_() for k, v in agent.state_dict().items()}

        context = torch.multiprocessing.get_context("spawn")
        self.version = context.Value("l", 0)
        self.acted = context.Value("q", 0)  # agent steps acted by all actors, for progress lines
        self.lock = context.Lock()
        self.free_queue = context.Queue()
        self.full_queue = context.Queue()
        for slot in range(num_slots):
            self.free_queue.put(slot)
        seeds = actor_seeds(config.seed, config.num_actors, generation)
        self.processes = []
        for index in range(config.num_actors):
            process = context.Process(
                target=_actor_main, daemon=True, name=f"s3ta-actor-{index}",
                args=(index, config.to_dict(), agents.describe(agent), seeds[index], self.shared_weights,
                      self.version, self.lock, self.unrolls, self.states, self.free_queue, self.full_queue, os.getpid(),
                      self.acted))
            process.start()
            self.processes.append(process)

    def _check_actors(self) -> None:
        for index, process in enumerate(self.processes):
            if not process.is_alive():
                raise RuntimeError(f"actor {index} died with exit code {process.exitcode} (see its traceback above)")

    def _take_slot(self) -> int:
        while True:
            try:
                return self.full_queue.get(timeout=1.0)
            except queue.Empty:
                self._check_actors()

    def acted_steps(self) -> int:
        """Agent steps acted so far by all actor processes."""
        return int(self.acted.value)

    def next_batch(self) -> tuple[dict[str, Tensor], State]:
        """The host batch [T + 1, B] and states [B], copied from B / E full slots (each freed for the actors
        as soon as it is copied); valid until the next call."""
        for position in range(self.slots_per_batch):
            slot = self._take_slot()
            write_unroll(self.batch, self.state, position * self.config.actor_batch, self.unrolls[slot],
                         self.states[slot])
            self.free_queue.put(slot)
        return self.batch, self.state

    def publish(self, agent: nn.Module) -> None:
        with self.lock:
            for key, value in agent.state_dict().items():
                self.shared_weights[key].copy_(value)
            self.version.value += 1

    def stats(self) -> dict[str, float]:
        """Runner counters for the update log (none here: a dead actor process stops the run)."""
        return {}

    def close(self) -> None:
        for _ in self.processes:
            self.free_queue.put(None)
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for q in (self.free_queue, self.full_queue):
            q.cancel_join_thread()
            q.close()
