"""How much a checkpoint's RMSProp steps follow the gradient's scale, per part of the agent: whether a
global gradient-norm clip changes the step sizes (docs/notebook/breakout.md, Breakout (1c)).

RMSProp steps by lr * g / (sqrt(v) + eps), v a running mean of g². If every gradient is scaled by s
(what a clip at c does when the norm is steadily above it, s = c / |g|), v scales by s² and the step's
elasticity to s is eps / (sqrt(v) + eps): near 1 where sqrt(v) << eps (the step is lr/eps times the
gradient, so the clip scales it), near 0 where sqrt(v) >> eps (Adam-like: the clip cancels out).
Prints that per parameter tensor and per module, weighted by parameter count.

    python benchmarks/research/optimizer_state.py runs/breakout-s1/checkpoints/ckpt-000040000000.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from s3ta.training.checkpoint import CheckpointError, load_agent


def step_elasticity(path: Path) -> tuple[list[dict], float]:
    """Per parameter tensor (in the optimizer's order): name, count, median sqrt(v), share with
    sqrt(v) < eps and mean elasticity eps / (sqrt(v) + eps); and the optimizer's eps."""
    agent, checkpoint = load_agent(path)
    if not checkpoint.optimizer:
        raise CheckpointError(f"{checkpoint.path} holds no optimizer state (a zoo agent's weights?); "
                              "give a training run's checkpoint")
    groups = checkpoint.optimizer["param_groups"]
    state = checkpoint.optimizer["state"]
    names = [name for name, _ in agent.named_parameters()]
    ids = [i for group in groups for i in group["params"]]
    if len(ids) != len(names) or len(groups) != 1:
        raise CheckpointError(f"{path}: {len(ids)} optimizer parameters in {len(groups)} groups "
                              f"for {len(names)} agent parameters")
    eps = groups[0].get("eps")
    if eps is None or any("square_avg" not in state.get(i, {}) for i in ids):
        raise CheckpointError(f"{path}: not an RMSProp state with eps and square_avg for every parameter")
    rows = []
    for name, i in zip(names, ids):
        rms = state[i]["square_avg"].double().sqrt().flatten()
        rows.append(dict(name=name, count=rms.numel(), median_rms=rms.median().item(),
                         below_eps=(rms < eps).double().mean().item(),
                         elasticity=(eps / (rms + eps)).mean().item()))
    return rows, eps


def by_module(rows: list[dict], module: Callable[[str], str] = lambda name: name.split(".")[0]) -> list[dict]:
    """The rows summed per ``module(name)`` (default the name's first component), count-weighted."""
    modules: dict[str, list[dict]] = {}
    for row in rows:
        modules.setdefault(module(row["name"]), []).append(row)
    out = []
    for name, members in modules.items():
        counts = np.array([m["count"] for m in members], float)
        out.append(dict(name=name, count=int(counts.sum()),
                        below_eps=float(np.average([m["below_eps"] for m in members], weights=counts)),
                        elasticity=float(np.average([m["elasticity"] for m in members], weights=counts))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint files or run directories")
    parser.add_argument("--tensors", action="store_true", help="also print one row per parameter tensor")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        try:
            rows, eps = step_elasticity(path)
        except (CheckpointError, OSError) as error:
            print(f"optimizer_state: error: {error}", file=sys.stderr)
            return 2
        everything = by_module(rows, lambda name: "all")
        print(f"\n{path} (eps {eps:g}, {everything[0]['count']:,} parameters)\n")
        print("| module | parameters | share with sqrt(v) < eps | mean step elasticity to the gradient scale |")
        print("|---|---:|---:|---:|")
        for row in by_module(rows) + everything:
            print(f"| {row['name']} | {row['count']:,} | {row['below_eps']:.0%} | {row['elasticity']:.2f} |")
        if args.tensors:
            print("\n| tensor | parameters | median sqrt(v) | share below eps | elasticity |")
            print("|---|---:|---:|---:|---:|")
            for row in rows:
                print(f"| {row['name']} | {row['count']:,} | {row['median_rms']:.2e} | {row['below_eps']:.0%} "
                      f"| {row['elasticity']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
