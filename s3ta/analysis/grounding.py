"""Grounding: does each head attend to the objects a person sees? Ground truth is the recording's
object boxes (the built-in tasks' ``info["boxes"]``; for Atari, boxes decoded from the emulator RAM
by ``atari_objects``).

Per step and head: the attention mass inside the union of all boxes (and of each class's boxes),
next to the chance a uniform map would put there (the boxes' share of the frame's area: the
area-matched chance); their ratio is the lift. And whether the head's peak cell covers an object
(its pixel footprint overlaps a box), next to the share of cells that do (the chance for a peak
dropped at random). Cell mass is spread evenly over the cell's pixels (``geometry.pixel_mass``).
Per head and class, also whether the peak *follows* the object (``peak_tracking``): mass on the
object's pixels misses a head that tracks it from a cell or two away. And per head, the cells its peak
sits on most often (``frequent_peaks``): a head that looks at a place rather than at an object.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s3ta.analysis.geometry import box_mask, cell_index, pixel_mass
from s3ta.analysis.recording import Recording


def peak_cells(attention: np.ndarray) -> np.ndarray:
    """The flat index (row * w + col) of each map's peak cell: attention [..., h, w] -> [...]."""
    return attention.reshape(*attention.shape[:-2], -1).argmax(-1)


def step_grounding(attention: np.ndarray, boxes: np.ndarray, labels: list[str], height: int,
                   width: int) -> dict[str, Any]:
    """Grounding of one step: attention [N, h, w], boxes [K, 4], labels [K]."""
    h, w = attention.shape[-2:]
    mass = pixel_mass(attention, height, width)  # [N, H, W]
    union = box_mask(boxes, height, width)
    cell_of = cell_index(height, h)[:, None] * w + cell_index(width, w)[None, :]
    cells_on_object = np.zeros(h * w, bool)
    cells_on_object[np.unique(cell_of[union])] = True
    peaks = peak_cells(attention)
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


def peak_tracking(attention: np.ndarray, centres: np.ndarray) -> list[dict[str, float]]:
    """Does each head's peak cell follow an object? attention [S, N, h, w] and the object's centre
    [S, 2] (x, y in map cells, 0 to w and 0 to h) at those steps. Per head: the correlation of the
    peak cell's centre with the object's, in x and in y (nan where either never moves), and their
    median distance in cells."""
    steps, heads, h, w = attention.shape
    flat = peak_cells(attention)  # [S, N]
    peak_x, peak_y = flat % w + 0.5, flat // w + 0.5

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1]) if steps > 1 and a.std() > 0 and b.std() > 0 else float("nan")

    distance = np.hypot(peak_x - centres[:, :1], peak_y - centres[:, 1:])
    return [{"corr_x": corr(peak_x[:, n], centres[:, 0]), "corr_y": corr(peak_y[:, n], centres[:, 1]),
             "median_distance": float(np.median(distance[:, n]))} for n in range(heads)]


def frequent_peaks(attention: np.ndarray, top: int = 3) -> list[list[dict[str, float]]]:
    """Where each head's peak cell sits most often: per head of attention [S, N, h, w], the ``top``
    most frequent peak cells (row, col) and the share of steps each is the peak. A head with one
    dominant cell looks at a place, whatever is there; its mass on objects then says little."""
    steps, heads, h, w = attention.shape
    flat = peak_cells(attention)  # [S, N]
    out = []
    for n in range(heads):
        cells, counts = np.unique(flat[:, n], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:top]
        out.append([{"row": int(cells[i] // w), "col": int(cells[i] % w), "share": float(counts[i] / steps)}
                    for i in order])
    return out


def _single_box_centres(recording: Recording, steps: list[int], label: str, h: int, w: int):
    """The steps (of ``steps``) that show exactly one ``label`` box, and its centre in map cells there."""
    height, width = recording.arrays["obs"].shape[-2:]
    kept, centres = [], []
    for t in steps:
        boxes, labels = recording.boxes_at(t)
        found = [box for box, name in zip(boxes, labels) if name == label]
        if len(found) == 1:
            x0, y0, x1, y1 = found[0][:4]
            kept.append(t)
            centres.append(((x0 + x1) / 2 * w / width, (y0 + y1) / 2 * h / height))
    return kept, np.array(centres, float).reshape(-1, 2)


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
    h, w = attention.shape[-2:]
    tracking = {}  # classes seen as one box on at least two steps (one ball, one paddle; not a wall of bricks)
    for label in labels:
        steps, centres = _single_box_centres(recording, used, label, h, w)
        if len(steps) >= 2:
            tracking[label] = peak_tracking(attention[steps], centres)
    places = frequent_peaks(attention[used])
    heads_out = []
    for n in range(heads):
        entry = {"head": n, "mass_on_objects": float(mass[:, n].mean()), "chance": float(chance.mean()),
                 "lift": float(mass[:, n].mean() / chance.mean()) if chance.mean() > 0 else None,
                 "peak_on_object_rate": float(peak[:, n].mean()), "peak_chance": float(peak_chance.mean()),
                 "frequent_peaks": places[n], "classes": {}}
        for label in labels:
            rows = [s["classes"][label] for s in per_step if label in s["classes"]]
            class_mass = float(np.mean([r["mass"][n] for r in rows]))
            class_chance = float(np.mean([r["chance"] for r in rows]))
            entry["classes"][label] = {"mass": class_mass, "chance": class_chance, "steps": len(rows),
                                       "lift": class_mass / class_chance if class_chance > 0 else None,
                                       "peak_tracking": tracking[label][n] if label in tracking else None}
        heads_out.append(entry)
    return {
        "steps_with_boxes": len(used),
        "classes": labels,
        "heads": heads_out,
        "per_step": {"steps": used, "mass": mass.tolist(), "chance": chance.tolist(),
                     "peak_on_object": peak.astype(bool).tolist()},
    }
