"""Checkpoints: atomic writes (temporary file, then rename), the last K kept, and loading that never
runs pickled code (``torch.load(weights_only=True)``). A checkpoint holds the model, optimizer and
LR-schedule state, counters, RNG states, the agent description and the training config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from s3ta import agents
from s3ta.training.errors import CheckpointError

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")


class Checkpoint(NamedTuple):
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    counters: dict[str, int]  # frames, updates, episodes
    rng: dict[str, Any]
    agent: dict[str, Any]  # s3ta.agents.describe(...)
    config: dict[str, Any]  # TrainConfig.to_dict()


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run directory, oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def checkpoint_payload(*, model: dict[str, torch.Tensor], agent: dict[str, Any], config: dict[str, Any],
                       counters: dict[str, int], optimizer: dict[str, Any] | None = None,
                       scheduler: dict[str, Any] | None = None, rng: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a checkpoint file holds, in format ``FORMAT_VERSION``: the one place that writes the format.
    ``model`` is a state dict, ``agent`` its ``agents.describe``, ``config`` a ``TrainConfig.to_dict``.
    Without optimizer, scheduler and RNG states it is a model-only checkpoint (a zoo agent's weights)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": {k: v.detach().cpu() for k, v in model.items()},
        "optimizer": optimizer or {},
        "scheduler": scheduler or {},
        "counters": {k: int(v) for k, v in counters.items()},
        "rng": rng or {},
        # JSON strings, so that loading needs no unpickling of arbitrary structures.
        "agent": json.dumps(agent),
        "config": json.dumps(config),
    }


def save_checkpoint(run_dir: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, counters: dict[str, int], rng: dict[str, Any],
                    config: dict[str, Any], keep: int) -> Path:
    """Write ``ckpt-<frames>.pt`` atomically and delete all but the newest ``keep``."""
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ckpt-{int(counters['frames']):012d}.pt"
    payload = checkpoint_payload(model=model.state_dict(), agent=agents.describe(model), config=config,
                                 counters=counters, optimizer=optimizer.state_dict(),
                                 scheduler=scheduler.state_dict() if scheduler is not None else None, rng=rng)
    tmp = path.with_suffix(".pt.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk: no half-written file, the earlier checkpoints stay as they were
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def resolve(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, the newest checkpoint of a run directory, or a zoo agent's weights (``zoo:NAME``,
    hash-checked against its card)."""
    from s3ta import zoo

    if zoo.is_zoo_name(path_or_run_dir):
        try:
            return zoo.weights_path(path_or_run_dir)
        except zoo.ZooError as error:
            raise CheckpointError(str(error)) from None
    path = Path(path_or_run_dir)
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no checkpoint in {path} (expected {checkpoint_dir(path)}/ckpt-*.pt)")
        return found
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def load_checkpoint(path_or_run_dir: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    path = resolve(path_or_run_dir)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to read is reported the same way
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or not an s3ta checkpoint ({first_line})") from None
    required = {"format_version", "model", "optimizer", "scheduler", "counters", "rng", "agent", "config"}
    if not isinstance(payload, dict) or not required <= set(payload):
        raise CheckpointError(f"checkpoint {path} is not an s3ta checkpoint (missing fields)")
    if payload["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format {payload['format_version']}, expected {FORMAT_VERSION}")
    return Checkpoint(path, payload["model"], payload["optimizer"], payload["scheduler"], payload["counters"],
                      payload["rng"], json.loads(payload["agent"]), json.loads(payload["config"]))


def check_compatible(checkpoint: Checkpoint, agent_description: dict[str, Any]) -> None:
    """Raise a one-line CheckpointError if the checkpoint's agent differs from the one expected.

    Agent configs are compared with every field filled in, so that a checkpoint saved before a
    config field existed matches a run that has that field at its default.
    """
    saved = checkpoint.agent
    agent_description = json.loads(json.dumps(agent_description))  # tuples -> lists, as saved
    for key, what in (("name", "agent"), ("num_actions", "action count"), ("observation_shape", "observation shape")):
        if saved[key] != agent_description[key]:
            raise CheckpointError(f"checkpoint {checkpoint.path} is for another {what}: "
                                  f"{saved[key]} (checkpoint) vs {agent_description[key]} (this run)")
    unknown = sorted(set(saved["config"]) - set(agents.config_field_names(saved["name"])))
    if unknown:
        raise CheckpointError(f"checkpoint {checkpoint.path} comes from a newer s3ta: its agent config has fields "
                              f"this version does not know ({', '.join(unknown)}); upgrade s3ta to use it")
    saved_config, run_config = (_full_config(saved["name"], description["config"])
                                for description in (saved, agent_description))
    differ = {k: (saved_config.get(k), run_config.get(k)) for k in sorted(saved_config.keys() | run_config.keys())
              if saved_config.get(k) != run_config.get(k)}
    if differ:
        fields = ", ".join(f"{k}={a} (checkpoint) vs {b} (this run)" for k, (a, b) in differ.items())
        raise CheckpointError(f"checkpoint {checkpoint.path} is for another agent config: {fields}")


def _full_config(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The agent config with every field of this version filled in (its fields are all known here)."""
    return json.loads(json.dumps(dataclasses.asdict(agents.config_for(name, **config))))


def load_agent(path_or_run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the agent a checkpoint was trained with and load its weights (eval mode)."""
    checkpoint = load_checkpoint(path_or_run_dir)
    agent = agents.from_description(checkpoint.agent)
    try:
        agent.load_state_dict(checkpoint.model)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit its agent: {str(error).splitlines()[0]}") from None
    return agent.to(device).eval(), checkpoint
