"""Writing checkpoints during training: atomic writes (temporary file, then rename) and the last K
that load kept. Reading them (files, run directories, ``zoo:NAME``) is ``s3ta.checkpoints``, whose
names are re-exported here for the training loop. A checkpoint holds the model, optimizer and
LR-schedule state, counters, RNG states, the agent description and the training config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from s3ta import agents
from s3ta.checkpoints import (  # noqa: F401 - re-exported: the training loop and older scripts import them from here
    FORMAT_VERSION,
    Checkpoint,
    CheckpointError,
    check_compatible,
    checkpoint_dir,
    checkpoint_payload,
    is_readable,
    latest_checkpoint,
    list_checkpoints,
    load_agent,
    load_checkpoint,
    newest_valid_checkpoint,
    resolve,
)


def save_checkpoint(run_dir: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, counters: dict[str, int], rng: dict[str, Any],
                    config: dict[str, Any], keep: int) -> Path:
    """Write ``ckpt-<frames>.pt`` atomically, then prune: keep the newest ``keep`` checkpoints that load."""
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
    for old in prunable(run_dir, keep, written=path):
        old.unlink(missing_ok=True)
    return path


def prunable(run_dir: str | Path, keep: int, written: Path | None = None) -> list[Path]:
    """The checkpoints older than the newest ``keep`` that load. A file that does not load (a machine
    lost while writing it) does not count towards ``keep``: it is left where it is when newer than those
    kept (``train --resume`` and ``s3ta eval`` skip it) and pruned with the rest when older.
    ``written``: a file just saved, counted as loading without reading it back."""
    kept = 0
    found = list_checkpoints(run_dir)
    for index in range(len(found) - 1, -1, -1):
        if found[index] == written or is_readable(found[index]):
            kept += 1
            if kept == keep:
                return found[:index]
    return []
