"""Grounding: does each head attend to the objects a person sees? Ground truth is the recording's
object boxes (the built-in tasks' ``info["boxes"]``; for Atari, boxes decoded from the emulator RAM
by ``atari_objects``).

Per step and head: the attention mass inside the union of all boxes (and of each class's boxes),
next to the chance a uniform map would put there (the boxes' share of the frame's area: the
area-matched chance); their ratio is the lift. And whether the head's peak cell covers an object
(its pixel footprint overlaps a box), next to the share of cells that do (the chance for a peak
dropped at random). Cell mass is spread evenly over the cell's pixels (``geometry.pixel_mass``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s3ta.analysis.geometry import box_mask, cell_index, pixel_mass
from s3ta.analysis.recording import Recording


def step_grounding(attention: np.ndarray, boxes: np.ndarray, labels: list[str], height: int,
                   width: int) -> dict[str, Any]:
    """Grounding of one step: attention [N, h, w], boxes [K, 4], labels [K]."""
    heads, h, w = attention.shape
    mass = pixel_mass(attention, height, width)  # [N, H, W]
    union = box_mask(boxes, height, width)
    cell_of = cell_index(height, h)[:, None] * w + cell_index(width, w)[None, :]
    cells_on_object = np.zeros(h * w, bool)
    cells_on_object[np.unique(cell_of[union])] = True
    peaks = attention.reshape(heads, -1).argmax(-1)
    out: dict[str, Any] = {
        "mass": (mass * union).sum((-1, -2)).tolist(),
        "chance": float(union.mean()),
        "peak_on_object": cells_on_object[peaks].tolist(),
        "peak_chance": float(cells_on_object.mean()),
        "classes": {},
    }
    for label in sorted(set(labels)):
        mask = box_mask(boxes[[i for i, name in enumerate(labels) if name == label]], height, width)
        out["classes"][label] = {"mass": (mass * mask).sum((-1, -2)).tolist(), "chance": float(mask.mean())}
    return out


def class_lift(attention: np.ndarray, boxes: list[list[tuple[np.ndarray, list[str]]]], height: int,
               width: int, skip: int = 0) -> dict[str, list[float]]:
    """Per class, each head's lift pooled over many steps: attention [T, B, N, h, w] with
    ``boxes[b][t] = (boxes [K, 4], labels)``; the class's attention mass summed over the steps
    from ``skip`` on, over the summed chance (its boxes' area share). Classes never seen are left out."""
    mass: dict[str, np.ndarray] = {}
    chance: dict[str, float] = {}
    for episode, episode_boxes in enumerate(boxes):
        for t in range(skip, len(episode_boxes)):
            step = step_grounding(attention[t, episode], *episode_boxes[t], height, width)
            for label, numbers in step["classes"].items():
                mass[label] = mass.get(label, 0.0) + np.asarray(numbers["mass"])
                chance[label] = chance.get(label, 0.0) + numbers["chance"]
    return {label: (mass[label] / chance[label]).tolist() for label in sorted(mass) if chance[label] > 0}


def border_lift(attention: np.ndarray) -> list[float]:
    """Each head's mean attention mass on the map's outer ring of cells over the ring's share of the
    cells (1 = chance): attention [..., N, h, w]. Zero padding makes the ring unlike the background."""
    heads, h, w = attention.shape[-3:]
    ring = np.ones((h, w), bool)
    ring[1:-1, 1:-1] = False
    mass = attention.reshape(-1, heads, h, w)[..., ring].sum(-1).mean(0)  # [N]
    return (mass / ring.mean()).tolist()


def grounding(recording: Recording) -> dict[str, Any]:
    """Per head (and per head and class) averages over the recorded steps that have boxes."""
    recording.require_attention("grounding")
    if not recording.has_boxes:
        from s3ta.analysis.atari_objects import DECODERS

        raise ValueError(f"the recording at {recording.path} has no ground-truth boxes (record a built-in task, "
                         f"or an Atari game with a RAM table: {', '.join(DECODERS)})")
    attention = recording.arrays["attention"]
    height, width = recording.arrays["obs"].shape[-2:]
    heads = attention.shape[1]
    per_step, used = [], []
    for t in range(recording.num_steps):
        boxes, labels = recording.boxes_at(t)
        if len(labels) == 0:
            continue
        per_step.append(step_grounding(attention[t], boxes, labels, height, width))
        used.append(t)
    if not per_step:
        raise ValueError("no recorded step has a ground-truth box")
    mass = np.array([s["mass"] for s in per_step])  # [S, N]
    chance = np.array([s["chance"] for s in per_step])  # [S]
    peak = np.array([s["peak_on_object"] for s in per_step], float)
    peak_chance = np.array([s["peak_chance"] for s in per_step])
    labels = sorted({label for s in per_step for label in s["classes"]})
    heads_out = []
    for n in range(heads):
        entry = {"head": n, "mass_on_objects": float(mass[:, n].mean()), "chance": float(chance.mean()),
                 "lift": float(mass[:, n].mean() / chance.mean()) if chance.mean() > 0 else None,
                 "peak_on_object_rate": float(peak[:, n].mean()), "peak_chance": float(peak_chance.mean()),
                 "classes": {}}
        for label in labels:
            rows = [s["classes"][label] for s in per_step if label in s["classes"]]
            class_mass = float(np.mean([r["mass"][n] for r in rows]))
            class_chance = float(np.mean([r["chance"] for r in rows]))
            entry["classes"][label] = {"mass": class_mass, "chance": class_chance, "steps": len(rows),
                                       "lift": class_mass / class_chance if class_chance > 0 else None}
        heads_out.append(entry)
    return {
        "steps_with_boxes": len(used),
        "classes": labels,
        "heads": heads_out,
        "per_step": {"steps": used, "mass": mass.tolist(), "chance": chance.tolist(),
                     "peak_on_object": peak.astype(bool).tolist()},
    }
