"""Experiments on a Ray cluster (``s3ta experiment --backend ray``): each grid cell's training and
evaluation (experiment.run_cell, so resuming works as with the local backend) runs as one Ray task
with the CPUs and GPUs asked for, and results are reported as cells finish. Imported only when
the ray backend is chosen, so the rest of s3ta works without Ray installed.

Every node must see the experiment directory at the same absolute path (one machine, or a shared
filesystem) and have s3ta installed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

from s3ta.evaluation.experiment import (
    Cell,
    CellResult,
    Grid,
    default_evaluate,
    default_train,
    failed_result,
    try_cell,
    write_grid,
)
from s3ta.optional import import_ray
from s3ta.runtime import wait_passively
from s3ta.training.config import default_num_actors

ray = import_ray()

STOP_GRACE_SECONDS = 120.0  # after Ctrl-C, how long running cells get to checkpoint and return


def cell_sizes(train: dict[str, Any], cpus: float) -> dict[str, int]:
    """TrainConfig sizes for a cell given ``cpus`` cores instead of the whole machine, for those that
    the grid's ``train`` settings leave open: the training defaults (actors on all cores but one, the
    learner's threads on all of them) computed for ``cpus``."""
    cores = max(1, int(cpus))
    sizes = {"learner_threads": cores}
    if train.get("mode", "parallel") != "serial":
        sizes["num_actors"] = default_num_actors(cores)
    return {name: value for name, value in sizes.items() if name not in train}


def _cell_task(grid_values: dict[str, Any], cell: Cell, root: str, cpus: float) -> CellResult:
    """One cell, on whichever node Ray chose: bring it to "trained and evaluated" (try_cell)."""
    wait_passively()  # as the CLI does, before torch starts threads
    import torch

    torch.set_num_threads(max(1, int(cpus)))
    grid = Grid.from_dict(grid_values)
    train = default_train()
    sizes = cell_sizes(grid.train, cpus)

    def train_in_cell(config, run_dir, resume=False, machine=None):  # a resumed run takes this task's cores
        if resume:
            return train(config, run_dir, resume=True, machine={**(machine or {}), **sizes})
        return train(dataclasses.replace(config, **sizes), run_dir)

    return try_cell(grid, cell, root, train_fn=train_in_cell, evaluate_fn=default_evaluate,
                    log=lambda message: print(message, flush=True))


def _outcome(ref, cell: Cell, root: Path, timeout: float | None = None) -> CellResult:
    """The result of a finished (or cancelled) cell task; Ray's own failures become "failed" results."""
    try:
        return ray.get(ref, timeout=timeout)
    except (ray.exceptions.TaskCancelledError, ray.exceptions.GetTimeoutError):
        return CellResult(cell, cell.run_dir(root), "interrupted", "stopped by Ctrl-C")
    except ray.exceptions.RayError as error:  # a worker that died, a node that left, ...
        return failed_result(cell, root, error)


def _describe(result: CellResult) -> str:
    if result.summary:
        return f"{result.status}, eval mean return {result.summary['return']['mean']:.4g}"
    return f"{result.status}: {result.message}" if result.message else result.status


def run_experiment_ray(grid: Grid, root: str | Path, *, address: str | None = None, cpus_per_cell: float = 1.0,
                       gpus_per_cell: float = 0.0, log: Callable[[str], None] = print) -> list[CellResult]:
    """Run every cell of ``grid`` under ``root`` as a Ray task asking for ``cpus_per_cell`` CPUs and
    ``gpus_per_cell`` GPUs; returns the results in grid order.

    Uses the Ray instance this process is already connected to, or connects to ``address``
    ("auto", "HOST:PORT"; None starts a local one) and disconnects at the end. Unlike the local
    backend an interrupted cell does not stop the others; Ctrl-C cancels the cells not finished
    (running ones checkpoint and stop) and they resume on the next run.
    """
    if cpus_per_cell <= 0 or gpus_per_cell < 0:
        raise ValueError(f"cpus_per_cell must be > 0 and gpus_per_cell >= 0, got {cpus_per_cell}, {gpus_per_cell}")
    root = write_grid(grid, Path(root).resolve())  # absolute: the tasks may run elsewhere
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address or None, include_dashboard=False)
    cells = grid.cells()
    results: dict[int, CellResult] = {}
    try:
        task = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell)(_cell_task)
        pending = {task.options(name=f"s3ta cell {cell}").remote(grid.to_dict(), cell, str(root), cpus_per_cell): i
                   for i, cell in enumerate(cells)}
        resources = ray.cluster_resources()
        log(f"{len(cells)} cells submitted to Ray, each with {cpus_per_cell:g} CPUs and {gpus_per_cell:g} GPUs; the "
            f"cluster has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs")
        try:
            while pending:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                i = pending.pop(ref)
                results[i] = _outcome(ref, cells[i], root)
                log(f"[{len(results)}/{len(cells)}] {cells[i]}: {_describe(results[i])}")
        except KeyboardInterrupt:
            log(f"interrupted: cancelling {len(pending)} cells; running ones checkpoint and stop "
                f"(up to {STOP_GRACE_SECONDS:.0f} s)")
            for ref in pending:
                ray.cancel(ref)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for ref, i in pending.items():
                results[i] = _outcome(ref, cells[i], root, timeout=max(0.0, deadline - time.monotonic()))
    finally:
        if connected_here:
            ray.shutdown()
    return [results[i] for i in sorted(results)]
