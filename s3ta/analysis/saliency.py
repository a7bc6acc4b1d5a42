"""Perturbation saliency (Greydanus et al. 2018, spec 6.6) for any agent, baselines included.

At a recorded step t the agent is brought to its state before t by replaying the recording, then
fed step t's frame X blurred locally around each point (i, j) of a grid:
X'_ij = X * (1 - M_ij) + G(X) * M_ij, with M_ij a Gaussian bump (sigma 5 px) and G a Gaussian blur
(sigma 3 px). S_pi(i, j) = 1/2 ||logits(X'_ij) - logits(X)||^2 (Greydanus's unnormalised policy) and
S_V(i, j) = 1/2 (V(X'_ij) - V(X))^2, computed every ``stride`` pixels and interpolated to the frame.
For attention agents each map is compared with every head's attention at t (Pearson correlation
over pixels); the most similar head and its score are reported.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from s3ta.agents.core import AgentInputs
from s3ta.analysis.forward import Replay, replay, unroll
from s3ta.analysis.geometry import pixel_mass
from s3ta.analysis.recording import Recording


class Saliency(NamedTuple):
    steps: np.ndarray  # [S] recorded steps
    policy: np.ndarray  # [S, H, W] S_pi
    value: np.ndarray  # [S, H, W] S_V


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of float images [B, C, H, W] (reflect padding)."""
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def grid_points(height: int, width: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column centres of the perturbation grid (every ``stride`` pixels, from 0)."""
    return np.arange(0, height, stride), np.arange(0, width, stride)


def interpolate_grid(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear interpolation of grid values [len(rows), len(cols)] to every pixel [H, W]."""
    along_rows = np.stack([np.interp(np.arange(height), rows, values[:, j]) for j in range(values.shape[1])], axis=1)
    return np.stack([np.interp(np.arange(width), cols, along_rows[i]) for i in range(height)], axis=0)


@torch.no_grad()
def saliency(agent: nn.Module, recording: Recording, steps: Sequence[int], *, stride: int = 5,
             mask_sigma: float = 5.0, blur_sigma: float = 3.0, batch_size: int = 256,
             progress: bool = False, clean: Replay | None = None) -> Saliency:
    """Greydanus saliency maps of the policy and the value at each recorded step in ``steps``.
    ``clean``: the agent's replay of the recording through ``max(steps)``, if already computed."""
    from s3ta.analysis.common import recorded_inputs

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    agent.eval()
    inputs = recorded_inputs(recording)
    last = max(steps)
    if clean is None:
        clean = replay(agent, AgentInputs(*(x[:last + 1] for x in inputs)))
    elif len(clean.states) <= last:
        raise ValueError(f"the given replay has {len(clean.states)} steps; saliency at step {last} needs more")
    channels, height, width = recording.arrays["obs"].shape[1:]
    rows, cols = grid_points(height, width, stride)
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    policy_maps, value_maps = [], []
    iterator = steps
    if progress:
        from tqdm import tqdm

        iterator = tqdm(steps, desc="saliency", unit="step")
    for t in iterator:
        frame = inputs.obs[t, 0].float()  # [C, H, W] in 0..255
        blurred = gaussian_blur(frame[None], blur_sigma)[0]
        base_logits = clean.output.policy_logits[t, 0]
        base_value = clean.output.baseline[t, 0]
        centres = [(r, c) for r in rows for c in cols]
        policy_grid, value_grid = np.zeros(len(centres)), np.zeros(len(centres))
        for start in range(0, len(centres), batch_size):
            chunk = centres[start:start + batch_size]
            masks = np.stack([np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * mask_sigma ** 2)) for r, c in chunk])
            masks = torch.from_numpy(masks.astype(np.float32))[:, None]  # [P, 1, H, W]
            perturbed = frame * (1 - masks) + blurred * masks  # [P, C, H, W]
            count = len(chunk)
            step_inputs = AgentInputs(
                obs=perturbed.round().clamp(0, 255).to(torch.uint8)[None],  # [1, P, C, H, W]
                prev_action=inputs.prev_action[t:t + 1].expand(1, count),
                prev_reward=inputs.prev_reward[t:t + 1].expand(1, count),
                done=inputs.done[t:t + 1].expand(1, count),
            )
            state = tuple(s.expand(count, *s.shape[1:]).contiguous() for s in clean.states[t])
            output, _ = unroll(agent, step_inputs, state)
            policy_grid[start:start + count] = 0.5 * ((output.policy_logits[0] - base_logits) ** 2).sum(-1).cpu().numpy()
            value_grid[start:start + count] = 0.5 * ((output.baseline[0] - base_value) ** 2).cpu().numpy()
        shape = (len(rows), len(cols))
        policy_maps.append(interpolate_grid(policy_grid.reshape(shape), rows, cols, height, width))
        value_maps.append(interpolate_grid(value_grid.reshape(shape), rows, cols, height, width))
    return Saliency(np.asarray(steps), np.stack(policy_maps).astype(np.float32), np.stack(value_maps).astype(np.float32))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps (0 where either is constant)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def head_similarity(recording: Recording, result: Saliency) -> list[dict]:
    """Per step and map (policy, value): each head's correlation with it, the best head and score."""
    out = []
    height, width = result.policy.shape[1:]
    for k, t in enumerate(result.steps):
        entry = {"step": int(t)}
        if recording.has_attention:
            heads = pixel_mass(recording.arrays["attention"][t], height, width)  # [N, H, W]
            for name, maps in (("policy", result.policy), ("value", result.value)):
                scores = [correlation(maps[k], head) for head in heads]
                best = int(np.argmax(scores))
                entry[name] = {"correlations": scores, "best_head": best, "best_score": scores[best]}
        out.append(entry)
    return out


def summary(recording: Recording, result: Saliency) -> dict:
    similarity = head_similarity(recording, result)
    data = {
        "method": "Greydanus et al. 2018 perturbation saliency (spec 6.6)",
        "agent": recording.meta["source"]["agent"]["name"],
        "attention_agent": recording.has_attention,
        "steps": [],
    }
    for k, t in enumerate(result.steps):
        item = {"step": int(t), "episode_step": int(recording.arrays["episode_step"][t]),
                "policy_peak_yx": [int(v) for v in np.unravel_index(result.policy[k].argmax(), result.policy[k].shape)],
                "value_peak_yx": [int(v) for v in np.unravel_index(result.value[k].argmax(), result.value[k].shape)],
                "policy_max": float(result.policy[k].max()), "value_max": float(result.value[k].max())}
        item.update({key: similarity[k][key] for key in ("policy", "value") if key in similarity[k]})
        data["steps"].append(item)
    return data

