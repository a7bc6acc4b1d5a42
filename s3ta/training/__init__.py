"""IMPALA training of s3ta agents: ``train(config, run_dir, resume=False)``.

Modules: config (TrainConfig), actor (unrolls), learner (one update), runners (serial and
parallel acting), ray_runner (actors on a Ray cluster; needs Ray), monitor (logs, progress),
checkpoint (save/load), loop (the run), distributed (data-parallel learners), demo.
"""

from s3ta.training.config import TrainConfig
from s3ta.training.loop import DONE_MARKER, train

__all__ = ["DONE_MARKER", "TrainConfig", "train"]
