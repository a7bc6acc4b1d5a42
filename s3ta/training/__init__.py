"""IMPALA training of s3ta agents: ``train(config, run_dir, resume=False)``.

Modules: config (TrainConfig), actor (unrolls), batch (the batch's way to each learner's device),
learner (one update), runners (serial and parallel acting), ray_runner (actors on a Ray cluster;
needs Ray), monitor (logs, progress), checkpoint (save/load), errors (the faults a run ends in),
loop (the run), distributed (data-parallel learners), demo. ``train`` and ``DONE_MARKER`` load the
loop (and torch) on first use, so that the torch-free modules (config, errors) can be imported
without it.
"""

from typing import Any

from s3ta.training.config import TrainConfig

__all__ = ["DONE_MARKER", "TrainConfig", "train"]
_FROM_LOOP = ("DONE_MARKER", "train")


def __getattr__(name: str) -> Any:
    if name in _FROM_LOOP:
        from s3ta.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
