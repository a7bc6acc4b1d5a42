"""Still figures: a PNG grid of a few recorded frames, one row per frame, with every head's
overlay and one panel per head (the figure the demo and the docs show)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3ta.analysis.recording import Recording, load_recording
from s3ta.viz.overlay import head_colour, overlay


def pick_steps(recording: Recording, num_frames: int, episode: int = 0) -> list[int]:
    """``num_frames`` steps spread evenly over one episode."""
    span = recording.episode_slice(min(episode, len(recording.meta["episodes"]) - 1))
    return sorted(set(np.linspace(span.start, span.stop - 1, num_frames).round().astype(int).tolist()))


def save_attention_figure(recording: Recording | str | Path, path: str | Path, *,
                          steps: Sequence[int] | None = None, num_frames: int = 4, episode: int = 0,
                          upsample: str = "nearest", opacity: float = 0.7, dpi: int = 110) -> Path:
    """Write a PNG grid: rows = recorded steps (``steps``, or ``num_frames`` spread over
    ``episode``); columns = all heads blended, then each head alone. Baseline recordings show the
    frames only. ``recording`` is a Recording or a recording directory. Returns ``path``."""
    if not isinstance(recording, Recording):
        recording = load_recording(recording)
    steps = list(steps) if steps is not None else pick_steps(recording, num_frames, episode)
    if not steps:
        raise ValueError("no steps to draw")
    bad = [t for t in steps if not 0 <= t < recording.num_steps]
    if bad:
        raise ValueError(f"steps {bad} are outside the recording (0..{recording.num_steps - 1})")
    frames, arrays = recording.frames, recording.arrays
    heads = recording.num_heads
    columns = 1 + heads if heads else 1
    height, width = frames.shape[1:3]
    panel = 1.9
    figure = Figure(figsize=(panel * columns * width / max(height, width) + 0.2,
                             panel * len(steps) * height / max(height, width) + 0.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(steps), columns, squeeze=False)
    names = recording.action_names
    for row, t in enumerate(steps):
        frame = frames[t]
        action = int(arrays["action"][t])
        label = (f"t={int(arrays['episode_step'][t])} {names[action] if action < len(names) else action}\n"
                 f"V={arrays['value'][t]:+.2f}")
        images = [overlay(frame, arrays["attention"][t], None, upsample, opacity)] if heads else [frame]
        titles = ["all heads"] if heads else [""]
        for h in range(heads):
            images.append(overlay(frame, arrays["attention"][t], [h], upsample, opacity))
            titles.append(f"head {h}")
        for col, (image, title) in enumerate(zip(images, titles)):
            ax = axes[row, col]
            ax.imshow(image, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9, color=np.array(head_colour(col - 1)) / 255 if col else "black")
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    source = recording.meta["source"]
    figure.suptitle(f"{source['agent']['name']} on {source.get('env', '?')}", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    return path
