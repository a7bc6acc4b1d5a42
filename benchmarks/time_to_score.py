"""Time to score: evaluate a run's checkpoints under its protocol and say which first reaches a target.

For each checkpoint (files, run directories, or folders of ``ckpt-*.pt``; a file name seen twice is
one checkpoint): ``s3ta eval`` with N episodes (saved under ``--out/FILE-STEM/``; an earlier evaluation
there with as many episodes is reused), and the run's wall-clock training hours up to that checkpoint's
frames (all attempts, from the run's metrics.jsonl). Prints a markdown table, writes
``--out/time_to_score.json`` and, with ``--plot``, the evaluations over the training curve. A run keeps
only its last 3 checkpoints unless trained with ``--keep-checkpoints N``.

    python benchmarks/time_to_score.py runs/pong-s2 --episodes 30 --target 18 \\
        --out runs/pong-s2/time-to-score --plot docs/img/pong-s2-time-to-score.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3ta import zoo
from s3ta.evaluation.evaluate import SUMMARY_JSON, evaluate_checkpoint
from s3ta.evaluation.metrics import binned_mean
from s3ta.evaluation.report import read_training_episodes
from s3ta.training.checkpoint import list_checkpoints


def checkpoint_files(paths: list[Path]) -> list[Path]:
    """Every checkpoint named or found in a folder, once per file name (``ckpt-FRAMES.pt`` names sort by frames)."""
    found: dict[str, Path] = {}
    for path in paths:
        files = [path] if path.is_file() else list_checkpoints(path) or sorted(path.glob("ckpt-*.pt"))
        for file in files:
            found.setdefault(file.name, file)
    return [found[name] for name in sorted(found)]


def evaluate(path: Path, episodes: int, out: Path) -> dict:
    """The summary of ``s3ta eval`` on ``path``; reuses the one saved for its file name with as many episodes.

    Progress goes to stderr (a bar on a terminal, a line per episode in a log), the table to stdout.
    """
    folder = out / path.stem
    saved = folder / SUMMARY_JSON
    if saved.exists():
        summary = json.loads(saved.read_text())
        if summary["episodes"] == episodes:
            print(f"{path.name}: reusing {saved}", file=sys.stderr, flush=True)
            return summary
    summary, _ = evaluate_checkpoint(path, episodes, out=folder, progress=True)
    return summary


def plot(run: Path, rows: list[dict], target: float | None, out: Path) -> None:
    figure = Figure(figsize=(7.5, 4.2), dpi=110)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    frames, returns = read_training_episodes(run)
    if len(frames):
        edges = np.linspace(0, frames.max(), 61)
        ax.plot((edges[:-1] + edges[1:]) / 2 / 1e6, binned_mean(frames, returns, edges), color="0.6",
                label="training episodes (mean per bin)")
    x = [r["frames"] / 1e6 for r in rows]
    y = [r["mean"] for r in rows]
    err = [[r["mean"] - r["ci_low"] for r in rows], [r["ci_high"] - r["mean"] for r in rows]]
    ax.errorbar(x, y, yerr=err, fmt="o", color="C0", capsize=3, label=f"evaluation, {rows[0]['episodes']} episodes, 95% CI")
    if target is not None:
        ax.axhline(target, color="C3", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set_xlabel("frames (millions)")
    ax.set_ylabel("episode return")
    ax.set_title(f"{run.name}: evaluations of its checkpoints")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run directory (its metrics.jsonl gives the hours)")
    parser.add_argument("checkpoints", type=Path, nargs="*",
                        help="checkpoint files or folders of them (default: the run's checkpoints/)")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--target", type=float, help="the score to reach; the first checkpoint whose mean reaches it is named")
    parser.add_argument("--out", type=Path, required=True, help="folder for the evaluations and time_to_score.json")
    parser.add_argument("--plot", type=Path, help="PNG of the evaluations over the training curve")
    args = parser.parse_args()

    rows = []
    print("| checkpoint frames | training hours to it | mean return ± 95% CI | episodes | normalised score |")
    print("|---:|---:|---:|---:|---:|")
    paths = checkpoint_files(args.checkpoints or [args.run])
    if not paths:
        parser.error(f"no checkpoints (ckpt-*.pt) in {', '.join(map(str, args.checkpoints or [args.run]))}")
    for i, path in enumerate(paths, 1):
        print(f"[{i}/{len(paths)}] {path}: {args.episodes} episodes", file=sys.stderr, flush=True)
        summary = evaluate(path, args.episodes, args.out)
        frames, ret, normalized = summary["checkpoint_frames"], summary["return"], summary.get("normalized") or {}
        row = {"frames": frames, "checkpoint": str(path), "hours": zoo.training_hours(args.run, until_frames=frames),
               "mean": ret["mean"], "ci_low": ret["ci_low"], "ci_high": ret["ci_high"], "episodes": summary["episodes"],
               "hns": normalized.get("mean")}
        rows.append(row)
        hns = "—" if row["hns"] is None else f"{100 * row['hns']:.1f}%"
        print(f"| {frames:,} | {row['hours']:.2f} | {row['mean']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] "
              f"| {row['episodes']} | {hns} |", flush=True)
    rows.sort(key=lambda r: r["frames"])
    first = next((r for r in rows if args.target is not None and r["mean"] >= args.target), None)
    if args.target is not None:
        print(f"\nfirst checkpoint with mean >= {args.target:g}: " +
              (f"{first['frames']:,} frames, {first['hours']:.2f} training hours" if first else "none"))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_to_score.json").write_text(json.dumps({"run": str(args.run), "target": args.target,
                                                             "first": first, "rows": rows}, indent=2) + "\n")
    if args.plot and rows:
        plot(args.run, rows, args.target, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
