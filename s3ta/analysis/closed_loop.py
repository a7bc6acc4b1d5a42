"""Closed-loop interventions (spec section 7): play whole episodes live, not replays, with an
intervention applied at every step, and report the change in mean return against the clean agent
(paired by seed: the same environment seeds and action-sampling seed for both) with a 95% CI.

Interventions on one head's attention (through the agent's ``attention_override``, the functions of
``intervene``): "uniform", "freeze" (the head's map of the episode's first step, held), "shift" (moved
by ``offset`` cells). On the frames: "erase" removes the ground-truth objects under a head's peak cell
(or under any head's, ``head=None``) before the agent sees the frame; the peaks are those the agent
has on the clean frame from the same state, and erased boxes take the frame's median colour;
"erase-random" erases as many objects chosen at random (the control). "inject" pastes a sprite into
every live frame (``inject.paste``), moving across the frame. Shape letters: B envs (= episodes
played together), N heads, h x w map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from s3ta import agents
from s3ta.analysis import intervene
from s3ta.analysis.forward import unroll
from s3ta.analysis.geometry import box_mask, cell_footprint
from s3ta.analysis.inject import Sprite, paste

KINDS = ("clean", "uniform", "freeze", "shift", "erase", "erase-random", "inject")
HEAD_KINDS = ("uniform", "freeze", "shift")
# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (then the normal's 1.96).
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class Intervention:
    kind: str = "clean"
    """One of ``KINDS``."""
    head: int | None = None
    """The head intervened on (head kinds: required; erase: None = the peaks of all heads)."""
    offset: tuple[int, int] = (3, 3)
    """shift: (dy, dx) in attention cells."""
    sprite: str = "shark"
    """inject: a built-in sprite or a .png (``inject.Sprite.load``)."""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown closed-loop intervention {self.kind!r}; choose one of {KINDS}")
        if self.kind in HEAD_KINDS and self.head is None:
            raise ValueError(f"{self.kind!r} needs a head")

    @property
    def name(self) -> str:
        if self.kind in HEAD_KINDS or (self.kind in ("erase", "erase-random") and self.head is not None):
            return f"{self.kind} head {self.head}"
        if self.kind in ("erase", "erase-random"):
            return f"{self.kind} all heads"
        return self.kind


# --- pure pieces -------------------------------------------------------------------------------
def paired_change(treated: np.ndarray, clean: np.ndarray) -> dict[str, Any]:
    """Mean of the paired differences treated - clean [E] with a 95% t confidence interval."""
    treated, clean = np.asarray(treated, np.float64), np.asarray(clean, np.float64)
    if treated.shape != clean.shape or treated.ndim != 1:
        raise ValueError(f"need paired returns [E], got {treated.shape} and {clean.shape}")
    diff = treated - clean
    n = len(diff)
    mean = float(diff.mean())
    if n < 2:
        return {"mean": mean, "ci95": [None, None], "episodes": n}
    half = (_T95[n - 2] if n - 1 <= len(_T95) else 1.96) * diff.std(ddof=1) / np.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "episodes": n}


def attended_objects(attention: np.ndarray, boxes: np.ndarray, heads: Sequence[int], height: int,
                     width: int) -> np.ndarray:
    """bool [K]: the boxes [K, 4] (x0, y0, x1, y1) that overlap the peak cell of any of ``heads``
    in attention [N, h, w]."""
    _, h, w = attention.shape
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    hit = np.zeros(len(boxes), bool)
    for n in heads:
        row, col = np.unravel_index(int(attention[n].argmax()), (h, w))
        x0, y0, x1, y1 = cell_footprint(int(row), int(col), height, width, h, w)
        hit |= (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
    return hit


def erase(obs: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """obs [C, H, W] with the pixels of the boxes [K, 4] set to the frame's median colour."""
    mask = box_mask(boxes, *obs.shape[-2:])
    return intervene.apply_mask(obs, mask) if mask.any() else obs


# --- playing -----------------------------------------------------------------------------------
def _override(intervention: Intervention) -> Callable | None:
    kind, head = intervention.kind, intervention.head
    if kind == "uniform":
        return lambda weights, t: intervene.uniform(weights, head)
    if kind == "shift":
        return lambda weights, t: intervene.shift(weights, head, *intervention.offset)
    if kind == "freeze":
        held: dict[str, torch.Tensor] = {}

        def frozen(weights, t):
            if "map" not in held:  # the first step of the episodes: keep the head's own map
                held["map"] = weights[:, head].clone()
            return intervene.freeze(weights, head, held["map"])

        return frozen
    return None


@torch.no_grad()
def play(agent: nn.Module, env: Any, intervention: Intervention = Intervention(), *, seed: int = 0,
         greedy: bool = True, max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Play the first episode of each of ``env``'s B envs with the intervention at every step.
    Returns returns [B] (raw, summed until each env's first episode ends), complete [B] and, for
    erase, erased [B] (objects erased per step, mean)."""
    from s3ta.rollout import sample_actions, step_inputs

    agent.eval()
    heads = agent.config.num_heads if agents.is_attention_agent(agent) else 0
    if intervention.kind in HEAD_KINDS + ("erase", "erase-random"):
        if heads == 0:
            raise ValueError(f"closed-loop {intervention.kind!r} needs an attention agent")
        if intervention.head is not None and not 0 <= intervention.head < heads:
            raise ValueError(f"head must be in 0..{heads - 1}, got {intervention.head}")
    sprite = Sprite.load(intervention.sprite) if intervention.kind == "inject" else None
    batch = env.num_envs
    timestep = env.reset(seed=seed)
    state = agent.initial_state(batch)
    prev_action = torch.zeros(batch, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    override = _override(intervention)
    returns, finished = np.zeros(batch), np.zeros(batch, bool)
    erased, steps = np.zeros(batch), 0
    height, width = timestep.obs.shape[-2:]
    while not finished.all() and (max_steps is None or steps < max_steps):
        obs = timestep.obs
        if sprite is not None:  # moving right along the middle row, wrapping around
            span = max(width - sprite.mask.shape[1], 1)
            x, y = (2 * steps) % span, (height - sprite.mask.shape[0]) // 2
            obs = np.stack([paste(o, sprite, x, y)[0] for o in obs])
        inputs = step_inputs(timestep._replace(obs=obs), prev_action)
        if intervention.kind in ("erase", "erase-random"):
            if "boxes" not in timestep.info:
                raise ValueError("erasing attended objects needs ground-truth boxes (a built-in task, or an Atari "
                                 "game with a RAM decoder)")
            looked, _ = unroll(agent, inputs, state)
            attention = looked.attention[0].numpy()  # [B, N, h, w] on the clean frame
            chosen = range(heads) if intervention.head is None else [intervention.head]
            frames = []
            for b in range(batch):
                boxes = np.asarray(timestep.info["boxes"][b], np.float64).reshape(-1, 4)
                hit = attended_objects(attention[b], boxes, chosen, height, width)
                if intervention.kind == "erase-random":  # as many objects, drawn at random
                    count = int(hit.sum())
                    hit = np.zeros(len(boxes), bool)
                    hit[rng.choice(len(boxes), count, replace=False)] = True
                erased[b] += hit.sum() * (not finished[b])
                frames.append(erase(obs[b], boxes[hit]))
            inputs = inputs._replace(obs=torch.from_numpy(np.stack(frames))[None])
        output, state = unroll(agent, inputs, state, override)
        logits = output.policy_logits[0]
        action = logits.argmax(-1) if greedy else sample_actions(logits, generator)
        prev_action = action
        timestep = env.step(action.numpy())
        live = ~finished
        returns[live] += timestep.reward[live]
        finished |= np.asarray(timestep.done, bool)
        steps += 1
    return {"returns": returns, "complete": finished.copy(), "erased": erased, "steps": steps}


def default_interventions(num_heads: int, *, erase_objects: bool, offset: tuple[int, int] = (3, 3),
                          sprite: str | None = "shark") -> list[Intervention]:
    """Every head kind on every head, erase (all heads and each head) with its random control, inject."""
    out = [Intervention(kind, head, offset=offset) for head in range(num_heads) for kind in HEAD_KINDS]
    if erase_objects and num_heads:
        for head in [None, *range(num_heads)]:
            out += [Intervention("erase", head), Intervention("erase-random", head)]
    if sprite:
        out.append(Intervention("inject", sprite=sprite))
    return out


def closed_loop(agent: nn.Module, make_env: Callable[[int, int], Any], episodes: int, interventions: Sequence[Intervention],
                *, seed: int = 0, greedy: bool = True, parallel: bool = True, max_steps: int | None = None,
                progress: bool = False) -> dict[str, Any]:
    """Mean return of the clean agent and of each intervention over ``episodes`` episodes with the
    same seeds, and each intervention's paired change with its 95% CI. ``make_env(num_envs, seed)`` builds
    the env; ``parallel`` plays all episodes in one batched env (else one env per episode, seeds
    ``seed + e``)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")

    def run(intervention: Intervention) -> dict[str, np.ndarray]:
        if parallel:
            env = make_env(episodes, seed)
            try:
                return play(agent, env, intervention, seed=seed, greedy=greedy, max_steps=max_steps)
            finally:
                env.close()
        parts = []
        for e in range(episodes):
            env = make_env(1, seed + e)
            try:
                parts.append(play(agent, env, intervention, seed=seed + e, greedy=greedy, max_steps=max_steps))
            finally:
                env.close()
        return {key: np.concatenate([np.atleast_1d(p[key]) for p in parts]) for key in ("returns", "complete", "erased")}

    jobs = [Intervention(), *interventions]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="closed loop", unit="run")
    results = {job.name: (job, run(job)) for job in jobs}
    clean = results["clean"][1]
    rows = []
    for name, (job, result) in results.items():
        if name == "clean":
            continue
        row = {"name": name, "kind": job.kind, "head": job.head, "mean_return": float(result["returns"].mean()),
               "change": paired_change(result["returns"], clean["returns"]),
               "complete": int(result["complete"].sum())}
        if job.kind in ("erase", "erase-random"):
            row["objects_erased_per_episode"] = float(np.mean(result["erased"]))
        if job.kind == "shift":
            row["offset_cells_dy_dx"] = list(job.offset)
        if job.kind == "inject":
            row["sprite"] = job.sprite
        rows.append(row)
    return {
        "method": "closed-loop interventions at every step, paired by seed (spec section 7)",
        "episodes": episodes, "seed": seed, "greedy": greedy, "max_steps": max_steps,
        "clean": {"mean_return": float(clean["returns"].mean()), "returns": clean["returns"].tolist(),
                  "complete": int(clean["complete"].sum())},
        "interventions": rows,
    }
