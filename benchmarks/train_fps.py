"""Training speed of a run (not a test): environment frames per second of wall clock over a window of
its update records in metrics.jsonl, from the first record at or past ``--from-frames`` to the last one
(or the last at or before ``--to-frames``). A window may not span a resume: each attempt's clock starts
again at 0.

    s3ta train --config atari-small --env pong --total-frames 250000 --precision bf16 --out runs/fps-bf16
    python benchmarks/train_fps.py runs/fps-bf16 --from-frames 60000
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from s3ta.evaluation.runlog import read_metrics  # the log as the report reads it: superseded records left out


def window_fps(updates: list[dict], where: str) -> tuple[float, int, float]:
    """(frames per second, frames measured, seconds measured) from the first to the last of ``updates``, a
    window of one attempt (``where`` names it in errors)."""
    if len(updates) < 2:
        raise SystemExit(f"{where}: fewer than two update records in the window")
    if any(b["time"] < a["time"] for a, b in zip(updates, updates[1:])):
        raise SystemExit(f"{where}: the window spans a resume (the clock restarts there); narrow it")
    frames, seconds = updates[-1]["frames"] - updates[0]["frames"], updates[-1]["time"] - updates[0]["time"]
    return frames / seconds, frames, seconds


def steady_fps(run_dir: str | Path, from_frames: int, to_frames: float = math.inf) -> tuple[float, int, float]:
    """``window_fps`` of ``run_dir``'s update records from ``from_frames`` to ``to_frames``."""
    updates = [r for r in read_metrics(run_dir, "update") if from_frames <= r["frames"] <= to_frames]
    return window_fps(updates, f"{run_dir}, frames {from_frames:,} to {to_frames:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--from-frames", type=int, default=60_000, help="skip the start-up before this frame")
    parser.add_argument("--to-frames", type=int, default=None, help="end the window here (default: the last record)")
    args = parser.parse_args()
    for run in args.runs:
        fps, frames, seconds = steady_fps(run, args.from_frames, args.to_frames or math.inf)
        print(f"{run}: {fps:,.0f} frames/s ({frames:,} frames in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
