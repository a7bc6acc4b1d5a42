"""Traces of one or more training runs against frames, for diagnosing whether and how a run learns:
episode return, policy entropy, per-head attention entropy, value loss, mean |advantage| and gradient
norm, read from each run's metrics.jsonl. One PNG with a panel per quantity, a line per run; the printed
tables give the return (with a 95% CI) and the update scalars per million frames.

    python benchmarks/training_traces.py runs/pong-s1 runs/pong-s2 --out docs/img/pong-traces.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3ta.evaluation.metrics import binned_mean
from s3ta.evaluation.report import read_metrics, read_training_episodes

PANELS = (
    ("return", "episode return (mean per bin)"),
    ("policy_entropy", "policy entropy (nats)"),
    ("attention_entropy", "attention entropy, mean of heads (nats)"),
    ("loss/baseline", "value loss (sum over T·B)"),
    ("mean_abs_advantage", "mean |advantage|"),
    ("grad_norm", "gradient norm (before clipping)"),
)


def read_updates(run_dir: Path) -> dict[str, np.ndarray]:
    """Per logged update: frames and the scalars of PANELS (the heads' mean attention entropy)."""
    rows = read_metrics(run_dir, "update")
    heads = sorted(k for k in (rows[0] if rows else {}) if k.startswith("attention_entropy/"))
    out = {"frames": np.array([r["frames"] for r in rows], float)}
    for key in ("policy_entropy", "loss/baseline", "mean_abs_advantage", "grad_norm", "learning_rate"):
        out[key] = np.array([r.get(key, math.nan) for r in rows], float)
    if heads:
        out["attention_entropy"] = np.array([np.mean([r[h] for h in heads]) for r in rows], float)
    return out


def read_grad_norm_clip(run_dir: Path) -> float | None:
    """The run's gradient-norm clip from its config.json (None without one)."""
    path = run_dir / "config.json"
    return json.loads(path.read_text()).get("grad_norm_clip") if path.exists() else None


def smooth(frames: np.ndarray, values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0, max(frames.max(), 1), bins + 1)
    return (edges[:-1] + edges[1:]) / 2, binned_mean(frames, values, edges)


def print_return_table(runs: list[Path], every: float, start_at: float = 0.0) -> None:
    """Mean training-episode return per ``every`` frames from ``start_at``, with a normal 95% CI, one
    column per run."""
    episodes = [read_training_episodes(run) for run in runs]
    last = max((frames.max() for frames, _ in episodes if frames.size), default=0.0)
    print("| frames | " + " | ".join(f"{run.name}: mean return ± 95% CI (episodes)" for run in runs) + " |")
    print("|---|" + "---:|" * len(runs))
    for start in np.arange(start_at, last, every):
        cells = []
        for frames, returns in episodes:
            chosen = returns[(frames >= start) & (frames < start + every)]
            cells.append(f"{chosen.mean():.2f} ± {1.96 * chosen.std(ddof=1) / math.sqrt(chosen.size):.2f} ({chosen.size})"
                         if chosen.size > 1 else "—")
        print(f"| {start / 1e6:g}–{(start + every) / 1e6:g}M | " + " | ".join(cells) + " |")


def print_update_table(runs: list[Path], every: float, start_at: float = 0.0) -> None:
    """Mean value loss, mean |advantage|, policy entropy, the heads' mean attention entropy and learning
    rate per ``every`` frames of logged updates, the median gradient norm before clipping and the share of
    updates it clipped (above the run's ``grad_norm_clip``), one row per run and interval (the numbers
    behind the traces' panels)."""
    keys = ("loss/baseline", "mean_abs_advantage", "policy_entropy", "attention_entropy", "learning_rate")
    print("| run | frames | value loss | mean abs advantage | policy entropy | attention entropy (heads' mean) "
          "| learning rate | median grad norm | share clipped |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for run in runs:
        updates = read_updates(run)
        clip = read_grad_norm_clip(run)
        for start in np.arange(start_at, updates["frames"].max(initial=0.0), every):
            chosen = (updates["frames"] >= start) & (updates["frames"] < start + every)
            if not chosen.any():
                continue
            cells = [f"{np.nanmean(updates[k][chosen]):.3g}" if k in updates else "—" for k in keys]
            norms = updates["grad_norm"][chosen]
            cells.append(f"{np.nanmedian(norms):.3g}")
            cells.append(f"{np.mean(norms > clip):.0%}" if clip else "—")
            print(f"| {run.name} | {start / 1e6:g}–{(start + every) / 1e6:g}M | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--bins", type=int, default=50, help="frame bins per curve (default 50)")
    parser.add_argument("--table-every", type=float, default=1e6,
                        help="frames per row of the printed return table (default 1M)")
    parser.add_argument("--table-from", type=float, default=0.0,
                        help="first frame of the printed tables (default 0): a fork's rows from its fork point, "
                             "where its config's clip applies")
    args = parser.parse_args()
    print_return_table(args.runs, args.table_every, args.table_from)
    print()
    print_update_table(args.runs, args.table_every, args.table_from)

    fig = Figure(figsize=(12, 7), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    for run in args.runs:
        updates = read_updates(run)
        frames, returns = read_training_episodes(run)
        series = {"return": (frames, returns), **{k: (updates["frames"], v) for k, v in updates.items() if k != "frames"}}
        for ax, (key, title) in zip(axes, PANELS):
            if key in series and series[key][0].size:
                x, y = smooth(*series[key], args.bins)
                present = ~np.isnan(y)  # bins without data are skipped, not drawn as gaps
                ax.plot(x[present], y[present], label=run.name)
            ax.set_title(title, fontsize="medium")
            ax.set_xlabel("frames")
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    FigureCanvasAgg(fig)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
