"""Reading a training run's records: ``RUN/metrics.jsonl`` (written by ``s3ta.training.monitor``), its
episode and update records in frame order with what an interrupted attempt logged past the checkpoint
its successor resumed from left out, the training hours they add up to, and ``RUN/attempts.json``, where
and in which arithmetic each stretch of frames trained. Reports, learning curves and the zoo read runs
through it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

ATTEMPTS = "attempts.json"  # one record per call of train() on the run: its machine, device and first frame


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


def training_hours(run_dir: str | Path, until_frames: float = math.inf) -> float:
    """Wall-clock hours of a run over all its attempts, from the ``time`` of its logged updates (each
    attempt restarts its clock; what an attempt did after its last log line is not counted, nor what an
    interrupted attempt did after the checkpoint its successor resumed from), up to ``until_frames``."""
    total, last = 0.0, 0.0
    for record in read_metrics(run_dir, "update"):
        if record["frames"] > until_frames:
            break
        time = record.get("time")
        if time is None:
            continue
        if time < last:  # a new attempt
            total += last
        last = time
    return (total + last) / 3600


class Stretch(NamedTuple):
    """Frames [start, end) of a run trained on one device in one arithmetic (end None: to the run's end)."""
    start: int
    end: int | None
    device: str  # "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)"
    precision: str  # the arithmetic used, after any fallback: "fp32" or "bf16"


def read_attempts(run_dir: str | Path) -> list[dict]:
    """The records of ``run_dir/attempts.json`` in the order they were made; [] where the run has none
    (it predates the file) or the file is torn."""
    path = Path(run_dir) / ATTEMPTS
    try:
        attempts = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return attempts if isinstance(attempts, list) else []


def trained_on(run_dir: str | Path) -> list[Stretch]:
    """Where and in which arithmetic each stretch of a run's frames trained, from ``attempts.json``.

    An attempt trains from its first frame until the next attempt resumes; one that resumes from an
    older checkpoint replaces what its predecessors trained past that point. Neighbouring stretches on
    the same device and arithmetic are merged; [] where the run has no attempts.json."""
    stretches: list[Stretch] = []
    for attempt in read_attempts(run_dir):
        start = int(attempt["frames"])
        while stretches and stretches[-1].start >= start:
            stretches.pop()  # replaced: this attempt resumed from a checkpoint at or before its start
        if stretches:
            stretches[-1] = stretches[-1]._replace(end=start)
        stretches.append(Stretch(start, None, attempt["device"], attempt["precision"]))
    merged: list[Stretch] = []
    for stretch in stretches:
        if merged and (merged[-1].device, merged[-1].precision) == (stretch.device, stretch.precision):
            merged[-1] = merged[-1]._replace(end=stretch.end)
        else:
            merged.append(stretch)
    return merged
