"""Runs sharing one machine (not a test): frames/s of one `s3ta train` run alone, then of several started
together with the learner's default threads (every core each) and with ``cores / runs`` threads each.
Each run is a real `s3ta train` process with its actor; frames/s is read from its metrics.jsonl over the
last ``--seconds`` of the measurement, after a warm-up.

    python benchmarks/shared_machine.py                                  # atari-small on Breakout, bf16 (~12 min)
    python benchmarks/shared_machine.py --runs 2 --seconds 120 --json benchmarks/results/shared-machine.json
    python benchmarks/shared_machine.py --table benchmarks/results/shared-machine.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3ta.runtime import wait_passively  # noqa: E402 - no torch import

wait_passively()  # as the s3ta CLI does, before torch loads

import torch  # noqa: E402

from throughput import matmul_peak  # noqa: E402 - the sibling benchmarks' peak and log reading
from train_fps import window_fps  # noqa: E402

from s3ta.evaluation.runlog import read_metrics  # noqa: E402


def last_seconds_fps(run_dir: Path, seconds: float) -> float:
    """Frames per second of wall clock over the run's update records of its last ``seconds``."""
    updates = read_metrics(run_dir, "update")
    if not updates:
        raise SystemExit(f"{run_dir}: no update record; raise --warmup")
    window = [r for r in updates if r["time"] >= updates[-1]["time"] - seconds]
    return window_fps(window, f"{run_dir}, the last {seconds:g} s")[0]


def scenario(runs: int, threads: int, args: argparse.Namespace, workdir: Path) -> list[float]:
    """Start ``runs`` trainings at once with ``threads`` learner threads each (0: every core); frames/s of each."""
    dirs = [workdir / f"runs{runs}-threads{threads}-{i}" for i in range(runs)]
    command = [sys.executable, "-m", "s3ta", "train", "--config", args.config, "--env", args.env,
               "--precision", args.precision, "--total-frames", "1000000000", "--checkpoint-interval", "1e9",
               "--log-interval", "5", "--learner-threads", str(threads),
               "--time-limit", str(args.warmup + args.seconds)]
    processes = [subprocess.Popen([*command, "--seed", str(i), "--out", str(run_dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for i, run_dir in enumerate(dirs)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode not in (0, 75):  # 75: stopped by its time limit, as intended
            raise SystemExit(f"a run failed (exit {process.returncode}):\n{err[-2000:]}")
    return [last_seconds_fps(run_dir, args.seconds) for run_dir in dirs]


def table(result: dict) -> str:
    rows = ["| runs at once | learner threads each | frames/s of each run | frames/s together | vs one run alone |",
            "|---:|---|---|---:|---:|"]
    alone = sum(result["scenarios"][0]["fps"])
    for s in result["scenarios"]:
        threads = "every core" if s["threads"] == 0 else str(s["threads"])
        each = ", ".join(f"{fps:,.0f}" for fps in s["fps"])
        rows.append(f"| {s['runs']} | {threads} | {each} | {sum(s['fps']):,.0f} | {sum(s['fps']) / alone:.2f}× |")
    machine = (f"{result['machine']}, {result['cores']} cores, torch {result['torch']}; matmul peak "
               f"{result['fp32_peak_gflops']:.1f} GFLOP/s fp32 (all threads, measured before the runs)")
    return "\n".join(rows) + f"\n\n{result['config']} on {result['env']}, {result['precision']}; {machine}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="atari-small", help="preset or config.json of the runs")
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    parser.add_argument("--runs", type=int, default=0, help="runs at once (default: the number of cores)")
    parser.add_argument("--warmup", type=float, default=90, help="seconds before the measurement window")
    parser.add_argument("--seconds", type=float, default=150, help="seconds of the measurement window")
    parser.add_argument("--json", help="save the result here")
    parser.add_argument("--table", metavar="JSON", help="print the docs table of a saved result and exit")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    cores = os.cpu_count() or 1
    runs = args.runs or cores
    if runs < 2:
        raise SystemExit("--runs must be >= 2 (one run alone is always measured)")
    result = {"config": args.config, "env": args.env, "precision": args.precision, "cores": cores,
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "fp32_peak_gflops": matmul_peak(3.0) / 1e9, "scenarios": []}
    with tempfile.TemporaryDirectory() as workdir:
        for count, threads in [(1, 0), (runs, 0), (runs, max(1, cores // runs))]:
            started = time.monotonic()
            fps = scenario(count, threads, args, Path(workdir))
            result["scenarios"].append({"runs": count, "threads": threads, "fps": fps})
            print(f"{count} run(s), learner threads {threads or 'all'}: {', '.join(f'{f:,.0f}' for f in fps)} "
                  f"frames/s ({time.monotonic() - started:.0f} s)", flush=True)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
