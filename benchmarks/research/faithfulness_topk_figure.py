"""docs/img/faithfulness-topk.png (docs/interpretability.md, "Faithfulness"): for each agent, KL after
deleting each map's top cells over random cells' at the same steps, from the `summary` of the
`faithfulness_topk.json` that `s3ta explain faithfulness --top-k 1 7` wrote for it.

    python benchmarks/research/faithfulness_topk_figure.py \
        /tmp/faith/topk-breakout-s3ta-small /tmp/faith/topk-pong-s3ta-small-run4 /tmp/faith/topk-spaceinvaders-s3ta-small \
        --titles Breakout "Pong run (4)" SpaceInvaders --out docs/img/faithfulness-topk.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONDITIONS = [("plate", "1", "plate\ntop cell"), ("plate", "7", "plate\ntop 7 cells"), ("mean", "1", "mean colour\ntop cell")]
MAPS = ["head 0", "head 1", "head 2", "head 3", "heads mean", "saliency"]
COLOURS = ["#d62728", "#1f77b4", "#e6b800", "#9467bd", "#555555", "#2ca02c"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="folders holding faithfulness_topk.json (or the JSON files)")
    parser.add_argument("--titles", nargs="+", help="a panel title per folder (default: the folder names)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    titles = args.titles or [Path(d).name for d in args.dirs]
    fig, axes = plt.subplots(1, len(args.dirs), figsize=(3.7 * len(args.dirs), 3.2), squeeze=False)
    for ax, folder, title in zip(axes[0], args.dirs, titles):
        path = Path(folder) if folder.endswith(".json") else Path(folder) / "faithfulness_topk.json"
        summary = json.loads(path.read_text())["summary"]
        for c, (substrate, k, _) in enumerate(CONDITIONS):
            for m, (name, colour) in enumerate(zip(MAPS, COLOURS)):
                kl = summary[substrate][k][name]["kl"]
                random = max(kl["random"], 1e-12)
                ratio, low, high = kl["map"] / random, (kl["random"] + kl["low"]) / random, (kl["random"] + kl["high"]) / random
                position = c * (len(MAPS) + 1) + m
                ax.bar(position, max(ratio, 1e-2), color=colour, label=name if c == 0 and ax is axes[0][0] else None)
                ax.plot([position, position], [max(low, 1e-2), max(high, 1e-2)], color="black", lw=1)
        ax.axhline(1, color="black", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([c * (len(MAPS) + 1) + 2.5 for c in range(len(CONDITIONS))])
        ax.set_xticklabels([c[2] for c in CONDITIONS], fontsize=7)
    axes[0][0].set_ylabel("KL after deletion / random cells'")
    fig.legend(loc="upper center", ncol=len(MAPS), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
