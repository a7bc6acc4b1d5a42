"""Helpers shared by the analyses: the agent an analysis runs, recorded inputs as tensors, step
selection, distances between policies, and writing a result as JSON next to its picture."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from s3ta.agents.core import AgentInputs
from s3ta.analysis.forward import inputs_from_arrays
from s3ta.analysis.recording import Recording


def analysed_agent(recording: Recording, checkpoint: str | None) -> torch.nn.Module:
    """The agent an analysis of ``recording`` runs: the checkpoint's (file, run directory or zoo:NAME),
    checked to fit the recording's observations and actions, else the weights stored in the recording."""
    if not checkpoint:
        return recording.load_agent()
    from s3ta.checkpoints import load_agent

    agent, _ = load_agent(checkpoint)
    expected = tuple(recording.meta["observation_shape"])
    if tuple(agent.observation_shape) != expected or agent.num_actions != len(recording.action_names):
        raise ValueError(f"checkpoint {checkpoint} is for observations {tuple(agent.observation_shape)} and "
                         f"{agent.num_actions} actions, the recording has observations {expected} and "
                         f"{len(recording.action_names)} actions")
    return agent


def recorded_inputs(recording: Recording, obs: np.ndarray | None = None) -> AgentInputs:
    """The agent inputs [T, 1, ...] of the whole recording (optionally with other observations)."""
    arrays = recording.arrays
    return inputs_from_arrays(arrays["obs"] if obs is None else obs, arrays["prev_action"],
                              arrays["prev_reward"], arrays["done"])


def select_steps(recording: Recording, steps: Sequence[int] | None, default: int | None = None) -> list[int]:
    """Validated step indices: ``steps`` as given, else ``default`` steps spread over the recording
    (all steps when ``default`` is None)."""
    total = recording.num_steps
    if steps is None:
        if default is None or default >= total:
            return list(range(total))
        # Spread over the recording, ending at the last step (the spec's "after > 200 frames").
        return sorted(set(np.linspace(total - 1, min(total - 1, 1), default).round().astype(int).tolist()))
    bad = [t for t in steps if not 0 <= int(t) < total]
    if bad:
        raise ValueError(f"steps {bad} are outside the recording (0..{total - 1})")
    return sorted(set(int(t) for t in steps))


def kl_divergence(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row of logits [..., A], in nats (float64, rounding below 0 clipped)."""
    log_p, log_q = torch.log_softmax(logits_p.double(), -1), torch.log_softmax(logits_q.double(), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def finite(value: Any) -> Any:
    """JSON-safe numbers: NaN and infinities become None; NumPy scalars become Python ones."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(data), indent=1) + "\n")
    return path


def analysis_dir(recording: Recording, out: str | Path | None) -> Path:
    """Where an analysis writes: ``out`` if given, else ``<recording>/analysis``; created and checked
    to be writable (``s3ta.outputs.writable_dir``), so that an analysis can fail before its work."""
    from s3ta.outputs import writable_dir

    if out is None and recording.path is None:
        raise ValueError("give an output directory for a recording that was not saved")
    return writable_dir(Path(out) if out is not None else recording.path / "analysis")
