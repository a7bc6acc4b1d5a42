"""Steady-state training speed of a run (not a test): environment frames per second of wall clock
between the first update record at or past ``--from-frames`` and the last one, from its metrics.jsonl.

    s3ta train --config atari-small --env pong --total-frames 250000 --precision bf16 --out runs/fps-bf16
    python benchmarks/train_fps.py runs/fps-bf16 --from-frames 60000
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def steady_fps(run_dir: str | Path, from_frames: int) -> tuple[float, int, float]:
    """(frames per second, frames measured, seconds measured) of ``run_dir``'s update records."""
    path = Path(run_dir) / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    updates = [r for r in records if r.get("kind") == "update" and r["frames"] >= from_frames]
    if len(updates) < 2:
        raise SystemExit(f"{path}: fewer than two update records from {from_frames:,} frames on")
    frames, seconds = updates[-1]["frames"] - updates[0]["frames"], updates[-1]["time"] - updates[0]["time"]
    return frames / seconds, frames, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories")
    parser.add_argument("--from-frames", type=int, default=60_000, help="skip the start-up before this frame")
    args = parser.parse_args()
    for run in args.runs:
        fps, frames, seconds = steady_fps(run, args.from_frames)
        print(f"{run}: {fps:,.0f} frames/s ({frames:,} frames in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
