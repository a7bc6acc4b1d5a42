"""The training loop: set up a run directory, build or restore the agent, pull batches of unrolls
from a runner, update, report, and checkpoint periodically, at the end and on SIGINT/SIGTERM.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch

from s3ta import agents, envs
from s3ta.runtime import tune_allocator
from s3ta.training.checkpoint import (
    CheckpointError,
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from s3ta.training.config import TrainConfig
from s3ta.training.learner import NonFiniteLossError, choose_unroll_threads, learn, make_optimizer, make_scheduler
from s3ta.training.monitor import Monitor
from s3ta.training.runners import ParallelRunner, SerialRunner

DONE_MARKER = "DONE"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def probe_env(config: TrainConfig) -> tuple[tuple[int, int, int], int, int]:
    """(observation shape, number of actions, frames per agent step) of the configured env."""
    env = envs.make(config.env, 1, seed=config.seed, protocol=config.protocol)
    try:
        return tuple(env.observation_shape), int(env.num_actions), int(env.frames_per_step)
    finally:
        env.close()


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def _restore_rng(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])


def _episodes(batch: dict[str, torch.Tensor]) -> list[tuple[float, int]]:
    """Episodes that ended inside this batch (step 0 repeats the previous batch and is skipped)."""
    returns = batch["episode_return"][1:].cpu()
    lengths = batch["episode_length"][1:].cpu()
    ended = ~torch.isnan(returns)
    return list(zip(returns[ended].tolist(), lengths[ended].tolist()))


def prepare_run(config: TrainConfig, run_dir: Path, resume: bool) -> tuple[TrainConfig, Any]:
    """Check the run directory against ``resume`` and return (config to use, checkpoint or None)."""
    saved_config = run_dir / "config.json"
    if resume:
        if not saved_config.exists():
            raise CheckpointError(f"cannot resume: {saved_config} does not exist")
        config = TrainConfig.load(saved_config)
        latest = latest_checkpoint(run_dir)
        return config, (load_checkpoint(latest) if latest else None)
    if latest_checkpoint(run_dir) is not None:
        raise CheckpointError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose another --out")
    return config, None


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, stream=None) -> dict[str, Any]:
    """Train until ``config.total_frames``; returns a summary (frames, updates, mean return, ...)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config, checkpoint = prepare_run(config, run_dir, resume)
    config.save(run_dir / "config.json")
    device = resolve_device(config.device)
    tune_allocator()
    torch.set_num_threads(config.learner_threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)

    observation_shape, num_actions, frames_per_step = probe_env(config)
    agent = agents.build(config.agent, observation_shape, num_actions, **config.agent_overrides).to(device)
    frames_per_update = config.unroll_length * config.batch_size * frames_per_step
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, frames_per_update)
    unroll_threads = choose_unroll_threads(agent, config, device)
    counters = {"frames": 0, "updates": 0, "episodes": 0}
    if checkpoint is not None:
        check_compatible(checkpoint, agents.describe(agent))
        agent.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)
        scheduler.load_state_dict(checkpoint.scheduler)
        counters.update(checkpoint.counters)
        _restore_rng(checkpoint.rng)

    monitor = Monitor(run_dir, config.total_frames, counters["frames"], config.log_interval, stream=stream)
    if checkpoint is not None:
        monitor.message(f"resumed from {checkpoint.path.name} at {counters['frames']:,} frames")
    if unroll_threads is not None:
        monitor.message(f"learner: encoder on {torch.get_num_threads()} thread(s), time loop on {unroll_threads} "
                        f"(unroll_threads)")

    def checkpoint_now() -> Path:
        return save_checkpoint(run_dir, model=agent, optimizer=optimizer, scheduler=scheduler, counters=counters,
                               rng=_rng_state(), config=config.to_dict(), keep=config.keep_checkpoints)

    stop_signal: list[int] = []
    handlers = {}

    def request_stop(signum, frame):
        stop_signal.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        handlers[signum] = signal.signal(signum, request_stop)

    if config.backend == "ray":
        from s3ta.training.ray_runner import RayRunner  # local: Ray is an optional dependency

        runner = RayRunner(config, agent, device, generation=counters["updates"], log=monitor.message)
    else:
        runner_type = SerialRunner if config.mode == "serial" else ParallelRunner
        runner = runner_type(config, agent, device, generation=counters["updates"])
    last_checkpoint = time.monotonic()
    started = time.monotonic()
    start_frames = counters["frames"]
    learner = None  # the data-parallel learner's rank 0 when num_learners > 1
    try:
        if config.num_learners > 1:
            from s3ta.training.distributed import DataParallelLearner

            learner = DataParallelLearner(config, agent, optimizer, scheduler, device, frames_per_update)
        while counters["frames"] < config.total_frames and not stop_signal:
            batch, initial_state = runner.next_batch()
            try:
                stats = learner.learn(batch, initial_state) if learner else \
                    learn(agent, optimizer, scheduler, batch, initial_state, config, unroll_threads)
            except NonFiniteLossError as error:
                path = checkpoint_now()
                raise NonFiniteLossError(f"{error}; training stopped, last good weights in {path}") from None
            runner.publish(agent)
            counters["frames"] += frames_per_update
            counters["updates"] += 1
            for episode_return, length in _episodes(batch):
                counters["episodes"] += 1
                monitor.episode(counters["frames"], episode_return, length)
            monitor.update(counters["frames"], counters["updates"], 1.0 / frames_per_step, {**stats, **runner.stats()})
            if time.monotonic() - last_checkpoint >= config.checkpoint_interval:
                checkpoint_now()
                last_checkpoint = time.monotonic()
        path = checkpoint_now()
    finally:
        if learner is not None:
            learner.close()
        runner.close()
        monitor.close()
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    finished = counters["frames"] >= config.total_frames
    if finished:
        (run_dir / DONE_MARKER).touch()
    elapsed = time.monotonic() - started
    summary = {
        "run_dir": str(run_dir), "checkpoint": str(path), "finished": finished,
        "interrupted_by": signal.Signals(stop_signal[0]).name if stop_signal else None,
        **counters, "mean_recent_return": monitor.mean_return,
        "fps": (counters["frames"] - start_frames) / elapsed if elapsed > 0 else math.nan,
    }
    return summary


__all__ = ["DONE_MARKER", "TrainConfig", "probe_env", "train"]
