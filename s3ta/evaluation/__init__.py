"""Scores and reports: evaluating checkpoints (``evaluate``), grids of training runs
(``experiment``; ``ray_experiment`` on a Ray cluster), reports over run directories (``report``,
``plots``), training runs' logs (``runlog``), the statistics they use (``metrics``) and the reference
scores that normalise raw scores (``reference``).
"""

from s3ta.evaluation.metrics import (
    Interval,
    aggregate_intervals,
    aggregate_iqm,
    aggregate_mean,
    aggregate_median,
    aggregate_optimality_gap,
    mean_ci,
    normalized_score,
    stratified_bootstrap_ci,
)
from s3ta.evaluation.reference import hns, reference_for

__all__ = [
    "Interval", "aggregate_intervals", "aggregate_iqm", "aggregate_mean", "aggregate_median",
    "aggregate_optimality_gap", "hns", "mean_ci", "normalized_score", "reference_for", "stratified_bootstrap_ci",
]
