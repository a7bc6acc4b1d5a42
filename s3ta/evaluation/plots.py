"""The report's figures as PNG files, drawn from arrays it is given: learning curves per game (a
line per agent, a band over seeds) and the aggregate metrics with their intervals. Figures use
matplotlib's object API (``Figure`` + Agg canvas), so no global pyplot state or backend is touched.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

METRIC_TITLES = {"median": "Median", "iqm": "IQM", "mean": "Mean", "optimality_gap": "Optimality gap"}


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)
    return path


def learning_curves(series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, game: str,
                    reference=None, peers: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Path:
    """One game's training curves. ``series``: {label: (x [E], per-seed returns [S, E])}; each is
    drawn as the mean over seeds with a band from the lowest to the highest seed (NaN = no data).
    ``reference``: a s3ta.evaluation.reference.Reference whose random (and, for built-in tasks,
    optimal) return is drawn as a horizontal line. ``peers``: {label: (frames [P], returns [P])},
    published points of other implementations, drawn as markers."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for label, (x, curves) in series.items():
        present = ~np.isnan(curves)
        count = present.sum(0)  # [E]
        mean = np.where(count > 0, np.where(present, curves, 0.0).sum(0) / np.maximum(count, 1), np.nan)
        low = np.where(count > 0, np.where(present, curves, np.inf).min(0), np.nan)
        high = np.where(count > 0, np.where(present, curves, -np.inf).max(0), np.nan)
        line, = ax.plot(x, mean, marker=".", label=f"{label} ({curves.shape[0]} seeds)")
        if curves.shape[0] > 1:
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    for i, (label, (frames, returns)) in enumerate((peers or {}).items()):
        ax.plot(frames, returns, linestyle="none", marker="Ds^v"[i % 4], markersize=7, markerfacecolor="none",
                color="black", label=label)
    if reference is not None:
        ax.axhline(reference.low, color="grey", linestyle=":", linewidth=1, label=f"random ({reference.low:g})")
        if reference.suite == "builtin":
            ax.axhline(reference.high, color="grey", linestyle="--", linewidth=1,
                       label=f"{reference.high_name} ({reference.high:g})")
    ax.set_title(f"{game}: training episodes")
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return (raw)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def aggregate_intervals(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """A panel per aggregate metric, a row per agent: the point estimate and its interval (in %)."""
    names = [r["agent"] for r in rows]
    fig = Figure(figsize=(3.0 * len(METRIC_TITLES), 0.6 * len(rows) + 1.4), layout="constrained")
    axes = fig.subplots(1, len(METRIC_TITLES), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))
    for ax, (metric, label) in zip(axes, METRIC_TITLES.items()):
        for i, r in enumerate(rows):
            value, low, high = (100 * v for v in r[metric])
            color = f"C{i}"
            if not math.isnan(low):
                ax.plot([low, high], [i, i], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
            ax.plot([value], [i], marker="|", markersize=14, color=color, markeredgewidth=2)
        ax.set_title(label + (" (lower is better)" if metric == "optimality_gap" else ""), fontsize="medium")
        ax.set_xlabel("normalised score (%)")
        ax.grid(axis="x", alpha=0.3)
        ax.margins(x=0.15)
    axes[0].set_yticks(y, names)
    axes[0].set_ylim(len(rows) - 0.4, -0.6)  # the first agent on top
    fig.suptitle(title, fontsize="medium")
    return _save(fig, path)


def improvement_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per unordered pair of agents with a game in common, oriented so that P(X > Y) >= 0.5 (the
    agent ahead on the left; the reversed row says nothing more), ordered from the largest lead down."""
    seen, pairs = set(), []
    for r in rows:
        key = frozenset((r["x"], r["y"]))
        if key in seen or math.isnan(r["probability"].value):
            continue
        seen.add(key)
        if r["probability"].value < 0.5:
            r = next(other for other in rows if (other["x"], other["y"]) == (r["y"], r["x"]))
        pairs.append(r)
    return sorted(pairs, key=lambda r: -r["probability"].value)


def improvement_intervals(pairs: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Probability of improvement, a row per pair of agents (``improvement_pairs``' rows): P(X > Y) with its
    95% interval on [0, 1], and the line at 0.5 where neither is ahead; an interval clear of it is a lead."""
    fig = Figure(figsize=(6.4, 0.5 * len(pairs) + 1.3), layout="constrained")
    ax = fig.add_subplot()
    for i, r in enumerate(pairs):
        p = r["probability"]
        color = "C0" if p.low > 0.5 else "grey"
        ax.plot([p.low, p.high], [i, i], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
        ax.plot([p.value], [i], marker="|", markersize=14, color=color, markeredgewidth=2)
    ax.axvline(0.5, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(pairs)), [f"P({r['x']} > {r['y']})" for r in pairs])
    ax.set_ylim(len(pairs) - 0.4, -0.6)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of improvement, 95% interval (blue: clear of 0.5)", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize="medium")
    return _save(fig, path)


def curve_bin_edges(last_frame: float, bins: int) -> np.ndarray:
    """Edges 0, w, 2w, ... of about ``bins`` frame bins up to and including ``last_frame``, where the
    width w is the smallest of 1, 2 or 5 times a power of ten that is >= last_frame / bins (a width a
    legend can print: "mean per 1,000,000 frames", not 999,776)."""
    x = max(float(last_frame), 1.0) / bins
    power = 10.0 ** np.floor(np.log10(x))
    width = next(step * power for step in (1, 2, 5, 10) if step * power >= x * (1 - 1e-12))
    return np.arange(0, last_frame // width + 2) * width  # the last bin holds the last episode


def run_learning_curve(run_dir: str | Path, path: str | Path, title: str = "", bins: int = 40) -> Path:
    """One run's learning curve: its training episodes' raw returns (dots) and their mean per frame bin
    (line; about ``bins`` bins of a round width), with the env's random (and, for built-in tasks,
    optimal) return. Raises ValueError when no episode has ended yet."""
    import json

    from s3ta.evaluation.metrics import binned_mean
    from s3ta.evaluation.reference import reference_for
    from s3ta.evaluation.runlog import read_training_episodes

    run_dir = Path(run_dir)
    frames, returns = read_training_episodes(run_dir)
    if frames.size == 0:
        raise ValueError(f"no training episode has ended in {run_dir} yet")
    env = json.loads((run_dir / "config.json").read_text()).get("env", "")
    edges = curve_bin_edges(frames.max(), bins)
    centres = (edges[:-1] + edges[1:]) / 2
    means = binned_mean(frames, returns, edges)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(frames, returns, s=3, alpha=0.25, color="tab:blue", linewidths=0, label="episodes")
    ax.plot(centres, means, marker=".", color="tab:blue", label=f"mean per {edges[1]:,.0f} frames")
    reference = reference_for(env)
    if reference is not None:
        ax.axhline(reference.low, color="grey", linestyle=":", linewidth=1, label=f"random ({reference.low:g})")
        ax.axhline(reference.high, color="grey", linestyle="--", linewidth=1,
                   label=f"{reference.high_name} ({reference.high:g})")
    ax.set_title(title or f"{env}: training episodes")
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return (raw)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, Path(path))
