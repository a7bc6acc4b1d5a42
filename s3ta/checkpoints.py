"""Where trained agents are kept and how they are read: checkpoint files, a run directory's
``checkpoints/``, and the zoo's agents shipped in the package (``zoo:NAME``). The one module that
turns any of these into an agent; training, evaluation, analysis and the zoo all import it, and it
imports none of them. Loading never runs pickled code (``torch.load(weights_only=True)``).

Importing this module does not import torch (``s3ta list`` reads the zoo's names through it); the
functions that read or build tensors load it on first use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from s3ta.training.errors import CheckpointError

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = [
    "CARD", "CURVE", "Checkpoint", "CheckpointError", "FORMAT_VERSION", "GIF", "MAX_WEIGHTS_BYTES", "PREFIX",
    "WEIGHTS", "ZOO_DIR", "ZooError", "check_compatible", "checkpoint_dir", "checkpoint_payload", "is_readable",
    "is_zoo_name", "latest_checkpoint", "list_checkpoints", "load_agent", "load_checkpoint", "newest_valid_checkpoint",
    "resolve", "sha256", "skipped_note", "zoo_card", "zoo_folder", "zoo_names", "zoo_weights",
]

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{12})\.pt$")

# --- the zoo: one folder per agent under s3ta/zoo/ (weights, card.json, learning curve, attention GIF) ---
ZOO_DIR = Path(__file__).parent / "zoo"
PREFIX = "zoo:"
WEIGHTS = "weights.pt"
CARD = "card.json"
CURVE = "learning_curve.png"
GIF = "attention.gif"
MAX_WEIGHTS_BYTES = 10 * 2**20


class ZooError(ValueError):
    """An unknown zoo name, or a zoo agent whose files do not match its card; one line."""


class Checkpoint(NamedTuple):
    path: Path
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    counters: dict[str, int]  # frames, updates, episodes
    rng: dict[str, Any]
    agent: dict[str, Any]  # s3ta.agents.describe(...)
    config: dict[str, Any]  # TrainConfig.to_dict()
    skipped: tuple[tuple[Path, str], ...] = ()  # newer checkpoints of the run directory that did not load: (path, why)


def zoo_names(root: Path = ZOO_DIR) -> list[str]:
    """The zoo's agents (folders with a card.json), sorted."""
    return sorted(path.parent.name for path in root.glob(f"*/{CARD}"))


def is_zoo_name(spec: str | os.PathLike) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def zoo_folder(name: str, root: Path = ZOO_DIR) -> Path:
    """The folder of zoo agent ``name`` (``NAME`` or ``zoo:NAME``); ZooError naming the zoo's agents if unknown."""
    name = name[len(PREFIX):] if is_zoo_name(name) else name
    path = root / name
    if not name or not (path / CARD).is_file():
        known = ", ".join(zoo_names(root)) or "none yet"
        raise ZooError(f"unknown zoo agent {name!r}; the zoo has: {known} (`s3ta zoo list`)")
    return path


def zoo_card(name: str, root: Path = ZOO_DIR) -> dict[str, Any]:
    return json.loads((zoo_folder(name, root) / CARD).read_text())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def zoo_weights(name: str, root: Path = ZOO_DIR, verify: bool = True) -> Path:
    """The weights file of zoo agent ``name`` (``NAME`` or ``zoo:NAME``), its hash checked against the card."""
    path = zoo_folder(name, root) / WEIGHTS
    if verify:
        expected = zoo_card(name, root)["sha256"]
        if not path.is_file() or sha256(path) != expected:
            raise ZooError(f"zoo agent {name!r}: {path} is missing or does not match the sha256 of its card")
    return path


# --- checkpoint files and run directories ----------------------------------------------------------------

def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run directory, oldest first (whether they load or not)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _NAME.match(p.name))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest checkpoint file of a run directory, read or not (``newest_valid_checkpoint`` reads it)."""
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


def resolve(path_or_run_dir: str | Path) -> Path:
    """The file a checkpoint argument names: the file itself, a zoo agent's weights (``zoo:NAME``,
    hash-checked against its card), or the newest checkpoint file of a run directory (not read:
    ``load_checkpoint`` is what skips a newest file that does not load)."""
    if is_zoo_name(path_or_run_dir):
        try:
            return zoo_weights(path_or_run_dir)
        except ZooError as error:
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


def _read(path: Path, map_location: Any) -> Checkpoint:
    """One checkpoint file, checked to be one; CheckpointError (one line) otherwise."""
    import torch

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


def is_readable(path: Path) -> bool:
    """Whether ``path`` loads as an s3ta checkpoint (what resuming, evaluating and pruning agree on)."""
    try:
        _read(Path(path), "cpu")
    except CheckpointError:
        return False
    return True


def newest_valid_checkpoint(run_dir: str | Path,
                            map_location: Any = "cpu") -> tuple[Checkpoint | None, list[tuple[Path, str]]]:
    """The newest checkpoint of ``run_dir`` that loads, and the (path, reason) of newer ones skipped.
    Raises CheckpointError when checkpoints exist but none loads; (None, []) when there are none."""
    skipped: list[tuple[Path, str]] = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return _read(path, map_location)._replace(skipped=tuple(skipped)), skipped
        except CheckpointError as error:
            skipped.append((path, str(error)))
    if skipped:
        raise CheckpointError(f"no readable checkpoint in {checkpoint_dir(run_dir)}: {skipped[0][1]}"
                              + (f" (and {len(skipped) - 1} older)" if len(skipped) > 1 else ""))
    return None, skipped


def load_checkpoint(path_or_run_dir: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """A checkpoint file, a zoo agent (``zoo:NAME``), or a run directory's newest checkpoint that loads:
    a newest file that is corrupt (a machine lost while writing it) is skipped, as ``train --resume``
    skips it, and named in ``Checkpoint.skipped``. A file named directly must load."""
    if not is_zoo_name(path_or_run_dir) and Path(path_or_run_dir).is_dir():
        checkpoint, _ = newest_valid_checkpoint(path_or_run_dir, map_location)
        if checkpoint is None:
            resolve(path_or_run_dir)  # raises: no checkpoint in the directory
        return checkpoint
    return _read(resolve(path_or_run_dir), map_location)


def skipped_note(checkpoint: Checkpoint) -> str | None:
    """One line naming the newer checkpoints that were skipped because they did not load, or None."""
    if not checkpoint.skipped:
        return None
    names = ", ".join(path.name for path, _ in checkpoint.skipped)
    return (f"skipped unreadable newer checkpoint(s) {names} ({checkpoint.skipped[0][1]}); "
            f"using {checkpoint.path.name}")


def check_compatible(checkpoint: Checkpoint, agent_description: dict[str, Any]) -> None:
    """Raise a one-line CheckpointError if the checkpoint's agent differs from the one expected.

    Agent configs are compared with every field filled in, so that a checkpoint saved before a
    config field existed matches a run that has that field at its default.
    """
    from s3ta import agents

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
    from s3ta import agents

    return json.loads(json.dumps(dataclasses.asdict(agents.config_for(name, **config))))


def load_agent(path_or_run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Rebuild the agent a checkpoint was trained with and load its weights (eval mode); the checkpoint
    is read as ``load_checkpoint`` reads it."""
    from s3ta import agents

    checkpoint = load_checkpoint(path_or_run_dir)
    agent = agents.from_description(checkpoint.agent)
    try:
        agent.load_state_dict(checkpoint.model)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit its agent: "
                              f"{str(error).splitlines()[0]}") from None
    return agent.to(device).eval(), checkpoint
