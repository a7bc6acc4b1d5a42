"""The PNG of each analysis (what/where, saliency, interventions, injection, grounding), drawn with
matplotlib's object API (no pyplot state) from an analysis result and its recording."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3ta.analysis.recording import Recording
from s3ta.viz.overlay import head_colour, heatmap_overlay, overlay, what_where_overlay


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    return path


def _image(ax, image: np.ndarray, title: str = "", colour: Any = "black") -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, color=colour)


def _rgb(head: int) -> np.ndarray:
    return np.array(head_colour(head)) / 255.0


def plot_whatwhere(recording: Recording, weighted: np.ndarray, score: np.ndarray, steps: Sequence[int],
                   path: str | Path) -> Path:
    """Per-head what/where score over time, and the coloured maps of a few steps."""
    from s3ta.analysis.whatwhere import balance

    heads = score.shape[1]
    figure = _figure(1.9 * heads + 1.0, 2.2 + 1.9 * len(steps))
    grid = figure.add_gridspec(1 + len(steps), heads, height_ratios=[1.2] + [1.0] * len(steps))
    ax = figure.add_subplot(grid[0, :])
    for n in range(heads):
        ax.plot(score[:, n], color=_rgb(n), label=f"head {n}", lw=1.2)
    ax.axhline(0, color="grey", lw=0.6)
    for start in np.flatnonzero(recording.arrays["done"])[1:]:
        ax.axvline(start - 0.5, color="lightgrey", lw=0.6)
    ax.set_xlabel("recorded step")
    ax.set_ylabel("what (+) / where (-)")
    ax.legend(fontsize=7, ncol=heads, loc="upper right")
    frames, attention = recording.frames, recording.arrays["attention"]
    balanced = balance(weighted)
    for row, t in enumerate(steps):
        for n in range(heads):
            image = what_where_overlay(frames[t], attention[t, n], balanced[t, n])
            _image(figure.add_subplot(grid[1 + row, n]), image, f"t={t} head {n}: {score[t, n]:+.2f}", _rgb(n))
    figure.suptitle("what (red: content) vs where (blue: position), attention-weighted", fontsize=9)
    return _save(figure, path)


def plot_saliency(recording: Recording, saliency, summary: dict[str, Any], path: str | Path) -> Path:
    """Rows: steps. Columns: frame, policy saliency, value saliency, and (attention agents) the
    heads most similar to each."""
    frames, has_attention = recording.frames, recording.has_attention
    columns = 5 if has_attention else 3
    steps = list(saliency.steps)
    figure = _figure(2.0 * columns, 2.3 * len(steps) + 0.3)
    axes = figure.subplots(len(steps), columns, squeeze=False)
    for row, t in enumerate(steps):
        frame = frames[t]
        _image(axes[row, 0], frame, f"step {t}")
        _image(axes[row, 1], heatmap_overlay(frame, saliency.policy[row], (255, 60, 60)), "policy saliency")
        _image(axes[row, 2], heatmap_overlay(frame, saliency.value[row], (60, 160, 255)), "value saliency")
        if has_attention:
            info = summary["steps"][row]
            for col, name in ((3, "policy"), (4, "value")):
                best = info[name]["best_head"]
                image = overlay(frame, recording.arrays["attention"][t], [best])
                _image(axes[row, col], image, f"{name}: head {best} r={info[name]['best_score']:.2f}", _rgb(best))
    figure.suptitle(f"perturbation saliency ({summary['agent']})", fontsize=9)
    return _save(figure, path)


def plot_intervene(result: dict[str, Any], path: str | Path) -> Path:
    """Bars: policy KL and flip rate per head for each head intervention; top-k mask vs random."""
    table = result["table"]
    modes = [m for m in table if table[m]]
    heads = sorted({h for m in modes for h in table[m]})
    figure = _figure(10, 3.4)
    axes = figure.subplots(1, 3)
    width = 0.8 / max(len(heads), 1)
    for metric, ax, label in (("mean_kl", axes[0], "policy KL (nats)"), ("flip_rate", axes[1], "greedy-action flip rate")):
        for k, head in enumerate(heads):
            values = [table[m][head][metric] for m in modes]
            ax.bar(np.arange(len(modes)) + k * width, values, width, label=head, color=_rgb(int(head.split()[-1])))
        ax.set_xticks(np.arange(len(modes)) + width * (len(heads) - 1) / 2, modes, fontsize=8)
        ax.set_title(label, fontsize=9)
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=7)
    mask = result["mask"]
    names = ["mean_kl", "flip_rate", "mean_abs_value_change"]
    x = np.arange(len(names))
    axes[2].bar(x - 0.2, [mask["topk"][n] for n in names], 0.4, label=f"top {mask['percent']:g}% attended")
    axes[2].bar(x + 0.2, [mask["random"][n] for n in names], 0.4, label="area-matched random")
    axes[2].set_xticks(x, ["KL", "flips", "|dV|"], fontsize=8)
    axes[2].set_title("masking input pixels", fontsize=9)
    axes[2].legend(fontsize=7)
    return _save(figure, path)


def plot_inject(recording: Recording, result: dict[str, Any], injected: Recording, path: str | Path) -> Path:
    """Frames with the sprite and attention, the attention mass on it over time, and the KL."""
    present = np.array(result["present"])
    shown = np.flatnonzero(present)
    shown = shown[np.linspace(0, len(shown) - 1, min(4, len(shown))).round().astype(int)] if len(shown) else []
    has_attention = "mass_on_sprite" in result
    figure = _figure(10, 5.6)
    grid = figure.add_gridspec(2, max(len(shown), 1) * 2)
    for k, t in enumerate(shown):
        image = overlay(injected.frames[t], injected.arrays["attention"][t]) if has_attention else injected.frames[t]
        _image(figure.add_subplot(grid[0, 2 * k:2 * k + 2]), image, f"step {t}")
    ax = figure.add_subplot(grid[1, :])
    steps = np.arange(len(present))
    if has_attention:
        injected_mass = np.array(result["mass_on_sprite"]["injected"])
        control_mass = np.array(result["mass_on_sprite"]["control"])
        for n in range(injected_mass.shape[1]):
            ax.plot(steps, injected_mass[:, n], color=_rgb(n), lw=1.4, label=f"head {n} (sprite)")
            ax.plot(steps, control_mass[:, n], color=_rgb(n), lw=0.8, ls="--")
        ax.plot(steps, result["area_fraction"], color="black", lw=0.8, ls=":", label="area share (chance)")
        ax.set_ylabel("attention mass on sprite\n(solid: with, dashed: control)", fontsize=8)
    twin = ax.twinx()
    twin.plot(steps, result["kl"], color="grey", lw=0.8, alpha=0.7)
    twin.set_ylabel("policy KL", fontsize=8, color="grey")
    ax.set_xlabel("recorded step")
    ax.legend(fontsize=7, ncol=3, loc="upper left")
    return _save(figure, path)


def plot_grounding(result: dict[str, Any], path: str | Path) -> Path:
    """Per head: mass on objects vs chance, per class, and peak-on-object rate vs chance."""
    heads = result["heads"]
    labels = result["classes"]
    figure = _figure(11, 3.4)
    axes = figure.subplots(1, 3)
    x = np.arange(len(heads))
    axes[0].bar(x, [h["mass_on_objects"] for h in heads], color=[_rgb(h["head"]) for h in heads])
    axes[0].axhline(heads[0]["chance"], color="black", ls="--", lw=1, label="area-matched chance")
    axes[0].set_xticks(x, [f"head {h['head']}" for h in heads], fontsize=8)
    axes[0].set_title("attention mass inside object boxes", fontsize=9)
    axes[0].legend(fontsize=7)
    width = 0.8 / max(len(labels), 1)
    for k, label in enumerate(labels):
        axes[1].bar(x + k * width, [h["classes"][label]["lift"] or 0 for h in heads], width, label=label)
    axes[1].axhline(1.0, color="black", ls="--", lw=1)
    axes[1].set_xticks(x + width * (len(labels) - 1) / 2, [f"head {h['head']}" for h in heads], fontsize=8)
    axes[1].set_title("lift over chance per class (1 = chance)", fontsize=9)
    axes[1].legend(fontsize=7)
    axes[2].bar(x, [h["peak_on_object_rate"] for h in heads], color=[_rgb(h["head"]) for h in heads])
    axes[2].axhline(heads[0]["peak_chance"], color="black", ls="--", lw=1, label="random peak")
    axes[2].set_xticks(x, [f"head {h['head']}" for h in heads], fontsize=8)
    axes[2].set_title("peak cell on an object", fontsize=9)
    axes[2].legend(fontsize=7)
    return _save(figure, path)


def plot_faithfulness(result: dict[str, Any], path: str | Path) -> Path:
    """Deletion and insertion curves (mean over states) of every map, one row per substrate;
    heads in their colours, the heads' mean black, saliency green, random grey dashed."""
    summary = result["summary"]
    fractions = np.asarray(result["fractions"]) * 100
    figure = _figure(10, 3.2 * len(summary))
    axes = np.atleast_2d(figure.subplots(len(summary), 2))
    for row, (kind, maps) in enumerate(summary.items()):
        for col, mode in enumerate(("deletion", "insertion")):
            ax = axes[row, col]
            for name, entry in maps.items():
                style: dict[str, Any] = {"lw": 1.2}
                if name.startswith("head "):
                    style["color"] = _rgb(int(name.split()[1]))
                elif name == "heads mean":
                    style.update(color="black", lw=2)
                elif name == "saliency":
                    style.update(color="tab:green", lw=2)
                else:
                    style.update(color="grey", ls="--", lw=2)
                auc = entry[mode]["auc"]["mean"]
                ax.plot(fractions, entry[mode]["p_curve"], label=f"{name} (AUC {auc:.3f})", **style)
            ax.set_title(f"{mode}, {kind} substrate", fontsize=9)
            ax.set_xlabel("% of pixels " + ("deleted" if mode == "deletion" else "inserted"), fontsize=8)
            ax.set_ylabel("p(chosen action)", fontsize=8)
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=6)
    return _save(figure, path)


def plot_sanity(result: dict[str, Any], path: str | Path) -> Path:
    """Spearman correlation of each map with the trained agent's, as layers are randomised."""
    stages = result["stages"]
    figure = _figure(max(6.0, 0.8 * len(stages) + 2), 3.4)
    ax = figure.subplots()
    x = np.arange(len(stages))
    for name in result["maps"]:
        style: dict[str, Any] = {"marker": "o", "lw": 1.2}
        if name.startswith("head "):
            style["color"] = _rgb(int(name.split()[1]))
        elif name == "heads mean":
            style.update(color="black", lw=2)
        else:
            style.update(color="tab:green", lw=2)
        ax.plot(x, [row["spearman"][name] for row in stages], label=name, **style)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, [row["randomised_down_to"] for row in stages], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("Spearman with trained map", fontsize=8)
    ax.set_title("model randomisation, cumulative from the top", fontsize=9)
    ax.set_ylim(-0.3, 1.05)
    ax.legend(fontsize=7)
    return _save(figure, path)
