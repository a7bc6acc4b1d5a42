"""Interventions on the attention (is it faithful?): replace one head's weights, or mask the input
pixels the agent attends to, and measure how much the policy and the value change.

Head interventions (through ``forward.unroll``'s override): "uniform" (1 / hw everywhere),
"shift" (the map moved by (dy, dx) cells, zero-filled and renormalised), "freeze" (the head's map
from another recorded step), "swap" (exchanged with another head). Input masking: "mask-topk" sets
the top k% attended pixels (the head's map, or all heads' mean, upsampled to the frame) to the
frame's median colour, and "mask-random" does the same to an area-matched random set of cells.

By default each step is intervened on alone: the agent starts from the state the unchanged replay
had before that step, so the effect is that of this step's attention only ("single-step"). With
``persistent=True`` the intervention is applied at every step and the state carries it forward.
Reported per step and on average: KL(clean || intervened) of the policy, whether the greedy action
flips, and the value change.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from s3ta import agents
from s3ta.agents.core import AgentInputs
from s3ta.analysis.common import kl_divergence, recorded_inputs
from s3ta.analysis.forward import Override, replay, stack_states, unroll
from s3ta.analysis.geometry import cell_index, upsample
from s3ta.analysis.recording import Recording

HEAD_MODES = ("uniform", "shift", "freeze", "swap")
MASK_MODES = ("mask-topk", "mask-random")
MODES = HEAD_MODES + MASK_MODES


# --- pure operations on weights [B, N, h, w] --------------------------------------------------
def uniform(weights: Tensor, head: int) -> Tensor:
    out = weights.clone()
    out[:, head] = 1.0 / (weights.shape[-1] * weights.shape[-2])
    return out


def shift(weights: Tensor, head: int, dy: int, dx: int) -> Tensor:
    """Move head's map by (dy, dx) cells; cells shifted in are 0; renormalised (uniform if empty)."""
    out = weights.clone()
    moved = torch.zeros_like(weights[:, head])
    h, w = weights.shape[-2:]
    src_y, dst_y = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    src_x, dst_x = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    moved[:, dst_y, dst_x] = weights[:, head, src_y, src_x]
    total = moved.sum(dim=(-1, -2), keepdim=True)
    out[:, head] = torch.where(total > 0, moved / total.clamp_min(1e-30), torch.full_like(moved, 1.0 / (h * w)))
    return out


def freeze(weights: Tensor, head: int, frozen: Tensor) -> Tensor:
    """Replace head's map by ``frozen`` [h, w] (or [B, h, w])."""
    out = weights.clone()
    out[:, head] = frozen
    return out


def swap(weights: Tensor, head: int, other: int) -> Tensor:
    out = weights.clone()
    out[:, head], out[:, other] = weights[:, other], weights[:, head]
    return out


def head_override(mode: str, head: int, *, other_head: int | None = None, offset: tuple[int, int] = (0, 0),
                  frozen: Tensor | None = None) -> Override:
    if mode == "uniform":
        return lambda weights, t: uniform(weights, head)
    if mode == "shift":
        return lambda weights, t: shift(weights, head, *offset)
    if mode == "freeze":
        if frozen is None:
            raise ValueError("freeze needs the frozen map")
        return lambda weights, t: freeze(weights, head, frozen)
    if mode == "swap":
        if other_head is None or other_head == head:
            raise ValueError("swap needs another head (--other-head)")
        return lambda weights, t: swap(weights, head, other_head)
    raise ValueError(f"unknown head intervention {mode!r}; choose one of {HEAD_MODES}")


# --- input masks -------------------------------------------------------------------------------
def topk_mask(attention: np.ndarray, height: int, width: int, percent: float) -> np.ndarray:
    """bool [H, W]: the ``percent``% of pixels with the highest upsampled attention [h, w]
    (ties broken by cell order, so the count is exact)."""
    count = int(round(percent / 100.0 * height * width))
    values = upsample(attention[None], height, width, "nearest")[0].ravel()
    order = np.argsort(-values, kind="stable")
    mask = np.zeros(height * width, bool)
    mask[order[:count]] = True
    return mask.reshape(height, width)


def random_cells_mask(h: int, w: int, height: int, width: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """bool [H, W] with exactly ``count`` pixels, made of whole random attention cells (the last
    cell trimmed): an area-matched, equally blocky control for ``topk_mask``."""
    cell_of = cell_index(height, h)[:, None] * w + cell_index(width, w)[None, :]  # [H, W] cell id
    mask = np.zeros((height, width), bool)
    for cell in rng.permutation(h * w):
        pixels = np.flatnonzero(cell_of.ravel() == cell)
        remaining = count - int(mask.sum())
        if remaining <= 0:
            break
        mask.ravel()[pixels[:remaining]] = True
    return mask


def apply_mask(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """obs [C, H, W] with the masked pixels set to the frame's per-channel median (its background)."""
    fill = np.median(obs.reshape(obs.shape[0], -1), axis=1).astype(obs.dtype)
    out = obs.copy()
    out[:, mask] = fill[:, None]
    return out


# --- running -----------------------------------------------------------------------------------
def _metrics(clean_logits: Tensor, clean_value: Tensor, logits: Tensor, value: Tensor) -> dict[str, np.ndarray]:
    return {
        "kl": kl_divergence(clean_logits, logits).cpu().numpy(),
        "flip": (clean_logits.argmax(-1) != logits.argmax(-1)).cpu().numpy(),
        "value_change": (value - clean_value).cpu().numpy(),
    }


def summarise(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    return {"mean_kl": float(np.mean(metrics["kl"])), "flip_rate": float(np.mean(metrics["flip"])),
            "mean_abs_value_change": float(np.mean(np.abs(metrics["value_change"]))),
            "mean_value_change": float(np.mean(metrics["value_change"]))}


class Intervention:
    """Runs interventions on one agent and recording; the clean replay is computed once."""

    def __init__(self, agent: nn.Module, recording: Recording, steps: Sequence[int] | None = None,
                 batch_size: int = 64):
        self.agent, self.recording = agent.eval(), recording
        self.inputs = recorded_inputs(recording)
        self.steps = list(range(recording.num_steps)) if steps is None else list(steps)
        self.batch_size = batch_size
        with torch.no_grad():
            self.clean = replay(agent, self.inputs)

    def _single_step(self, override: Override | None, obs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each step in ``self.steps`` from the clean state before it, batched over steps."""
        logits, values = [], []
        for start in range(0, len(self.steps), self.batch_size):
            chunk = self.steps[start:start + self.batch_size]
            index = torch.tensor(chunk)
            step_obs = self.inputs.obs[index, 0] if obs is None else torch.from_numpy(obs[start:start + len(chunk)])
            step_inputs = AgentInputs(obs=step_obs[None], prev_action=self.inputs.prev_action[index, 0][None],
                                      prev_reward=self.inputs.prev_reward[index, 0][None],
                                      done=self.inputs.done[index, 0][None])
            state = stack_states([self.clean.states[t] for t in chunk])
            with torch.no_grad():  # recorded steps lie on the batch axis; the override ignores t
                output, _ = unroll(self.agent, step_inputs, state, override)
            logits.append(output.policy_logits[0])
            values.append(output.baseline[0])
        index = torch.tensor(self.steps)
        return _metrics(self.clean.output.policy_logits[index, 0], self.clean.output.baseline[index, 0],
                        torch.cat(logits), torch.cat(values))

    def _persistent(self, override: Override | None, obs: np.ndarray | None = None) -> dict[str, np.ndarray]:
        inputs = self.inputs if obs is None else recorded_inputs(self.recording, obs)
        with torch.no_grad():
            changed = replay(self.agent, inputs, override)
        index = torch.tensor(self.steps)
        return _metrics(self.clean.output.policy_logits[index, 0], self.clean.output.baseline[index, 0],
                        changed.output.policy_logits[index, 0], changed.output.baseline[index, 0])

    def run(self, mode: str, head: int | None = None, *, other_head: int | None = None,
            offset: tuple[int, int] = (0, 0), from_step: int = 0, percent: float = 10.0, seed: int = 0,
            persistent: bool = False) -> dict[str, Any]:
        """One intervention; returns its settings, per-step metrics and their summary."""
        if mode not in MODES:
            raise ValueError(f"unknown intervention {mode!r}; choose one of {MODES}")
        is_attention = agents.is_attention_agent(self.agent)
        heads = self.agent.config.num_heads if is_attention else 0
        if mode in HEAD_MODES or head is not None:
            self.recording.require_attention(f"intervention {mode!r}")
            if head is None or not 0 <= head < heads:
                raise ValueError(f"head must be in 0..{heads - 1} for {mode!r}, got {head}")
        settings: dict[str, Any] = {"mode": mode, "head": head, "persistent": persistent}
        obs, override = None, None
        if mode in HEAD_MODES:
            frozen = None
            if mode == "freeze":
                if not 0 <= from_step < self.recording.num_steps:
                    raise ValueError(f"from_step {from_step} is outside the recording")
                frozen = self.clean.output.attention[from_step, 0, head]
                settings["from_step"] = from_step
            if mode == "swap":
                settings["other_head"] = other_head
            if mode == "shift":
                settings["offset_cells_dy_dx"] = list(offset)
            override = head_override(mode, head, other_head=other_head, offset=offset, frozen=frozen)
        else:
            obs = self._masked_obs(mode, head, percent, seed, self.steps if not persistent else None)
            settings.update(percent=percent, seed=seed, mask_source="all heads" if head is None else f"head {head}")
        metrics = self._persistent(override, obs) if persistent else self._single_step(override, obs)
        return {"settings": settings, "summary": summarise(metrics), "steps": self.steps,
                "per_step": {k: v.tolist() for k, v in metrics.items()}}

    def _masked_obs(self, mode: str, head: int | None, percent: float, seed: int,
                    steps: Sequence[int] | None) -> np.ndarray:
        """Masked observations of ``steps`` ([S, C, H, W]) or of every recorded step (None)."""
        self.recording.require_attention("input masking by attention")
        obs_all = self.recording.arrays["obs"]
        attention = self.recording.arrays["attention"]
        steps = range(len(obs_all)) if steps is None else steps
        height, width = obs_all.shape[-2:]
        h, w = attention.shape[-2:]
        rng = np.random.default_rng(seed)
        out = []
        for t in steps:
            source = attention[t].mean(0) if head is None else attention[t, head]
            mask = topk_mask(source, height, width, percent)
            if mode == "mask-random":
                mask = random_cells_mask(h, w, height, width, int(mask.sum()), rng)
            out.append(apply_mask(obs_all[t], mask))
        return np.stack(out)


def panel(intervention: Intervention, *, percent: float = 10.0, offset: tuple[int, int] = (3, 3),
          from_step: int | None = None, random_repeats: int = 3, persistent: bool = False,
          progress: bool = False) -> dict[str, Any]:
    """Every intervention on every head, plus top-k masking versus area-matched random masks."""
    agent, recording = intervention.agent, intervention.recording
    heads = agent.config.num_heads if agents.is_attention_agent(agent) else 0
    if heads == 0:
        recording.require_attention("the intervention panel")
    from_step = recording.num_steps // 2 if from_step is None else from_step
    jobs: list[tuple[str, dict[str, Any]]] = []
    for head in range(heads):
        jobs += [("uniform", dict(head=head)), ("shift", dict(head=head, offset=offset)),
                 ("freeze", dict(head=head, from_step=from_step)),
                 ("swap", dict(head=head, other_head=(head + 1) % heads))]
    jobs.append(("mask-topk", dict(percent=percent)))
    jobs += [("mask-random", dict(percent=percent, seed=seed)) for seed in range(random_repeats)]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="interventions", unit="run")
    results = [intervention.run(mode, persistent=persistent, **kwargs) for mode, kwargs in jobs]
    table = {mode: {} for mode in HEAD_MODES}
    for result in results:
        settings = result["settings"]
        if settings["mode"] in HEAD_MODES:
            table[settings["mode"]][f"head {settings['head']}"] = result["summary"]
    randoms = [r["summary"] for r in results if r["settings"]["mode"] == "mask-random"]
    topk = next(r["summary"] for r in results if r["settings"]["mode"] == "mask-topk")
    random_mean = {key: float(np.mean([r[key] for r in randoms])) for key in topk}
    return {"table": table, "mask": {"percent": percent, "topk": topk, "random": random_mean,
                                     "random_repeats": random_repeats},
            "runs": results}
