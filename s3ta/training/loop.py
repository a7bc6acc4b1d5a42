"""The training loop: set up a run directory, build or restore the agent, pull batches of unrolls
from a runner, update, report, and checkpoint periodically, at the end and on SIGINT/SIGTERM.
A run may continue on another machine: each attempt's machine settings are its own, and
``attempts.json`` records them beside ``config.json``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import torch

from s3ta import agents, envs
from s3ta.checkpoints import newest_valid_checkpoint
from s3ta.evaluation.runlog import ATTEMPTS, read_attempts
from s3ta.outputs import creatable_dir
from s3ta.precision import resolve_precision
from s3ta.runtime import tune_allocator
from s3ta.training.checkpoint import CheckpointError, check_compatible, latest_checkpoint, save_checkpoint
from s3ta.training.batch import LearnerBatch
from s3ta.training.config import MACHINE_SETTINGS, TrainConfig
from s3ta.training.learner import (
    NonFiniteLossError,
    choose_unroll_threads,
    learn,
    make_optimizer,
    make_scheduler,
    restore_schedule,
)
from s3ta.training.monitor import Monitor
from s3ta.training.runners import ParallelRunner, SerialRunner

DONE_MARKER = "DONE"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    """What the start line and attempts.json call ``device``: "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device.type != "cuda":
        return device.type
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def record_attempt(run_dir: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Append ``record`` to ``run_dir/attempts.json`` (written atomically) and return every attempt's."""
    path = run_dir / ATTEMPTS
    attempts = read_attempts(run_dir) + [record]  # a torn file (a machine that died mid-write) starts again
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(attempts, indent=2) + "\n")
    os.replace(tmp, path)
    return attempts


def probe_env(config: TrainConfig) -> tuple[tuple[int, int, int], int, int]:
    """(observation shape, number of actions, frames per agent step) of the configured env."""
    env = envs.make(config.env, 1, seed=config.seed, protocol=config.protocol)
    try:
        return tuple(env.observation_shape), int(env.num_actions), int(env.frames_per_step)
    finally:
        env.close()


class FirstBatchProgress:
    """Progress lines until this call's first update is done: the paper-size agent on a CPU acts for
    minutes before its first update, and a silent terminal looks hung. A line at once, then one every
    ``interval`` seconds with the agent steps acted so far (``runner.acted_steps()``, None if unknown)."""

    def __init__(self, monitor: Monitor, runner: Any, steps_per_batch: int, interval: float = 5.0):
        self.monitor, self.runner, self.needed, self.interval = monitor, runner, steps_per_batch, interval
        self.phase = "idle"  # -> acting -> learning -> done
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.phase != "idle":
            return
        self.phase, self.started = "acting", time.monotonic()
        self.monitor.message(f"acting: the first batch needs {self.needed:,} agent steps; the first update follows")
        self.thread = threading.Thread(target=self._report, name="s3ta-first-batch", daemon=True)
        self.thread.start()

    def stop(self, learning: bool = False) -> None:
        """``learning=True``: the batch arrived and the first update runs; otherwise the update is done."""
        if self.phase == "acting" and learning:
            self.phase = "learning"
            return
        if self.phase in ("acting", "learning"):
            self.phase = "done"
            self.wake.set()
            self.thread.join()

    def _report(self) -> None:
        while not self.wake.wait(self.interval):
            elapsed = time.monotonic() - self.started
            if self.phase == "acting":
                acted = self.runner.acted_steps()
                done = f"{min(acted, self.needed):,}/{self.needed:,} agent steps" if acted is not None else "running"
                self.monitor.message(f"acting: {done} of the first batch ({elapsed:.0f} s)")
            elif self.phase == "learning":
                self.monitor.message(f"learning: the first update is running ({elapsed:.0f} s since start)")


def write_learning_curve(run_dir: Path, config: TrainConfig, log=print) -> Path | None:
    """``run_dir/learning_curve.png``: training returns against frames; None (and a note) when no
    episode has ended yet or the plot cannot be written."""
    from s3ta.evaluation.plots import run_learning_curve  # local: matplotlib loads only when needed

    try:
        return run_learning_curve(run_dir, run_dir / "learning_curve.png", title=f"{config.agent} on {config.env}")
    except (OSError, ValueError) as error:
        log(f"no learning curve written: {error}")
        return None


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def _restore_rng(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])


def _episodes(batch: dict[str, torch.Tensor]) -> list[tuple[float, int]]:
    """Episodes that ended inside this host batch (step 0 repeats the previous batch and is skipped)."""
    returns = batch["episode_return"][1:]
    lengths = batch["episode_length"][1:]
    ended = ~torch.isnan(returns)
    return list(zip(returns[ended].tolist(), lengths[ended].tolist()))


def prepare_run(config: TrainConfig, run_dir: Path, resume: bool, total_frames: int | None = None,
                machine: dict[str, Any] | None = None) -> tuple[TrainConfig, Any, list[str]]:
    """Check the run directory against ``resume``; return (config to use, checkpoint or None, notes to
    print). On resume the saved config is used, with ``total_frames`` (if given) as its new budget and
    ``machine`` (MACHINE_SETTINGS, e.g. {"device": "cpu"}) as this attempt's machine settings."""
    saved_config = run_dir / "config.json"
    if resume:
        if not saved_config.exists():
            raise FileNotFoundError(f"cannot resume: {saved_config} does not exist")
        config = TrainConfig.load(saved_config)
        unknown = sorted(set(machine or {}) - set(MACHINE_SETTINGS))
        if unknown:
            raise ValueError(f"{unknown} are not machine settings; a resumed run may change only "
                             f"{', '.join(MACHINE_SETTINGS)}")
        changed = {name: value for name, value in (machine or {}).items() if getattr(config, name) != value}
        notes = []
        if changed:
            notes.append("this machine: " + ", ".join(f"{name} {getattr(config, name)} -> {value}"
                                                      for name, value in changed.items()))
            config = dataclasses.replace(config, **changed)  # validated again: batch_size / num_learners
        checkpoint, skipped = newest_valid_checkpoint(run_dir)
        notes += [f"skipped unreadable checkpoint {path.name}: {reason}" for path, reason in skipped]
        if checkpoint is None:
            notes.append(f"no checkpoint in {run_dir}: starting from frame 0 with its saved config")
        done = checkpoint.counters["frames"] if checkpoint is not None else 0
        if total_frames is not None and total_frames != config.total_frames:
            if total_frames <= done:
                raise ValueError(f"--total-frames must be > the {done:,} frames this run has already trained, "
                                 f"got {total_frames:,}")
            notes.append(f"frame budget {config.total_frames:,} -> {total_frames:,}; the learning-rate schedule "
                         f"follows the new total")
            config = dataclasses.replace(config, total_frames=total_frames)
        return config, checkpoint, notes
    if latest_checkpoint(run_dir) is not None:
        raise CheckpointError(f"{run_dir} already holds checkpoints: pass --resume to continue it, or choose another --out")
    return config, None, []


def train(config: TrainConfig, run_dir: str | Path, resume: bool = False, stream=None, *,
          total_frames: int | None = None, time_limit: float | None = None,
          machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train until ``config.total_frames``; returns a summary (frames, updates, mean return, ...).

    ``resume`` continues the run in ``run_dir`` with its saved config; ``total_frames`` then replaces its
    budget (the learning-rate schedule follows the new total) and ``machine`` its machine settings
    (MACHINE_SETTINGS: device, learners, actors), so that a run saved on a GPU box continues on a laptop.
    ``time_limit`` (seconds of wall clock from the start of this call) stops the run cleanly with a
    checkpoint, like SIGTERM. Everything that can fail on bad input (config, env, device, GPU count,
    checkpoint) is checked before ``run_dir`` is created or written.
    """
    run_dir = Path(run_dir)
    started = time.monotonic()
    creatable_dir(run_dir)  # before any work, and without creating it: a failed start leaves nothing
    config, checkpoint, notes = prepare_run(config, run_dir, resume, total_frames, machine)
    try:
        device = resolve_device(config.device)
    except ValueError as error:
        if not resume:
            raise
        raise ValueError(f"{error}; this run was saved with device {config.device!r}: resume it with "
                         f"--device cpu to continue it on this machine") from None
    if config.num_learners > 1:
        from s3ta.training.distributed import check_learners

        check_learners(config, device)
    precision, fallback = resolve_precision(config.precision, device)
    run_config = config  # the run's settings as asked, saved in config.json and every checkpoint
    if fallback:  # this attempt's arithmetic only: attempts.json records it, and the next machine may have bf16
        notes.append(fallback)
        config = dataclasses.replace(config, precision=precision)
    observation_shape, num_actions, frames_per_step = probe_env(config)
    torch.manual_seed(config.seed)  # the initial weights
    agent = agents.build(config.agent, observation_shape, num_actions, **config.agent_overrides)
    if checkpoint is not None:
        check_compatible(checkpoint, agents.describe(agent))

    run_dir.mkdir(parents=True, exist_ok=True)
    run_config.save(run_dir / "config.json")
    if resume and config.total_frames > (checkpoint.counters["frames"] if checkpoint else 0):
        (run_dir / DONE_MARKER).unlink(missing_ok=True)  # an extended run is no longer finished
    tune_allocator()
    torch.set_num_threads(config.learner_threads or os.cpu_count() or 1)
    agent = agent.to(device)
    frames_per_update = config.unroll_length * config.batch_size * frames_per_step
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, frames_per_update)
    unroll_threads = choose_unroll_threads(agent, config, device)
    counters = {"frames": 0, "updates": 0, "episodes": 0}
    if checkpoint is not None:  # loaded onto the CPU (map_location): the weights move to this run's device here
        agent.load_state_dict(checkpoint.model)
        optimizer.load_state_dict(checkpoint.optimizer)  # its state follows the parameters' device
        restore_schedule(optimizer, scheduler, checkpoint.scheduler, config)  # this config's schedule, from the saved update
        counters.update(checkpoint.counters)
        _restore_rng(checkpoint.rng)
    device_name = describe_device(device)
    record_attempt(run_dir, {
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "frames": counters["frames"], "host": socket.gethostname(), "device": device_name,
        "precision": config.precision, "num_learners": config.num_learners, "num_actors": config.num_actors,
        "envs_per_actor": config.actor_batch, "learner_threads": torch.get_num_threads(),
        "unroll_threads": unroll_threads or torch.get_num_threads(),  # None means the time loop keeps the learner's
        "torch": torch.__version__})

    monitor = Monitor(run_dir, config.total_frames, counters["frames"], config.log_interval, stream=stream)
    for note in notes:
        monitor.message(note)
    if checkpoint is not None:
        monitor.message(f"resumed from {checkpoint.path.name} at {counters['frames']:,} frames")
    if monitor.dropped:
        monitor.message(f"dropped {monitor.dropped} records of metrics.jsonl logged after frame "
                        f"{counters['frames']:,}, where this attempt continues")
    overshoot = -(config.total_frames - counters["frames"]) % frames_per_update
    learners = f", {config.num_learners} learners" if config.num_learners > 1 else ""
    monitor.message(f"{config.agent} on {config.env}, {device_name} {config.precision}{learners}: "
                    f"{frames_per_update:,} frames per update (T {config.unroll_length}"
                    f" x B {config.batch_size} x action repeat {frames_per_step})"
                    + (f"; the run ends after the update that passes {config.total_frames:,}, "
                       f"{overshoot:,} frames later" if overshoot else ""))
    if unroll_threads is not None:
        monitor.message(f"learner: encoder on {torch.get_num_threads()} thread(s), time loop on {unroll_threads} "
                        f"(unroll_threads)")

    def checkpoint_now() -> Path:
        return save_checkpoint(run_dir, model=agent, optimizer=optimizer, scheduler=scheduler, counters=counters,
                               rng=_rng_state(), config=run_config.to_dict(), keep=config.keep_checkpoints)

    stop_signal: list[int] = []
    handlers = {}

    def request_stop(signum, frame):
        stop_signal.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        handlers[signum] = signal.signal(signum, request_stop)

    start_updates = counters["updates"]
    if config.backend == "ray":
        from s3ta.training.ray_runner import RayRunner  # local: Ray is an optional dependency

        runner = RayRunner(config, agent, device, generation=counters["updates"], log=monitor.message)
    else:
        runner_type = SerialRunner if config.mode == "serial" else ParallelRunner
        runner = runner_type(config, agent, device, generation=counters["updates"])
    last_checkpoint = time.monotonic()
    start_frames = counters["frames"]
    learner = None  # the data-parallel learner's rank 0 when num_learners > 1
    stopped_by: str | None = None
    waiting = FirstBatchProgress(monitor, runner, config.unroll_length * config.batch_size)
    try:
        if config.num_learners > 1:
            from s3ta.training.distributed import DataParallelLearner

            learner = DataParallelLearner(config, agent, optimizer, scheduler, device, frames_per_update,
                                          host=(runner.batch, runner.state))
        else:
            inputs = LearnerBatch(config, agent, device)  # the batch's way to the learner's device
        while counters["frames"] < config.total_frames:
            if stop_signal:
                stopped_by = signal.Signals(stop_signal[0]).name
                break
            if time_limit is not None and time.monotonic() - started >= time_limit:
                stopped_by = "time-limit"
                break
            if counters["updates"] == start_updates:
                waiting.start()
            batch, initial_state = runner.next_batch()  # on the host, [T + 1, B]; refilled by the next call
            waiting.stop(learning=True)
            try:
                stats = learner.learn(batch, initial_state) if learner else \
                    learn(agent, optimizer, scheduler, *inputs.load(batch, initial_state), config, unroll_threads)
            except NonFiniteLossError as error:
                path = checkpoint_now()
                raise NonFiniteLossError(f"{error}; training stopped, last good weights in {path}") from None
            waiting.stop()
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
        write_learning_curve(run_dir, config, monitor.message)
    finally:
        waiting.stop()
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
        "interrupted_by": stopped_by,
        **counters, "mean_recent_return": monitor.mean_return,
        "fps": (counters["frames"] - start_frames) / elapsed if elapsed > 0 else math.nan,
    }
    return summary


__all__ = ["ATTEMPTS", "DONE_MARKER", "TrainConfig", "probe_env", "train"]
