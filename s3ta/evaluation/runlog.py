"""Reading a training run's log, ``RUN/metrics.jsonl`` (written by ``s3ta.training.monitor``): its
episode and update records in frame order, with what an interrupted attempt logged past the checkpoint
its successor resumed from left out. Reports, learning curves and the zoo read runs through it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def read_metrics(run_dir: str | Path, kind: str) -> list[dict]:
    """The records of ``kind`` ("episode" or "update") in ``run_dir/metrics.jsonl``, in frame order.

    A resumed run appends to the file from its checkpoint's frame count; records logged after that
    checkpoint by the interrupted attempt are dropped where the frame count goes back. Lines cut
    short by a crash are skipped.
    """
    path = Path(run_dir) / "metrics.jsonl"
    records: list[dict] = []
    if not path.exists():
        return records
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("kind") != kind:
                continue
            # Several episodes share an update's frame count; updates have one each.
            went_back = records and (record["frames"] < records[-1]["frames"] or
                                     (kind == "update" and record["frames"] == records[-1]["frames"]))
            if went_back:  # a resumed attempt supersedes what was logged from its frame count on
                while records and records[-1]["frames"] >= record["frames"]:
                    records.pop()
            records.append(record)
    return records


def read_training_episodes(run_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(frames [K], raw returns [K]) of the training episodes in ``run_dir/metrics.jsonl`` (``read_metrics``)."""
    episodes = read_metrics(run_dir, "episode")
    return (np.array([float(r["frames"]) for r in episodes]), np.array([float(r["return"]) for r in episodes]))
