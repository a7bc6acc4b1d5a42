"""The model-randomisation sanity check (Adebayo et al. 2018; spec section 7): re-initialise the
agent's layers cumulatively from the output heads down to the vision convs and, at each stage,
measure the Spearman rank correlation between the maps of the trained and of the randomised agent
on the same recorded inputs. A map that does not change while the model does explains nothing.

Maps: each head's attention and the heads' mean (attention agents; the randomised agent is replayed
over the recorded inputs, so its own state evolves), and the Greydanus policy-saliency map (any
agent). Note what the check means for attention: the maps are computed *before* the policy and
value heads, so re-initialising those heads leaves them exactly unchanged by construction.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from s3ta import agents
from s3ta.agents.core import AgentInputs
from s3ta.analysis.common import recorded_inputs
from s3ta.analysis.forward import replay
from s3ta.analysis.recording import Recording


# --- pure pieces -----------------------------------------------------------------------------
def rank(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, ties given their average rank (as scipy's ``rankdata``)."""
    values = np.asarray(values, np.float64).ravel()
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # rank of the last member of each distinct value
    return (last - (counts - 1) / 2.0)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (0 where either is constant)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    ra, rb = rank(a), rank(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0


# --- the stages --------------------------------------------------------------------------------
def layer_stages(agent: nn.Module) -> list[tuple[str, list[nn.Module | nn.Parameter]]]:
    """The agent's layers grouped into stages, from the output down to the input."""
    stages: list[tuple[str, list[nn.Module | nn.Parameter]]] = [("policy and value heads", [agent.policy, agent.baseline])]
    if agents.is_attention_agent(agent):
        stages += [("core LSTM", [agent.core]), ("core MLP", [agent.core_mlp])]
        if agent.config.queries == "top-down":
            stages.append(("query MLP", [agent.query_net]))
        elif agent.config.queries == "fixed":
            stages.append(("fixed queries", [agent.fixed_queries]))
        stages.append(("ConvLSTM", [agent.convlstm]))
        convs = [m for m in agent.vision if isinstance(m, nn.Conv2d)]
        stages += [(f"conv{i + 1}", [conv]) for i, conv in reversed(list(enumerate(convs)))]
        return stages
    if getattr(agent.config, "use_lstm", False):
        stages.append(("core LSTM", [agent.core]))
    groups: list[list[nn.Module]] = []  # ResNet encoder: one group per stage (a conv and its blocks), then the fc
    for module in agent.encoder:
        if isinstance(module, nn.Conv2d):
            groups.append([module])
        elif isinstance(module, nn.Linear):
            groups.append([module])
        elif any(True for _ in module.parameters()):
            groups[-1].append(module)
    names = [f"ResNet stage {i + 1}" for i in range(len(groups) - 1)] + ["encoder fc"]
    stages += [(name, group) for name, group in reversed(list(zip(names, groups)))]
    return stages


@torch.no_grad()
def reinitialise(parts: Sequence[nn.Module | nn.Parameter]) -> None:
    """Fresh random weights for ``parts`` (PyTorch's default initialisation of each layer)."""
    for part in parts:
        if isinstance(part, nn.Parameter):
            part.normal_(0.0, 0.1)
            continue
        for module in part.modules():  # the part itself and every layer inside it
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()


# --- running -----------------------------------------------------------------------------------
def _maps(agent: nn.Module, recording: Recording, steps: Sequence[int], saliency_stride: int) -> dict[str, np.ndarray]:
    """Each map at ``steps``: "head n" [S, h, w], "heads mean", "saliency" [S, H, W]."""
    from s3ta.analysis.saliency import saliency

    out: dict[str, np.ndarray] = {}
    with torch.no_grad():  # one replay up to the last step needed, for the attention and the saliency
        clean = replay(agent, AgentInputs(*(x[:max(steps) + 1] for x in recorded_inputs(recording))))
    if agents.is_attention_agent(agent):
        attention = clean.output.attention[:, 0].cpu().numpy()[list(steps)]  # [S, N, h, w]
        for n in range(attention.shape[1]):
            out[f"head {n}"] = attention[:, n]
        out["heads mean"] = attention.mean(1)
    out["saliency"] = saliency(agent, recording, list(steps), stride=saliency_stride, clean=clean).policy
    return out


def sanity(agent: nn.Module, recording: Recording, steps: Sequence[int], *, saliency_stride: int = 5,
           seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Cumulative top-down randomisation; per stage and map, the Spearman correlation with the
    trained agent's map (mean and range over ``steps``). The agent itself is not modified."""
    if not steps:
        raise ValueError("sanity needs at least one step")
    steps = [int(t) for t in steps]
    trained = _maps(agent.eval(), recording, steps, saliency_stride)
    randomised = copy.deepcopy(agent).eval()
    stages = layer_stages(randomised)
    iterator = stages
    if progress:
        from tqdm import tqdm

        iterator = tqdm(stages, desc="sanity", unit="stage")
    rows = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for name, parts in iterator:
            reinitialise(parts)
            maps = _maps(randomised, recording, steps, saliency_stride)
            correlations = {key: [spearman(trained[key][i], maps[key][i]) for i in range(len(steps))]
                            for key in trained}
            rows.append({"randomised_down_to": name,
                         "spearman": {key: float(np.mean(v)) for key, v in correlations.items()},
                         "spearman_min": {key: float(np.min(v)) for key, v in correlations.items()},
                         "spearman_max": {key: float(np.max(v)) for key, v in correlations.items()}})
    return {
        "method": "cumulative model randomisation from the top (Adebayo et al. 2018), spec section 7",
        "agent": recording.meta["source"]["agent"]["name"],
        "steps": steps,
        "maps": list(trained),
        "stages": rows,
        "settings": {"saliency_stride": saliency_stride, "seed": seed},
    }
