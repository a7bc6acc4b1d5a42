"""Top-k cell deletion: does deleting the few attention cells a map ranks first change the policy more
than deleting as many random cells at the same step? (issue 38, item 4; the whole-curve insertion and
deletion of ``faithfulness`` could not tell the heads from random, docs/interpretability.md).

At step t a map [h, w] (one head, the heads' mean, a saliency map pooled to the cells, or a constant
map whose ties broken at random give a random ranking) picks its top ``k`` cells, optionally among the
cells that hold an object (pixels that differ from the recording's median frame, the background plate).
Their pixels are replaced by a substrate ("blur", "mean" as in ``faithfulness``; "plate": the median
frame; "cell-mode": each cell's most frequent colour) and the frame is fed to the agent from the state
the clean replay had before t. Scored by the policy's change, not a curve's area: KL(pi_clean || pi),
whether the greedy action flips, the drop in p(a*) and |V - V_clean|. Each map is compared with the
random rankings *at the same step* (paired), with a moving-block bootstrap CI over steps.
Shape letters: S steps, R random draws, P perturbed frames, C/H/W frame, h/w attention map, A actions.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from s3ta.agents.core import AgentInputs
from s3ta.analysis.choices import TOPK_SUBSTRATES
from s3ta.analysis.common import kl_divergence, recorded_inputs
from s3ta.analysis.faithfulness import paired_difference
from s3ta.analysis.faithfulness import substrate as frame_substrate
from s3ta.analysis.forward import Replay, replay, unroll
from s3ta.analysis.geometry import cell_index
from s3ta.analysis.recording import Recording

MEASURES = ("kl", "flip", "drop", "value")
OBJECTS = " (object cells)"  # suffix of a map restricted to the cells that hold an object


# --- pure pieces -----------------------------------------------------------------------------
def median_plate(obs: np.ndarray) -> np.ndarray:
    """uint8 [C, H, W]: the per-pixel median of frames [T, C, H, W], the background plate (what is
    there most of the time: moving objects and short-lived ones are gone)."""
    obs = np.asarray(obs)
    if obs.ndim != 4:
        raise ValueError(f"obs must be [T, C, H, W], got shape {obs.shape}")
    return np.median(obs, axis=0).round().astype(np.uint8)


def cell_grid(height: int, width: int, h: int, w: int) -> np.ndarray:
    """int64 [H, W]: the flat attention cell (row * w + col) of each pixel."""
    return cell_index(height, h)[:, None] * w + cell_index(width, w)[None, :]


def cell_mode(frame: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 [C, H, W]: every pixel of each attention cell set to the cell's most frequent colour
    (a small object in a cell of background becomes background)."""
    frame = np.asarray(frame)
    if frame.ndim != 3:
        raise ValueError(f"frame must be [C, H, W], got shape {frame.shape}")
    channels, height, width = frame.shape
    grid = cell_grid(height, width, h, w)
    out = np.empty_like(frame)
    colours = frame.reshape(channels, -1).T  # [H * W, C]
    for cell in range(h * w):
        pixels = np.flatnonzero(grid.ravel() == cell)
        values, counts = np.unique(colours[pixels], axis=0, return_counts=True)
        out.reshape(channels, -1)[:, pixels] = values[counts.argmax()][:, None]
    return out


def fill(frame: np.ndarray, kind: str, *, plate: np.ndarray | None = None, grid: tuple[int, int] | None = None,
         ) -> np.ndarray:
    """uint8 [C, H, W]: what deleted pixels of ``frame`` become (see the module docstring)."""
    if kind in ("blur", "mean"):
        return frame_substrate(frame, kind)
    if kind == "plate":
        if plate is None or plate.shape != frame.shape:
            raise ValueError(f"the plate substrate needs a plate of the frame's shape {frame.shape}")
        return plate
    if kind == "cell-mode":
        if grid is None:
            raise ValueError("the cell-mode substrate needs the attention grid (h, w)")
        return cell_mode(frame, *grid)
    raise ValueError(f"substrate must be one of {TOPK_SUBSTRATES}, got {kind!r}")


def object_cells(frame: np.ndarray, plate: np.ndarray, h: int, w: int) -> np.ndarray:
    """bool [h, w]: the cells where some pixel of ``frame`` differs from the background ``plate``."""
    if frame.shape != plate.shape:
        raise ValueError(f"frame {frame.shape} and plate {plate.shape} differ in shape")
    height, width = frame.shape[-2:]
    differs = (frame != plate).any(0).ravel()  # [H * W]
    counts = np.bincount(cell_grid(height, width, h, w).ravel(), weights=differs, minlength=h * w)
    return (counts > 0).reshape(h, w)


def pool_to_cells(pixel_map: np.ndarray, h: int, w: int) -> np.ndarray:
    """float64 [h, w]: the sum of a pixel map [H, W] over each attention cell."""
    pixel_map = np.asarray(pixel_map, np.float64)
    height, width = pixel_map.shape
    return np.bincount(cell_grid(height, width, h, w).ravel(), weights=pixel_map.ravel(),
                       minlength=h * w).reshape(h, w)


def top_cells(importance: np.ndarray, k: int, rng: np.random.Generator, allowed: np.ndarray | None = None,
              ) -> np.ndarray:
    """int64 [<= k]: the flat indices of the ``k`` most important cells of a map [h, w], ties broken at
    random (a constant map gives k cells drawn uniformly); with ``allowed`` (bool [h, w]) only among those."""
    values = np.asarray(importance, np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("importance map has NaN or infinite values")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.lexsort((rng.random(values.size), -values))
    if allowed is not None:
        if allowed.shape != np.shape(importance):
            raise ValueError(f"allowed {allowed.shape} and map {np.shape(importance)} differ in shape")
        order = order[np.asarray(allowed).ravel()[order]]
    return order[:k]


def delete_cells(frame: np.ndarray, filled: np.ndarray, cells: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 [C, H, W]: ``frame`` with the pixels of the given flat cells taken from ``filled``."""
    if frame.shape != filled.shape:
        raise ValueError(f"frame {frame.shape} and substrate {filled.shape} differ in shape")
    mask = np.isin(cell_grid(frame.shape[1], frame.shape[2], h, w), cells)  # [H, W]
    return np.where(mask[None], filled, frame)


class Change(NamedTuple):
    """How the agent's output moved from the clean step, each [P]."""

    kl: np.ndarray  # KL(pi_clean || pi), nats
    flip: np.ndarray  # 1.0 where the greedy action differs from the clean greedy action
    drop: np.ndarray  # p_clean(a*) - p(a*), a* the recorded action
    value: np.ndarray  # |V - V_clean|


def policy_change(clean_logits: torch.Tensor, clean_value: float, logits: torch.Tensor, values: torch.Tensor,
                  action: int) -> Change:
    """The change of the policy and value at one step: clean logits [A] and value, perturbed [P, A], [P]."""
    if clean_logits.ndim != 1 or logits.ndim != 2 or logits.shape[1] != clean_logits.shape[0]:
        raise ValueError(f"need clean logits [A] and logits [P, A], got {tuple(clean_logits.shape)}, "
                         f"{tuple(logits.shape)}")
    if values.shape != logits.shape[:1]:
        raise ValueError(f"values must be [P] = [{logits.shape[0]}], got {tuple(values.shape)}")
    kl = kl_divergence(clean_logits.expand_as(logits), logits).numpy()
    flip = (logits.argmax(-1) != clean_logits.argmax()).double().numpy()
    p_clean = torch.softmax(clean_logits.double(), -1)[action]
    drop = (p_clean - torch.softmax(logits.double(), -1)[:, action]).numpy()
    value = (values.double() - float(clean_value)).abs().numpy()
    return Change(kl, flip, drop, value)


# --- running ---------------------------------------------------------------------------------
@torch.no_grad()
def topk_deletion(agent: nn.Module, recording: Recording, steps: Sequence[int], maps: list[dict[str, np.ndarray]], *,
                  ks: Sequence[int] = (1,), substrates: Sequence[str] = ("plate",), objects: bool = True,
                  seed: int = 0, batch_size: int = 256, clean: Replay | None = None) -> dict[str, Any]:
    """Delete each map's top-k cells at each step and score the policy's change.

    ``maps[i]``: step ``steps[i]``'s maps [h, w] by name, random rankings named "random r" (constant
    maps). ``objects``: also each map restricted to the cells that hold an object (named NAME + OBJECTS),
    for k = 1. Returns {"scores": {substrate: {k: {map: {measure: [S]}}}}, "objects": [S] cells with an
    object per step}."""
    if len(maps) != len(steps):
        raise ValueError(f"need one dict of maps per step: {len(maps)} for {len(steps)} steps")
    for kind in substrates:
        if kind not in TOPK_SUBSTRATES:
            raise ValueError(f"substrate must be one of {TOPK_SUBSTRATES}, got {kind!r}")
    agent.eval()
    inputs = recorded_inputs(recording)
    if clean is None:
        clean = replay(agent, AgentInputs(*(x[:max(steps) + 1] for x in inputs)))
    obs = recording.arrays["obs"]
    plate = median_plate(obs)
    rng = np.random.default_rng(seed)
    names = list(maps[0])
    h, w = np.shape(maps[0][names[0]])
    jobs_of = [(k, name, False) for k in ks for name in names]
    if objects:
        jobs_of += [(1, name, True) for name in names]
    scores: dict[str, dict[int, dict[str, dict[str, list]]]] = {s: {} for s in substrates}
    object_counts = []
    for i, t in enumerate(steps):
        if list(maps[i]) != names or any(np.shape(m) != (h, w) for m in maps[i].values()):
            raise ValueError("every step must have the same maps, each of the same [h, w]")
        frame = obs[t]
        allowed = object_cells(frame, plate, h, w)
        object_counts.append(int(allowed.sum()))
        chosen = {(k, name, restricted): top_cells(maps[i][name], k, rng, allowed if restricted else None)
                  for k, name, restricted in jobs_of}
        frames, labels = [], []
        for kind in substrates:
            filled = fill(frame, kind, plate=plate, grid=(h, w))
            for (k, name, restricted), cells in chosen.items():
                frames.append(delete_cells(frame, filled, cells, h, w))
                labels.append((kind, k, name + (OBJECTS if restricted else "")))
        logits, values = _run_step(agent, inputs, clean.states[t], t, torch.from_numpy(np.stack(frames)), batch_size)
        change = policy_change(clean.output.policy_logits[t, 0].double(), float(clean.output.baseline[t, 0]),
                               logits, values, int(recording.arrays["action"][t]))
        for j, (kind, k, name) in enumerate(labels):
            entry = scores[kind].setdefault(k, {}).setdefault(name, {m: [] for m in MEASURES})
            for m in MEASURES:
                entry[m].append(float(getattr(change, m)[j]))
    return {"scores": {s: {k: {n: {m: np.asarray(v) for m, v in d.items()} for n, d in by_k.items()}
                           for k, by_k in by_s.items()} for s, by_s in scores.items()},
            "objects": np.asarray(object_counts)}


def _run_step(agent: nn.Module, inputs: AgentInputs, state, t: int, frames: torch.Tensor,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits [P, A] and values [P] of step t on each of ``frames`` [P, C, H, W], from ``state``."""
    logits, values = [], []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        count = len(chunk)
        step_inputs = AgentInputs(obs=chunk[None], prev_action=inputs.prev_action[t:t + 1].expand(1, count),
                                  prev_reward=inputs.prev_reward[t:t + 1].expand(1, count),
                                  done=inputs.done[t:t + 1].expand(1, count))
        expanded = tuple(s.expand(count, *s.shape[1:]).contiguous() for s in state)
        output, _ = unroll(agent, step_inputs, expanded)
        logits.append(output.policy_logits[0].double())
        values.append(output.baseline[0].double())
    return torch.cat(logits), torch.cat(values)


def summarise_topk(result: dict[str, Any], *, block: int = 10, draws: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per substrate, k and map (random draws pooled): each measure's mean and the paired difference
    from the random rankings of the same k (restricted to object cells for a restricted map)."""
    out: dict[str, Any] = {}
    for kind, by_k in result["scores"].items():
        out[kind] = {}
        for k, by_map in by_k.items():
            entry: dict[str, Any] = {}
            for restricted in (False, True):
                def is_random(n: str) -> bool:
                    return n.startswith("random ") and n.endswith(OBJECTS) == restricted

                randoms = [n for n in by_map if is_random(n)]
                if not randoms:
                    continue
                for name, measures in by_map.items():
                    if name.startswith("random ") or name.endswith(OBJECTS) != restricted:
                        continue
                    entry[name] = {m: paired_difference(measures[m], np.stack([by_map[r][m] for r in randoms], 1),
                                                        block=block, draws=draws, seed=seed) for m in MEASURES}
                entry["random" + (OBJECTS if restricted else "")] = {
                    "draws": len(randoms), **{m: float(np.mean([by_map[r][m] for r in randoms])) for m in MEASURES}}
            out[kind][str(k)] = entry
    return out


EXPLANATION = ("Each row: the map's top k attention cells deleted at each step (their pixels replaced by the "
               "substrate), the agent re-run from the recorded state. map = the mean change over steps (kl: "
               "KL(pi_clean || pi), flip: greedy action changed, drop: p(a*) lost, value: |V - V_clean|); random = "
               "the same for k random cells at the same steps; difference = map - random paired by step with its 95% "
               "block-bootstrap CI. A map beats random where the CI is above 0. '(object cells)': top-1 among the "
               "cells that hold an object (pixels that differ from the recording's median frame), against random "
               "object cells.")


def topk_faithfulness(agent: nn.Module, recording: Recording, steps: Sequence[int], *, ks: Sequence[int] = (1, 7),
                      substrates: Sequence[str] = ("plate", "mean"), random_draws: int = 6, saliency_stride: int = 20,
                      objects: bool = True, block: int = 10, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Top-k cell deletion at ``steps`` for every head, the heads' mean (attention agents), the agent's
    Greydanus policy-saliency map pooled to the cells (the positive control) and ``random_draws``
    random rankings (the chance level). Returns the settings, the summary and the per-step scores."""
    from s3ta.analysis.saliency import saliency

    recording.require_attention("top-k cell deletion")
    if not steps:
        raise ValueError("top-k cell deletion needs at least one step")
    if random_draws < 1:
        raise ValueError(f"random_draws must be >= 1, got {random_draws}")
    steps = [int(t) for t in steps]
    with torch.no_grad():
        clean = replay(agent.eval(), AgentInputs(*(x[:max(steps) + 1] for x in recorded_inputs(recording))))
    pixel_maps = saliency(agent, recording, steps, stride=saliency_stride, progress=progress, clean=clean).policy
    attention = recording.arrays["attention"]  # [T, N, h, w]
    h, w = attention.shape[-2:]
    maps = []
    for i, t in enumerate(steps):
        step = {f"head {n}": attention[t, n] for n in range(attention.shape[1])}
        step["heads mean"] = attention[t].mean(0)
        step["saliency"] = pool_to_cells(pixel_maps[i], h, w)
        step.update({f"random {r}": np.zeros((h, w), np.float32) for r in range(random_draws)})
        maps.append(step)
    result = topk_deletion(agent, recording, steps, maps, ks=ks, substrates=substrates, objects=objects, seed=seed,
                           clean=clean)
    return {
        "method": "top-k cell deletion against random cells, paired by step (issue 38 item 4)",
        "explanation": EXPLANATION,
        "agent": recording.meta["source"]["agent"]["name"],
        "steps": steps,
        "settings": {"ks": list(ks), "substrates": list(substrates), "random_draws": random_draws,
                     "saliency_stride": saliency_stride, "objects": objects, "block": block, "seed": seed},
        "object_cells_per_step": float(result["objects"].mean()),
        "summary": summarise_topk(result, block=block, seed=seed),
        "per_step": {s: {str(k): {n: {m: v.tolist() for m, v in d.items()} for n, d in by_k.items()}
                         for k, by_k in by_s.items()} for s, by_s in result["scores"].items()},
    }


def topk_table(result: dict[str, Any], measure: str = "kl") -> list[str]:
    """Markdown lines: per substrate and k, each map's ``measure`` against random, paired difference and CI."""
    lines = [EXPLANATION, ""]
    for kind, by_k in result["summary"].items():
        for k, entry in by_k.items():
            lines += [f"**{kind}, k = {k}** ({measure})", "",
                      "| map | its cells deleted | random cells deleted | difference [95% CI] | beats random |",
                      "|---|---|---|---|---|"]
            for name, row in entry.items():
                if name.startswith("random"):
                    continue
                x = row[measure]
                lines.append(f"| {name} | {x['map']:.3g} | {x['random']:.3g} | {x['difference']:+.3g} "
                             f"[{x['low']:+.3g}, {x['high']:+.3g}] | {'yes' if x['low'] > 0 else 'no'} |")
            lines.append("")
    return lines
