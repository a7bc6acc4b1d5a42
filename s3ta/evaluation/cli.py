"""The ``eval``, ``experiment`` and ``report`` subcommands: argv to the calls of
s3ta.evaluation.evaluate / experiment / report, and their results to the terminal.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from s3ta.cli import UsageError, command, non_negative_float, positive_float, positive_int
from s3ta.evaluation.evaluate import DEFAULT_MAX_ENVS, DEFAULT_POLICY
from s3ta.evaluation.experiment import AXES, Grid, format_cell_results, read_grid_file, run_experiment, shard_cells
from s3ta.training.cli import TIME_LIMIT_EXIT, add_config_flags, parse_duration
from s3ta.training.config import TrainConfig

GRID_FLAGS = ("envs", "agents", "seeds", "total_frames", "eval_episodes", "eval_greedy")  # Grid fields


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_eval(subparsers)
    _register_experiment(subparsers)
    _register_report(subparsers)


# --- s3ta eval -------------------------------------------------------------------------------------

def _register_eval(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="play episodes with a checkpoint and save raw and normalised scores",
        description="Run N episodes of a checkpoint under an evaluation protocol; print and save per-episode raw "
                    "scores and lengths (eval/episodes.csv) and their mean with a 95% confidence interval and the "
                    "human-normalised score for Atari games (eval/summary.json), in the run directory by default. "
                    "An earlier evaluation there is kept unless --force is given; the output directory is checked "
                    "before any episode is played.")
    p.add_argument("checkpoint",
                   help="a checkpoint file (RUN/checkpoints/ckpt-*.pt) or a run directory (its newest checkpoint)")
    p.add_argument("--episodes", type=positive_int, default=30, help="episodes to play (default 30)")
    p.add_argument("--protocol", choices=("paper", "machado"), default=None,
                   help="Atari protocol: paper = up to 30 no-op starts, machado = sticky actions p=0.25 "
                        "(default: the one the checkpoint was trained with)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the environments and action sampling (default: the training seed)")
    p.add_argument("--env", default=None,
                   help="evaluate on this env id instead of the training env (same observation shape and actions)")
    p.add_argument("--greedy", action="store_true",
                   help=f"take the most probable action; the default is {DEFAULT_POLICY}: actions are sampled from the "
                        "policy, as the paper's IMPALA agents act")
    p.add_argument("--num-envs", type=positive_int, default=None,
                   help=f"environments stepped together (default min(episodes, {DEFAULT_MAX_ENVS})); env slot b "
                        "contributes its first episodes only, so short episodes are not over-represented")
    p.add_argument("--out", default=None, help="where to write episodes.csv and summary.json (default RUN_DIR/eval)")
    p.add_argument("--force", action="store_true",
                   help="replace an evaluation already in the output directory (default: refuse, exit 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval)


@command("eval")
def _eval(args: argparse.Namespace) -> int:
    from s3ta.evaluation.evaluate import evaluate_checkpoint, format_results

    summary, episodes = evaluate_checkpoint(
        args.checkpoint, args.episodes, env=args.env, protocol=args.protocol, seed=args.seed,
        greedy=args.greedy, num_envs=args.num_envs, out=args.out, progress=not args.no_progress,
        replace=args.force)
    print(format_results(summary, episodes))
    return 0


def shard_spec(text: str) -> tuple[int, int]:
    """"I/N" -> (I, N), for --shard."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N, e.g. 0/2, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"a shard I/N needs 0 <= I < N, got {text!r}")
    return index, count


# --- s3ta experiment --------------------------------------------------------------------------

def _register_experiment(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment", help="train and evaluate a grid of envs x agents x seeds, resumably",
        description="Train every (env, agent, seed) of a grid at one frame budget, one run directory per cell "
                    "(OUT/{env}/{agent}/seed{seed}), one after another (or as Ray tasks across a cluster with "
                    "--backend ray), and evaluate each finished cell. Run the "
                    "same command again to resume: finished cells are skipped, interrupted ones resume from their "
                    "checkpoint. The grid comes from the flags, or from --grid FILE (JSON or TOML with the keys envs, "
                    "agents, seeds, total_frames, eval_episodes, eval_greedy and a table `train` of other training "
                    "settings); flags override the file.")
    p.add_argument("--grid", default=None,
                   help="grid file (.json, or TOML otherwise); OUT/grid.json of a previous run works")
    p.add_argument("--envs", nargs="+", default=None, help="env ids, e.g. catch find-target pong")
    p.add_argument("--agents", nargs="+", default=None, help="agent names (s3ta list shows them)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds, e.g. 0 1 2")
    p.add_argument("--total-frames", type=positive_int, default=None, help="frame budget of every run")
    p.add_argument("--eval-episodes", type=positive_int, default=None,
                   help="evaluation episodes per finished run (default 30)")
    p.add_argument("--eval-greedy", action="store_true", default=None,
                   help=f"evaluate with argmax actions (default: {DEFAULT_POLICY} actions)")
    p.add_argument("--out", required=True, help="experiment directory")
    p.add_argument("--config", dest="grid_config", metavar="FILE_OR_PRESET",
                   help="training settings of every run from a preset (e.g. atari-small, recorded as its version) or a "
                        "config.json; the grid's axes (env, agent, seed, frames) and flags override it")
    p.add_argument("--time-limit", type=parse_duration, default=None, metavar="DURATION",
                   help="stop after this much wall-clock time (e.g. 2h50m), the running cell with a checkpoint; run "
                        f"the same command again to go on (exit status {TIME_LIMIT_EXIT})")
    p.add_argument("--shard", type=shard_spec, default=(0, 1), metavar="I/N",
                   help="run only cells I, I + N, I + 2N, ... of the grid (0-based): N commands side by side, e.g. "
                        "--shard 0/2 and --shard 1/2, train N cells at a time (default 0/1, every cell)")
    p.add_argument("--backend", dest="cells_backend", choices=("local", "ray"), default="local",
                   help="where cells run: local = one after another in this process; ray = as Ray tasks across the "
                        "cluster, each cell training with its own local actors (default local)")
    p.add_argument("--ray-address", dest="cells_ray_address", default=None, metavar="ADDRESS",
                   help="ray backend: the cluster to join (auto, HOST:PORT); default: start Ray on this machine")
    p.add_argument("--cpus-per-cell", type=positive_float, default=1.0, metavar="N",
                   help="ray backend: CPUs each cell asks for; its actors and learner threads fit in them (default 1)")
    p.add_argument("--gpus-per-cell", type=non_negative_float, default=0.0, metavar="N",
                   help="ray backend: GPUs each cell asks for, fractions allowed (default 0)")
    # the training settings' own --backend / --ray-address (where a run's actors live) stay for grid files
    add_config_flags(p.add_argument_group("training settings", "passed to every run (as in `s3ta train`)"),
                     skip=(*AXES, "backend", "ray_address"))
    p.set_defaults(func=_experiment)


def grid_from_args(args: argparse.Namespace):
    """The experiment grid: the --grid file's keys, overridden by the flags given."""
    values: dict[str, Any] = read_grid_file(args.grid) if args.grid else {}
    values.update({key: getattr(args, key) for key in GRID_FLAGS if getattr(args, key) is not None})
    train = dict(values.get("train", {}))
    if getattr(args, "grid_config", None):  # a preset or config.json under the file's and the flags' settings
        from s3ta.training.config import config_source

        base = {k: v for k, v in config_source(args.grid_config).items() if k not in AXES}
        train = {**base, **train}
    train.update({f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                  if f.name in vars(args) and f.name not in AXES})
    if isinstance(train.get("agent_overrides"), list):  # --agent-config KEY=VALUE pairs
        from_file = values.get("train", {}).get("agent_overrides", {})
        train["agent_overrides"] = {**from_file, **dict(train["agent_overrides"])}
    values["train"] = train
    missing = [k for k in ("envs", "agents", "seeds", "total_frames") if k not in values]
    if missing:
        flags = ", ".join("--" + k.replace("_", "-") for k in missing)
        raise ValueError(f"the grid needs {flags} (or a --grid file with them)")
    return Grid.from_dict(values)


@command("experiment")
def _experiment(args: argparse.Namespace) -> int:
    try:
        grid = grid_from_args(args)  # validates every env id, agent and setting before any cell starts
    except TypeError as error:  # a grid file value of the wrong type
        raise UsageError(str(error)) from None
    cells = grid.cells()
    index, count = args.shard if args.cells_backend != "ray" else (0, 1)
    mine = shard_cells(cells, (index, count))  # the cells this command runs
    sharded = f"; shard {index}/{count} runs {len(mine)} of them" if count > 1 else ""
    print(f"experiment in {args.out}: {len(grid.envs)} envs x {len(grid.agents)} agents x {len(grid.seeds)} seeds "
          f"= {len(cells)} runs of {grid.total_frames:,} frames each{sharded}")
    if args.cells_backend == "ray":
        try:
            from s3ta.evaluation.ray_experiment import run_experiment_ray
        except ModuleNotFoundError as error:
            if error.name != "ray":
                raise
            raise UsageError(f"--backend ray needs Ray: {error}") from None
        results = run_experiment_ray(grid, args.out, address=args.cells_ray_address,
                                     cpus_per_cell=args.cpus_per_cell, gpus_per_cell=args.gpus_per_cell)
    else:
        results = run_experiment(grid, args.out, time_limit=args.time_limit, shard=args.shard)
    print(format_cell_results(results, len(mine)))
    if args.time_limit is not None and any(r.status == "interrupted" for r in results):
        print("time limit: run the same command again to go on", file=sys.stderr)
        return TIME_LIMIT_EXIT
    if any(r.status == "interrupted" for r in results):
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    if any(r.status == "failed" for r in results):
        return 1
    runs = f"{len(mine)} run{'s' * (len(mine) != 1)}"
    done = "all runs trained and evaluated" if count == 1 else \
        f"the {runs} of shard {index}/{count} trained and evaluated (the other shards' cells are theirs)"
    print(f"{done}; report: s3ta report {args.out} --out {Path(args.out) / 'report'} "
          "(add --force to replace an earlier report there)")
    return 0


# --- s3ta report -----------------------------------------------------------------------------------

def _register_report(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="tables, aggregate scores with bootstrap CIs, learning curves and the paper comparison",
        description="Read evaluated run directories (found recursively under RUN_DIRS) and write OUT/report.md, "
                    "OUT/report.html (plots embedded), OUT/plots/*.png and CSV tables: scores per game (raw and "
                    "normalised, mean and 95% CI over seeds), aggregate median / IQM / mean / optimality gap with "
                    "stratified-bootstrap 95% CIs, learning curves, and the paper's published numbers beside ours. "
                    "A report already in OUT is kept unless --force is given.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIRS",
                   help="run directories or folders above them (e.g. an experiment's --out)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--force", action="store_true",
                   help="replace a report already in OUT, its plots included (default: refuse, exit 2)")
    p.add_argument("--bootstrap-reps", type=positive_int, default=50_000, help="bootstrap resamples (default 50000)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="bootstrap generator seed (default 0)")
    p.add_argument("--title", default="s3ta evaluation report", help="report title")
    p.set_defaults(func=_report)


@command("report")
def _report(args: argparse.Namespace) -> int:
    from s3ta.evaluation.report import build_report

    files = build_report(args.run_dirs, args.out, reps=args.bootstrap_reps, seed=args.bootstrap_seed,
                         title=args.title, replace=args.force)
    for name, path in files.items():
        print(f"{name}: {path}")
    return 0
