"""Experiments: a grid of training runs (envs x agents x seeds at one frame budget), one run
directory per cell, run one after another on this machine (or as Ray tasks across a cluster: see
ray_experiment), each finished cell evaluated.

Resumable by running the same command again: a cell that finished training and holds an
evaluation with the requested settings is skipped; a finished cell without one is only evaluated;
a cell with a checkpoint resumes from it; a cell whose saved config contradicts the grid is
reported and left alone. Long grids run across sessions with a time limit (the running cell stops
with a checkpoint, the next command resumes it) and in shards (cells i, i + n, ...: n commands
side by side run n cells at a time). The trainer and the evaluator are parameters (``train_fn``,
``evaluate_fn``) so that tests can run the bookkeeping with fakes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

from s3ta.evaluation.evaluate import EVAL_DIR, SUMMARY_JSON

GRID_FILE = "grid.json"
DONE_MARKER = "DONE"  # written by s3ta.training.train when a run reached total_frames
AXES = ("env", "agent", "seed", "total_frames")  # TrainConfig fields set by the grid itself


@dataclass(frozen=True)
class Grid:
    """What an experiment runs: every (env, agent, seed) at ``total_frames``."""

    envs: tuple[str, ...]
    """Environment ids (built-in tasks, Atari games, Gymnasium ids)."""
    agents: tuple[str, ...]
    """Agent names from s3ta.agents.names()."""
    seeds: tuple[int, ...]
    """Training seeds; each seed is a separate run of each (env, agent)."""
    total_frames: int
    """Frame budget of every run (environment frames: agent steps x action repeat)."""
    train: dict[str, Any] = field(default_factory=dict)
    """Other TrainConfig fields shared by every run, e.g. {"mode": "serial", "batch_size": 8}."""
    eval_episodes: int = 30
    """Episodes of each finished run's evaluation."""
    eval_greedy: bool = False
    """Evaluate with argmax actions instead of sampling from the policy."""

    def __post_init__(self):
        for name in ("envs", "agents", "seeds"):
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            if not values:
                raise ValueError(f"the grid needs at least one of {name}")
            if len(set(values)) != len(values):
                raise ValueError(f"repeated {name} in the grid: {list(values)}")
        if self.total_frames < 1 or self.eval_episodes < 1:
            raise ValueError(f"total_frames and eval_episodes must be >= 1, "
                             f"got {self.total_frames}, {self.eval_episodes}")
        from s3ta.training.config import TrainConfig

        names = {f.name for f in dataclasses.fields(TrainConfig)}
        bad = sorted(set(self.train) - (names - set(AXES)))
        if bad:
            raise ValueError(f"unknown or grid-axis training settings {bad}; settable: {sorted(names - set(AXES))}")
        from s3ta.envs import check_env_id

        for env in self.envs:  # every env id and config now: a typo fails before any cell is created
            check_env_id(env)
        for cell in self.cells():
            self.config(cell)

    def cells(self) -> list["Cell"]:
        """Every (env, agent, seed), env-major, so that each game's runs finish together."""
        return [Cell(env, agent, seed) for env in self.envs for agent in self.agents for seed in self.seeds]

    def requested(self, cell: "Cell") -> dict[str, Any]:
        """The training settings this grid fixes for ``cell`` (its axes and the shared ``train``)."""
        axes = {"env": cell.env, "agent": cell.agent, "seed": cell.seed, "total_frames": self.total_frames}
        return {**self.train, **axes}

    def config(self, cell: "Cell"):
        from s3ta.training.config import TrainConfig

        return TrainConfig(**self.requested(cell))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Grid":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}; known: {sorted(names)}")
        return cls(**values)


def read_grid_file(path: str | Path) -> dict[str, Any]:
    """The keys of a grid file, JSON (``.json``) or TOML (anything else), without validation."""
    path = Path(path)
    try:
        text = path.read_text()
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, json.JSONDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(f"cannot read grid file {path}: {error}") from None


class Cell(NamedTuple):
    env: str
    agent: str
    seed: int

    def run_dir(self, root: str | Path) -> Path:
        """``ROOT/{env}/{agent}/seed{seed}`` (characters unsafe in paths, as in "ALE/Pong-v5", become _)."""
        return Path(root) / _safe_name(self.env) / _safe_name(self.agent) / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.env} / {self.agent} / seed {self.seed}"


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


class CellResult(NamedTuple):
    cell: Cell
    run_dir: Path
    status: str  # "skipped", "evaluated", "trained", "resumed", "interrupted", "failed"
    message: str = ""
    summary: dict[str, Any] | None = None  # the evaluation summary, where there is one


TrainFn = Callable[..., dict[str, Any]]  # train(config, run_dir, resume=False, machine=None) -> summary
EvaluateFn = Callable[..., tuple[dict[str, Any], list]]  # evaluate_checkpoint(run_dir, episodes, greedy=...)


def default_train() -> TrainFn:
    from s3ta.training import train

    return train


def default_evaluate(run_dir: Path, episodes: int, greedy: bool):
    from s3ta.evaluation.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(run_dir, episodes, greedy=greedy)


def config_conflicts(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """``key: saved -> requested`` for each requested setting that a run's saved config contradicts. How a
    machine runs a cell (MACHINE_SETTINGS) and the preset's name (a record) are not what it learns: a
    cell resumes under this command's machine settings, and a run whose every setting equals the grid's
    counts as its cell whichever preset version it started from."""
    from s3ta.training.config import MACHINE_SETTINGS

    records = {*MACHINE_SETTINGS, "preset"}
    return [f"{k}: {saved.get(k)!r} (saved) vs {v!r} (grid)" for k, v in requested.items()
            if k not in records and saved.get(k) != _plain(v)]


def machine_settings(grid: "Grid") -> dict[str, Any]:
    """The MACHINE_SETTINGS this grid sets (e.g. learner_threads for two shards on one machine): a
    resumed cell takes them, as ``s3ta train --resume`` takes them from its flags."""
    from s3ta.training.config import MACHINE_SETTINGS

    return {name: value for name, value in grid.train.items() if name in MACHINE_SETTINGS}


def _plain(value: Any) -> Any:
    """A value as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


def _evaluation_matches(run_dir: Path, grid: Grid) -> bool:
    path = run_dir / EVAL_DIR / SUMMARY_JSON
    if not path.exists():
        return False
    try:
        summary = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    policy = "greedy" if grid.eval_greedy else "sampled"
    return summary.get("episodes") == grid.eval_episodes and summary.get("policy") == policy


def run_cell(grid: Grid, cell: Cell, root: str | Path, *, train_fn: TrainFn, evaluate_fn: EvaluateFn,
             log: Callable[[str], None]) -> CellResult:
    """Bring one cell to "trained and evaluated", doing only what is missing."""
    run_dir = cell.run_dir(root)
    saved_path = run_dir / "config.json"
    if saved_path.exists():
        conflicts = config_conflicts(json.loads(saved_path.read_text()), grid.requested(cell))
        if conflicts:
            return CellResult(cell, run_dir, "failed", f"{run_dir} was started with other settings ("
                              + "; ".join(conflicts) + "): use another --out, or delete that run directory")
    status = "skipped"
    if not (run_dir / DONE_MARKER).exists():
        from s3ta.training.checkpoint import latest_checkpoint

        checkpoint = latest_checkpoint(run_dir)
        status = "resumed" if checkpoint is not None else "trained"
        log(f"{cell}: " + (f"resuming from {checkpoint.name}" if checkpoint else "training") + f" in {run_dir}")
        resume = checkpoint is not None
        result = train_fn(grid.config(cell), run_dir, resume=resume, machine=machine_settings(grid) if resume else None)
        if not (run_dir / DONE_MARKER).exists():
            stopped_by = (result or {}).get("interrupted_by") or "the trainer"
            return CellResult(cell, run_dir, "interrupted", f"stopped by {stopped_by} before total_frames")
    if not _evaluation_matches(run_dir, grid):
        status = "evaluated" if status == "skipped" else status
        log(f"{cell}: evaluating {grid.eval_episodes} episodes")
        summary, _ = evaluate_fn(run_dir, grid.eval_episodes, grid.eval_greedy)
        return CellResult(cell, run_dir, status, summary=summary)
    summary = json.loads((run_dir / EVAL_DIR / SUMMARY_JSON).read_text())
    return CellResult(cell, run_dir, status, "already trained and evaluated", summary)


def failed_result(cell: Cell, root: str | Path, error: BaseException) -> CellResult:
    """A "failed" result whose message is the error's type and first line."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return CellResult(cell, cell.run_dir(root), "failed", f"{type(error).__name__}: {first}")


def try_cell(grid: Grid, cell: Cell, root: str | Path, *, train_fn: TrainFn, evaluate_fn: EvaluateFn,
             log: Callable[[str], None]) -> CellResult:
    """run_cell, with an error reported as a "failed" result and Ctrl-C as an "interrupted" one."""
    try:
        return run_cell(grid, cell, root, train_fn=train_fn, evaluate_fn=evaluate_fn, log=log)
    except KeyboardInterrupt:
        return CellResult(cell, cell.run_dir(root), "interrupted", "interrupted")
    except Exception as error:  # noqa: BLE001 - one broken cell must not stop the others
        return failed_result(cell, root, error)


def write_grid(grid: Grid, root: str | Path) -> Path:
    """Create ``root`` and record the grid in ``root/grid.json`` (``s3ta experiment --grid`` repeats it)."""
    from s3ta.outputs import writable_dir

    root = writable_dir(root)
    (root / GRID_FILE).write_text(json.dumps(grid.to_dict(), indent=2) + "\n")
    return root


def shard_cells(cells: list[Cell], shard: tuple[int, int]) -> list[Cell]:
    """Shard (i, n) of ``cells``: cells i, i + n, i + 2n, ... (n commands side by side cover them all once)."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard must be I/N with 0 <= I < N, got {index}/{count}")
    return cells[index::count]


def run_experiment(grid: Grid, root: str | Path, *, train_fn: TrainFn | None = None,
                   evaluate_fn: EvaluateFn | None = None, log: Callable[[str], None] = print,
                   time_limit: float | None = None, shard: tuple[int, int] = (0, 1)) -> list[CellResult]:
    """Run the cells of ``grid`` (of ``shard``, see ``shard_cells``) under ``root`` in order; stop at the
    first interrupted cell.

    A cell whose training or evaluation raises an error is reported as "failed" and the next
    cell runs. ``time_limit`` (seconds of wall clock) is shared by the cells: each trains with what is
    left (``train(..., time_limit=...)`` stops it with a checkpoint), and none starts once it is spent.
    ``root/grid.json`` records the grid (``s3ta experiment --grid ROOT/grid.json`` repeats it).
    """
    train_fn = train_fn or default_train()
    evaluate_fn = evaluate_fn or default_evaluate
    cells = shard_cells(grid.cells(), shard)
    root = write_grid(grid, root)
    deadline = None if time_limit is None else time.monotonic() + time_limit
    results = []
    for i, cell in enumerate(cells, 1):
        cell_train = train_fn
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                results.append(CellResult(cell, cell.run_dir(root), "interrupted", "the time limit was spent"))
                break
            cell_train = functools.partial(train_fn, time_limit=left)  # the cell trains with what is left
        result = try_cell(grid, cell, root, train_fn=cell_train, evaluate_fn=evaluate_fn,
                          log=lambda message: log(f"[{i}/{len(cells)}] {message}"))
        results.append(result)
        if result.status in ("failed", "interrupted"):
            log(f"[{i}/{len(cells)}] {cell}: {result.status}: {result.message}")
        if result.status == "interrupted":
            break
    return results


def format_cell_results(results: list[CellResult], total_cells: int) -> str:
    """One line per cell: status and evaluation mean (raw, and normalised where known)."""
    lines = [f"{'cell':<40} {'status':<12} {'eval mean return':>17} {'normalised':>11}"]
    for r in results:
        mean, norm = "", ""
        if r.summary:
            mean = f"{r.summary['return']['mean']:.4g}"
            if r.summary.get("normalized"):
                norm = f"{r.summary['normalized']['mean']:.1%}"
        lines.append(f"{str(r.cell):<40} {r.status:<12} {mean:>17} {norm:>11}")
    if len(results) < total_cells:
        lines.append(f"{total_cells - len(results)} cells not started: run the same command again to resume")
    return "\n".join(lines)
