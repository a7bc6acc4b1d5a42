"""Insertion and deletion curves (spec section 7; Petsiuk et al. 2018 "RISE", as applied to Atari
agents by Huber et al. 2021): does a map rank the pixels that the policy depends on first?

A map (one head's attention, the heads' mean, the Greydanus saliency map, or a constant map, whose
ties broken at random make a random ranking) upsampled to the frame orders the pixels from most to
least important. *Deletion* replaces the top k% of pixels of step t's frame by a substrate (the
frame blurred with sigma 5 px, or its mean colour); *insertion* starts from the full substrate and
restores the top k% of the true pixels; k = 0, 5, ..., 100. Each perturbed frame is fed to the
agent from the state the clean replay had before t (``forward.replay``), and the curve is p(a*),
the probability of the action the agent chose at t, with KL(pi_clean || pi_k) beside it.
AUC = the mean of the curve over k: deletion lower = better, insertion higher = better; a random
ranking's curves are the chance level, and each map is compared with them at the same states
(``paired_difference``). ``faithfulness_topk`` scores the top few cells only.
Shape letters: S steps, K fractions, C/H/W frame, A actions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from s3ta import agents
from s3ta.agents.core import AgentInputs
from s3ta.analysis.choices import SUBSTRATES
from s3ta.analysis.claims import Estimate, bootstrap
from s3ta.analysis.common import kl_divergence, recorded_inputs
from s3ta.analysis.forward import Replay, replay, unroll
from s3ta.analysis.geometry import upsample
from s3ta.analysis.recording import Recording
from s3ta.analysis.saliency import gaussian_blur

FRACTIONS = np.linspace(0.0, 1.0, 21)  # k = 0, 5, ..., 100 %
MODES = ("deletion", "insertion")
BLUR_SIGMA = 5.0


# --- pure pieces -----------------------------------------------------------------------------
def substrate(frame: np.ndarray, kind: str, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """What deleted pixels become: uint8 [C, H, W] from frame [C, H, W] ("blur": Gaussian blur with
    ``sigma`` px; "mean": every pixel the frame's per-channel mean colour)."""
    frame = np.asarray(frame)
    if frame.ndim != 3:
        raise ValueError(f"frame must be [C, H, W], got shape {frame.shape}")
    if kind == "blur":
        blurred = gaussian_blur(torch.from_numpy(frame.astype(np.float32))[None], sigma)[0].numpy()
        return np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    if kind == "mean":
        mean = frame.reshape(frame.shape[0], -1).mean(1)
        return np.broadcast_to(np.round(mean).astype(np.uint8)[:, None, None], frame.shape).copy()
    raise ValueError(f"substrate must be one of {SUBSTRATES}, got {kind!r}")


def pixel_order(importance: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 [H * W]: flat pixel indices from most to least important, ties broken at random
    (so a constant map gives a uniformly random order)."""
    values = np.asarray(importance, np.float64).ravel()
    if not np.isfinite(values).all():
        raise ValueError("importance map has NaN or infinite values")
    return np.lexsort((rng.random(values.size), -values))


def perturb(frame: np.ndarray, fill: np.ndarray, order: np.ndarray, fractions: Sequence[float],
            mode: str) -> np.ndarray:
    """uint8 [K, C, H, W]: for each fraction k, ``frame`` with its first k * H * W pixels of
    ``order`` replaced by ``fill`` ("deletion"), or ``fill`` with them restored ("insertion")."""
    if frame.shape != fill.shape:
        raise ValueError(f"frame {frame.shape} and substrate {fill.shape} differ in shape")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    channels, height, width = frame.shape
    if order.shape != (height * width,):
        raise ValueError(f"order must rank all {height * width} pixels, got shape {order.shape}")
    start, source = (frame, fill) if mode == "deletion" else (fill, frame)
    start, source = start.reshape(channels, -1), source.reshape(channels, -1)
    out = np.empty((len(fractions), channels, height * width), np.uint8)
    for i, fraction in enumerate(fractions):
        count = int(round(float(fraction) * height * width))
        out[i] = start
        changed = order[:count]
        out[i][:, changed] = source[:, changed]
    return out.reshape(len(fractions), channels, height, width)


def auc(curve: np.ndarray) -> np.ndarray:
    """Area under curves [..., K] sampled at evenly spaced fractions: their mean over K."""
    return np.asarray(curve, np.float64).mean(-1)


def paired_difference(map_scores: np.ndarray, random_scores: np.ndarray, *, block: int = 10, draws: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """A map's mean score over steps [S] minus the random rankings' at the same steps ([S, R], averaged
    over R first), with a moving-block bootstrap 95% CI over steps; and the ratio of the two means."""
    map_scores, random_scores = np.asarray(map_scores, np.float64), np.asarray(random_scores, np.float64)
    if map_scores.ndim != 1 or random_scores.ndim != 2 or random_scores.shape[0] != map_scores.shape[0]:
        raise ValueError(f"need map scores [S] and random scores [S, R], got {map_scores.shape}, {random_scores.shape}")
    chance = random_scores.mean(1)  # [S]
    diff = map_scores - chance
    estimate: Estimate = bootstrap(lambda idx: diff[idx].mean(), len(diff), block=block, draws=draws, seed=seed)
    return {"map": float(map_scores.mean()), "random": float(chance.mean()), "difference": float(estimate.value),
            "low": float(estimate.low), "high": float(estimate.high),
            "ratio": float(map_scores.mean() / chance.mean()) if chance.mean() > 0 else float("nan")}


def step_maps(recording: Recording, t: int, saliency_map: np.ndarray | None, random_draws: int,
              ) -> dict[str, np.ndarray]:
    """The maps ranked at step t, each [H, W] or [h, w] (upsampled later): every head, the heads'
    mean, the saliency map, and ``random_draws`` constant maps (random rankings)."""
    maps: dict[str, np.ndarray] = {}
    if recording.has_attention:
        attention = recording.arrays["attention"][t]  # [N, h, w]
        for n in range(attention.shape[0]):
            maps[f"head {n}"] = attention[n]
        maps["heads mean"] = attention.mean(0)
    if saliency_map is not None:
        maps["saliency"] = saliency_map
    for r in range(random_draws):
        maps[f"random {r}"] = np.zeros((1, 1), np.float32)
    return maps


# --- running ---------------------------------------------------------------------------------
@torch.no_grad()
def curves(agent: nn.Module, recording: Recording, steps: Sequence[int], maps: list[dict[str, np.ndarray]], *,
           substrates: Sequence[str] = ("blur",), fractions: np.ndarray = FRACTIONS, seed: int = 0,
           batch_size: int = 256, clean: Replay | None = None) -> dict[str, Any]:
    """Deletion and insertion curves of each map at each step.

    ``maps[i]`` holds step ``steps[i]``'s maps by name ([H, W] or a coarser [h, w], upsampled with
    nearest). Returns {"p": {substrate: {map: {mode: [S, K]}}}, "kl": same}, p = p(a*) with a* the
    recorded action, kl = KL(pi_clean || pi_k). ``clean``: the replay through ``max(steps)``, if made.
    """
    if len(maps) != len(steps):
        raise ValueError(f"need one dict of maps per step: {len(maps)} for {len(steps)} steps")
    for kind in substrates:
        if kind not in SUBSTRATES:
            raise ValueError(f"substrate must be one of {SUBSTRATES}, got {kind!r}")
    agent.eval()
    inputs = recorded_inputs(recording)
    if clean is None:
        clean = replay(agent, AgentInputs(*(x[:max(steps) + 1] for x in inputs)))
    obs = recording.arrays["obs"]
    height, width = obs.shape[-2:]
    rng = np.random.default_rng(seed)
    names = list(maps[0])
    p = {s: {m: {mode: [] for mode in MODES} for m in names} for s in substrates}
    kl = {s: {m: {mode: [] for mode in MODES} for m in names} for s in substrates}
    for i, t in enumerate(steps):
        if list(maps[i]) != names:
            raise ValueError("every step must have the same maps")
        frame = obs[t]
        jobs, frames = [], []
        for kind in substrates:
            fill = substrate(frame, kind)
            for name in names:
                importance = maps[i][name]
                if importance.shape != (height, width):
                    importance = upsample(importance, height, width, "nearest")
                order = pixel_order(importance, rng)
                for mode in MODES:
                    jobs.append((kind, name, mode))
                    frames.append(perturb(frame, fill, order, fractions, mode))
        batch = torch.from_numpy(np.concatenate(frames))  # [J * K, C, H, W]
        logits = _run_step(agent, inputs, clean.states[t], t, batch, batch_size)  # [J * K, A]
        clean_logits = clean.output.policy_logits[t, 0]
        action = int(recording.arrays["action"][t])
        probs = torch.softmax(logits.double(), -1)[:, action].numpy().reshape(len(jobs), len(fractions))
        kls = kl_divergence(clean_logits.expand_as(logits), logits).numpy().reshape(len(jobs), len(fractions))
        for j, (kind, name, mode) in enumerate(jobs):
            p[kind][name][mode].append(probs[j])
            kl[kind][name][mode].append(kls[j])
    as_array = lambda tree: {s: {m: {mode: np.stack(v) for mode, v in d.items()} for m, d in ms.items()}  # noqa: E731
                             for s, ms in tree.items()}
    return {"p": as_array(p), "kl": as_array(kl)}


def _run_step(agent: nn.Module, inputs: AgentInputs, state, t: int, frames: torch.Tensor,
              batch_size: int) -> torch.Tensor:
    """Policy logits [P, A] of step t on each of ``frames`` [P, C, H, W], from ``state`` (batch 1)."""
    out = []
    for start in range(0, len(frames), batch_size):
        chunk = frames[start:start + batch_size]
        count = len(chunk)
        step_inputs = AgentInputs(obs=chunk[None], prev_action=inputs.prev_action[t:t + 1].expand(1, count),
                                  prev_reward=inputs.prev_reward[t:t + 1].expand(1, count),
                                  done=inputs.done[t:t + 1].expand(1, count))
        expanded = tuple(s.expand(count, *s.shape[1:]).contiguous() for s in state)
        output, _ = unroll(agent, step_inputs, expanded)
        out.append(output.policy_logits[0].double())
    return torch.cat(out)


def _stats(values: np.ndarray) -> dict[str, float]:
    """Mean and standard error over states of per-state numbers [S]."""
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": float(values.mean()), "se": float(se)}


def summarise(result: dict[str, Any], fractions: np.ndarray = FRACTIONS) -> dict[str, Any]:
    """Per substrate and map (random draws pooled into "random"): mean curves over states and the
    AUC of p(a*) and of the KL, mean and standard error over states; and "vs_random", the map's p(a*)
    AUC minus the random rankings' at the same states with a block-bootstrap 95% CI (blocks of up to 10
    states). Paired by state, the CI leaves out how much p(a*) varies between states, which the two
    standard errors carry (docs/interpretability.md, "Faithfulness: why insertion/deletion ...")."""
    out: dict[str, Any] = {}
    for kind, by_map in result["p"].items():
        groups: dict[str, list[str]] = {}
        for name in by_map:
            groups.setdefault("random" if name.startswith("random ") else name, []).append(name)
        out[kind] = {}
        for group, members in groups.items():
            entry: dict[str, Any] = {}
            for mode in MODES:
                p = np.mean([by_map[m][mode] for m in members], axis=0)  # [S, K], random draws averaged
                kl = np.mean([result["kl"][kind][m][mode] for m in members], axis=0)
                entry[mode] = {"auc": _stats(auc(p)), "kl_auc": _stats(auc(kl)),
                               "p_curve": p.mean(0).tolist(), "kl_curve": kl.mean(0).tolist()}
                if len(members) > 1:
                    entry[mode]["auc_per_draw"] = [float(auc(by_map[m][mode]).mean()) for m in members]
            entry["draws"] = len(members)
            out[kind][group] = entry
        randoms = groups.get("random", [])
        for group in groups:
            states = len(by_map[groups[group][0]]["deletion"])
            if group == "random" or not randoms or states < 2:
                continue
            for mode in MODES:
                chance = np.stack([auc(by_map[m][mode]) for m in randoms], 1)  # [S, R]
                out[kind][group][mode]["vs_random"] = paired_difference(
                    auc(by_map[groups[group][0]][mode]), chance, block=max(1, min(10, states // 10)))
    return out


def faithfulness(agent: nn.Module, recording: Recording, steps: Sequence[int], *,
                 substrates: Sequence[str] = ("blur",), random_draws: int = 3, saliency_stride: int = 5,
                 seed: int = 0, batch_size: int = 256, progress: bool = False) -> dict[str, Any]:
    """Insertion and deletion curves at ``steps`` for every head, the heads' mean (attention
    agents), the agent's Greydanus policy-saliency map and ``random_draws`` random rankings."""
    from s3ta.analysis.saliency import saliency

    if not steps:
        raise ValueError("faithfulness needs at least one step")
    if random_draws < 1:
        raise ValueError(f"random_draws must be >= 1, got {random_draws}")
    steps = [int(t) for t in steps]
    with torch.no_grad():
        clean = replay(agent.eval(), AgentInputs(*(x[:max(steps) + 1] for x in recorded_inputs(recording))))
    maps_of_saliency = saliency(agent, recording, steps, stride=saliency_stride, progress=progress, clean=clean).policy
    maps = [step_maps(recording, t, maps_of_saliency[i], random_draws) for i, t in enumerate(steps)]
    result = curves(agent, recording, steps, maps, substrates=substrates, seed=seed, batch_size=batch_size,
                    clean=clean)
    return {
        "method": "insertion/deletion (Petsiuk et al. 2018; Huber et al. 2021), spec section 7",
        "agent": recording.meta["source"]["agent"]["name"],
        "attention_agent": agents.is_attention_agent(agent),
        "fractions": FRACTIONS.tolist(),
        "steps": steps,
        "actions": [int(recording.arrays["action"][t]) for t in steps],
        "clean_p": [float(recording.arrays["action_probs"][t][recording.arrays["action"][t]])
                    if "action_probs" in recording.arrays else None for t in steps],
        "settings": {"substrates": list(substrates), "random_draws": random_draws, "blur_sigma": BLUR_SIGMA,
                     "saliency_stride": saliency_stride, "seed": seed},
        "summary": summarise(result),
        "per_step_auc": {kind: {name: {mode: auc(result["p"][kind][name][mode]).tolist() for mode in MODES}
                                for name in result["p"][kind]} for kind in result["p"]},
    }
