"""The statistics of evaluation, as pure functions of arrays: normalised scores, Student-t
confidence intervals, the aggregate metrics of Agarwal et al. 2021 ("Deep RL at the edge of the
statistical precipice": median, mean, interquartile mean, optimality gap, probability of
improvement) and their stratified bootstrap confidence intervals. Nothing here knows of files,
configs or environments.

Shape letters: R = bootstrap replicates, N = runs (seeds) per task, M = tasks (games); K = runs per
task of a second agent, where two are compared.
A score matrix is [N, M]; a task with fewer runs than N is padded with NaN, which every
function here treats as "no run" (it is never resampled and never counted).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np


class Interval(NamedTuple):
    """A point estimate and its confidence interval (``low`` / ``high`` NaN when undefined)."""

    value: float
    low: float
    high: float


# --- normalised scores ---------------------------------------------------------------------------

def normalized_score(score, low: float, high: float):
    """``(score - low) / (high - low)``: 0 at the ``low`` reference, 1 at the ``high`` one.

    With ``low`` = random and ``high`` = human scores this is the human-normalised score (HNS);
    it is linear, so the mean of normalised scores is the normalised mean score.
    """
    if not high > low:
        raise ValueError(f"the high reference score must exceed the low one, got low={low}, high={high}")
    return (np.asarray(score, np.float64) - low) / (high - low)


# --- Student-t intervals ---------------------------------------------------------------------------

def student_t_central_probability(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with an integer ``df`` >= 1, in closed form.

    Abramowitz & Stegun 26.7.3 / 26.7.4: with theta = atan(t / sqrt(df)), a finite series in
    cos^2(theta), for odd df plus the Cauchy term 2 theta / pi.
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    t = abs(float(t))
    if math.isinf(t):
        return 1.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        term = total = 1.0
        for k in range(2, df, 2):
            term *= (k - 1) / k * c2
            total += term
        return s * total
    if df == 1:
        return 2.0 * theta / math.pi
    # odd df >= 3: 2/pi * (theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ... up to c^(df-3)))
    term = total = 1.0
    for k in range(3, df - 1, 2):
        term *= (k - 1) / k * c2
        total += term
    return 2.0 / math.pi * (theta + s * math.cos(theta) * total)


def t_critical(df: int, confidence: float = 0.95) -> float:
    """The t with P(|T| <= t) = ``confidence`` for ``df`` degrees of freedom (12.706 for df = 1,
    2.228 for df = 10, 1.960 in the limit), by bisection of the closed-form distribution."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    low, high = 0.0, 1.0
    while student_t_central_probability(high, df) < confidence:
        high *= 2.0
    for _ in range(100):
        mid = 0.5 * (low + high)
        if student_t_central_probability(mid, df) < confidence:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def mean_ci(values, confidence: float = 0.95) -> Interval:
    """Sample mean with the Student-t interval ``mean +- t_{n-1} * s / sqrt(n)`` (s: the n-1 standard
    deviation). The interval is NaN for fewer than two values; NaNs in ``values`` are dropped."""
    x = np.asarray(values, np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return Interval(mean, math.nan, math.nan)
    half = t_critical(x.size - 1, confidence) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(mean, mean - half, mean + half)


# --- aggregate metrics over a [..., N, M] score matrix ----------------------------------------------

def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores, np.float64)
    if scores.ndim < 2:
        raise ValueError(f"scores must be [N runs, M tasks] (optionally with leading axes), got shape {scores.shape}")
    present = ~np.isnan(scores)
    if not present.any(axis=-2).all():
        raise ValueError("every task needs at least one run (a column of the score matrix is all NaN)")
    return scores


def task_means(scores) -> np.ndarray:
    """Mean over runs of each task: [..., N, M] -> [..., M]."""
    return np.nanmean(_check_scores(scores), axis=-2)


def aggregate_mean(scores) -> np.ndarray:
    """Mean over tasks of the per-task mean scores."""
    return task_means(scores).mean(axis=-1)


def aggregate_median(scores) -> np.ndarray:
    """Median over tasks of the per-task mean scores."""
    return np.median(task_means(scores), axis=-1)


def aggregate_iqm(scores) -> np.ndarray:
    """Interquartile mean: the mean of all run scores (pooled over tasks) after dropping the lowest
    and the highest ``floor(0.25 n)`` of the n scores (scipy.stats.trim_mean(x, 0.25), as rliable)."""
    scores = _check_scores(scores)
    flat = scores.reshape(*scores.shape[:-2], -1)  # [..., N * M]
    counts = (~np.isnan(flat)).sum(axis=-1)
    n = int(counts.min())
    if counts.max() != n:
        raise ValueError("every replicate must hold the same number of runs")
    cut = int(0.25 * n)
    ordered = np.sort(flat, axis=-1)  # NaNs sort last, beyond index n
    return ordered[..., cut:n - cut].mean(axis=-1)


def aggregate_optimality_gap(scores, threshold: float = 1.0) -> np.ndarray:
    """How far the runs fall short of ``threshold`` on average: ``threshold - mean(min(score,
    threshold))`` over all runs of all tasks (1.0 = human level for HNS). Lower is better."""
    scores = _check_scores(scores)
    flat = scores.reshape(*scores.shape[:-2], -1)
    return threshold - np.nanmean(np.minimum(flat, threshold), axis=-1)


AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "median": aggregate_median,
    "iqm": aggregate_iqm,
    "mean": aggregate_mean,
    "optimality_gap": aggregate_optimality_gap,
}


# --- stratified bootstrap ----------------------------------------------------------------------

def score_matrix(runs_per_task: list) -> np.ndarray:
    """Stack per-task lists of run scores into an [N, M] matrix, NaN-padding tasks with fewer runs."""
    if not runs_per_task:
        raise ValueError("need at least one task")
    columns = [np.asarray(runs, np.float64).ravel() for runs in runs_per_task]
    if min(c.size for c in columns) == 0:
        raise ValueError("every task needs at least one run")
    matrix = np.full((max(c.size for c in columns), len(columns)), np.nan)
    for m, column in enumerate(columns):
        matrix[:column.size, m] = column
    return matrix


def stratified_bootstrap_replicates(scores, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` resamples of an [N, M] score matrix: each task's runs are drawn with replacement from
    that task's own runs, independently per task (the tasks themselves are kept). [R, N, M]."""
    scores = _check_scores(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be [N, M], got shape {scores.shape}")
    out = np.full((reps, *scores.shape), np.nan)
    for m in range(scores.shape[1]):
        runs = scores[~np.isnan(scores[:, m]), m]  # [n_m]
        out[:, :runs.size, m] = runs[rng.integers(0, runs.size, (reps, runs.size))]  # [R, n_m]
    return out


_CHUNK = 5_000  # bootstrap replicates drawn at once, to bound memory


def stratified_bootstrap_ci(scores, statistic: Callable[[np.ndarray], np.ndarray], *, reps: int = 50_000,
                            confidence: float = 0.95, seed: int = 0) -> Interval:
    """``statistic`` of the [N, M] ``scores`` with its percentile stratified-bootstrap interval
    (Agarwal et al. 2021; rliable's ``get_interval_estimates`` with method "percentile").

    ``statistic`` maps [..., N, M] to [...], e.g. ``aggregate_iqm``. The interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the ``reps`` replicate
    statistics; it is reproducible from ``scores``, ``reps`` and ``seed``.
    """
    scores = _check_scores(scores)
    rng = np.random.default_rng(seed)
    _check_reps(reps)
    values = [statistic(stratified_bootstrap_replicates(scores, min(_CHUNK, reps - start), rng))
              for start in range(0, reps, _CHUNK)]
    return _percentile_interval(statistic(scores), values, confidence)


def _check_reps(reps: int) -> None:
    if reps < 1:
        raise ValueError(f"reps must be >= 1, got {reps}")


def _percentile_interval(value, replicate_values: list, confidence: float) -> Interval:
    """``value`` with the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
    replicate statistics (chunks of [R] concatenated) as its interval."""
    values = np.concatenate([np.atleast_1d(v) for v in replicate_values])  # [R]
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return Interval(float(value), float(low), float(high))


def aggregate_intervals(scores, *, reps: int = 50_000, confidence: float = 0.95, seed: int = 0,
                        threshold: float = 1.0) -> dict[str, Interval]:
    """Median, IQM, mean and optimality gap (at ``threshold``) of [N, M] ``scores``, each with its
    stratified-bootstrap interval."""
    statistics = dict(AGGREGATES, optimality_gap=lambda x: aggregate_optimality_gap(x, threshold))
    return {name: stratified_bootstrap_ci(scores, fn, reps=reps, confidence=confidence, seed=seed)
            for name, fn in statistics.items()}


# --- probability of improvement ----------------------------------------------------------------

def probability_of_improvement(x_scores, y_scores) -> np.ndarray:
    """P(X > Y): the probability that a run of agent X on a task beats a run of agent Y on the same
    task, averaged over tasks (Agarwal et al. 2021; rliable's ``probability_of_improvement``).

    ``x_scores``: [..., N, M] runs of X; ``y_scores``: [..., K, M] runs of Y on the same M tasks, in
    the same order (NaN = no run). Per task m, with X's n_m and Y's k_m runs there,
    ``P(X_m > Y_m) = 1 / (n_m k_m) * sum_i sum_j ([x_im > y_jm] + 1/2 [x_im = y_jm])``, the
    Mann-Whitney U statistic normalised; the result is the mean over tasks, [...]. It depends only on
    the order of the scores within each task, so raw and normalised scores give the same value.
    """
    x_scores, y_scores = _check_scores(x_scores), _check_scores(y_scores)
    if x_scores.shape[:-2] != y_scores.shape[:-2] or x_scores.shape[-1] != y_scores.shape[-1]:
        raise ValueError(f"x_scores [..., N, M] and y_scores [..., K, M] must share their tasks M (and any leading "
                         f"axes), got shapes {x_scores.shape} and {y_scores.shape}")
    per_task = []
    for m in range(x_scores.shape[-1]):  # a loop over tasks keeps the pair arrays at [..., N, K]
        x = x_scores[..., :, None, m]  # [..., N, 1]
        y = y_scores[..., None, :, m]  # [..., 1, K]
        wins = (x > y) + 0.5 * (x == y)  # [..., N, K]; a pair with a NaN counts 0 here
        pairs = (~np.isnan(x) & ~np.isnan(y)).sum(axis=(-2, -1))  # [...]
        per_task.append(wins.sum(axis=(-2, -1)) / pairs)
    return np.mean(per_task, axis=0)  # [M, ...] -> [...]


def probability_of_improvement_ci(x_scores, y_scores, *, reps: int = 50_000, confidence: float = 0.95,
                                  seed: int = 0) -> Interval:
    """``probability_of_improvement(x_scores, y_scores)`` with its percentile stratified-bootstrap
    interval: in each replicate X's runs and Y's runs are resampled with replacement within each task,
    independently for X and for Y (the tasks are kept), as rliable's StratifiedIndependentBootstrap.

    A task where both agents have one run contributes the same value to every replicate; with one run
    per task for both, the interval has no width. Reproducible from the scores, ``reps`` and ``seed``.
    """
    x_scores, y_scores = _check_scores(x_scores), _check_scores(y_scores)
    value = probability_of_improvement(x_scores, y_scores)  # checks that the tasks match
    _check_reps(reps)
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, reps, _CHUNK):
        count = min(_CHUNK, reps - start)
        x = stratified_bootstrap_replicates(x_scores, count, rng)  # [R, N, M]
        y = stratified_bootstrap_replicates(y_scores, count, rng)  # [R, K, M]
        values.append(probability_of_improvement(x, y))  # [R]
    return _percentile_interval(value, values, confidence)


# --- learning curves ------------------------------------------------------------------------

def binned_mean(x, y, edges) -> np.ndarray:
    """Mean of the ``y`` whose ``x`` falls in each bin [edges[i], edges[i+1]) (the last bin also
    takes x == edges[-1]); NaN for an empty bin. x, y: [K]; edges: [E] increasing -> [E - 1]."""
    x, y, edges = (np.asarray(a, np.float64) for a in (x, y, edges))
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of the same length, got {x.shape} and {y.shape}")
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be at least two increasing values")
    index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)  # [K]
    inside = (x >= edges[0]) & (x <= edges[-1])
    sums = np.bincount(index[inside], y[inside], minlength=edges.size - 1)
    counts = np.bincount(index[inside], minlength=edges.size - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
