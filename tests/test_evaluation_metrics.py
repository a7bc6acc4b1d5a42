"""Evaluation statistics: Student-t intervals, aggregate metrics on hand-computed inputs, the
stratified bootstrap (exact small cases, stratification, coverage on data of known distribution),
the probability of improvement (hand-computed cases, a pair-by-pair loop, its bootstrap) and the
binning of learning curves."""

import math

import numpy as np
import pytest

from s3ta.evaluation import metrics
from s3ta.evaluation.metrics import Interval


@pytest.mark.parametrize("df, expected", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706),
                                          (10, 2.2281), (29, 2.0452), (30, 2.0423), (60, 2.0003), (120, 1.9799)])
def test_t_critical_matches_published_tables(df, expected):
    assert metrics.t_critical(df) == pytest.approx(expected, abs=1e-4)


def test_t_distribution_limits():
    z = 1.959963985  # the normal quantile; Cornish-Fisher expansion of t for large df:
    for df in (500, 5000):
        expansion = z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        assert metrics.t_critical(df) == pytest.approx(expansion, abs=1e-6)
    assert metrics.t_critical(9, confidence=0.99) == pytest.approx(3.2498, abs=1e-4)
    assert metrics.student_t_central_probability(0.0, 7) == 0.0
    assert metrics.student_t_central_probability(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2


def test_mean_ci_by_hand():
    # mean 2.5, sd = sqrt(5/3), half width = t(3) * sd / 2
    interval = metrics.mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182446 * math.sqrt(5 / 3) / 2
    assert interval.value == 2.5
    assert interval.low == pytest.approx(2.5 - half, abs=1e-5)
    assert interval.high == pytest.approx(2.5 + half, abs=1e-5)
    one = metrics.mean_ci([3.0])
    assert one.value == 3.0 and math.isnan(one.low) and math.isnan(one.high)
    assert metrics.mean_ci([2.0, 2.0, 2.0]) == Interval(2.0, 2.0, 2.0)


def test_normalized_score():
    assert metrics.normalized_score(14.6, -20.7, 14.6) == pytest.approx(1.0)
    assert metrics.normalized_score(-20.7, -20.7, 14.6) == pytest.approx(0.0)
    np.testing.assert_allclose(metrics.normalized_score([0.0, 21.0], -20.7, 14.6), [20.7 / 35.3, 41.7 / 35.3])
    with pytest.raises(ValueError, match="must exceed"):
        metrics.normalized_score(1.0, 5.0, 5.0)


# scores[n, m]: run n of task m. Task means 2, 3, 5.
HAND = np.array([[1.0, 2.0, 10.0],
                 [3.0, 4.0, 0.0]])


def test_aggregates_by_hand():
    assert metrics.aggregate_mean(HAND) == pytest.approx(10 / 3)
    assert metrics.aggregate_median(HAND) == pytest.approx(3.0)
    # sorted runs 0 1 2 3 4 10; floor(6 / 4) = 1 dropped at each end -> mean(1, 2, 3, 4)
    assert metrics.aggregate_iqm(HAND) == pytest.approx(2.5)
    # min(x, 1) = 1 1 1 1 1 0 -> gap 1 - 5/6
    assert metrics.aggregate_optimality_gap(HAND) == pytest.approx(1 / 6)
    assert metrics.aggregate_optimality_gap(HAND, threshold=3.0) == pytest.approx(3 - (1 + 2 + 3 + 3 + 3 + 0) / 6)


def test_iqm_of_eight_drops_two_each_end():
    scores = np.arange(8.0).reshape(2, 4)  # 0..7 -> mean(2, 3, 4, 5)
    assert metrics.aggregate_iqm(scores) == pytest.approx(3.5)


def test_ragged_tasks_are_nan_padded():
    scores = metrics.score_matrix([[1.0, 3.0], [5.0], [0.0, 1.0, 2.0]])
    assert scores.shape == (3, 3) and np.isnan(scores).sum() == 3
    np.testing.assert_allclose(metrics.task_means(scores), [2.0, 5.0, 1.0])
    assert metrics.aggregate_mean(scores) == pytest.approx(8 / 3)
    # six runs: 0 1 1 2 3 5 -> floor(6/4) = 1 cut each end -> mean(1, 1, 2, 3)
    assert metrics.aggregate_iqm(scores) == pytest.approx(7 / 4)
    assert metrics.aggregate_optimality_gap(scores) == pytest.approx(1 - (1 + 1 + 1 + 0 + 1 + 1) / 6)
    with pytest.raises(ValueError, match="at least one run"):
        metrics.score_matrix([[1.0], []])


def test_aggregates_accept_leading_replicate_axis():
    stacked = np.stack([HAND, HAND + 1.0])  # [R=2, N, M]
    np.testing.assert_allclose(metrics.aggregate_median(stacked), [3.0, 4.0])
    np.testing.assert_allclose(metrics.aggregate_iqm(stacked), [2.5, 3.5])


def test_bootstrap_exact_two_point_case():
    # one task with runs {0, 1}: the resampled mean is 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4,
    # so the 2.5% and 97.5% percentiles are exactly 0 and 1.
    interval = metrics.stratified_bootstrap_ci(np.array([[0.0], [1.0]]), metrics.aggregate_mean, reps=4000)
    assert interval == Interval(0.5, 0.0, 1.0)
    replicates = metrics.stratified_bootstrap_replicates(np.array([[0.0], [1.0]]), 40_000, np.random.default_rng(1))
    frequencies = np.bincount((replicates.mean(axis=1)[:, 0] * 2).astype(int), minlength=3) / 40_000
    np.testing.assert_allclose(frequencies, [0.25, 0.5, 0.25], atol=0.01)


def test_bootstrap_resamples_within_each_task():
    scores = metrics.score_matrix([[5.0, 5.0, 5.0], [7.0, 7.0], [1.0, 2.0, 3.0]])
    replicates = metrics.stratified_bootstrap_replicates(scores, 500, np.random.default_rng(0))  # [R, N, M]
    assert replicates.shape == (500, 3, 3)
    # each column holds only its own task's runs, and the padding stays NaN
    assert np.all(replicates[:, :, 0] == 5.0)
    assert np.all(replicates[:, :2, 1] == 7.0) and np.all(np.isnan(replicates[:, 2, 1]))
    assert set(np.unique(replicates[:, :, 2])) == {1.0, 2.0, 3.0}
    # constant tasks: a stratified bootstrap never mixes them, so the mean of these two is always 6
    constant = metrics.score_matrix([[5.0, 5.0, 5.0], [7.0, 7.0, 7.0]])
    assert metrics.stratified_bootstrap_ci(constant, metrics.aggregate_mean, reps=1000) == Interval(6.0, 6.0, 6.0)


def test_bootstrap_tasks_are_resampled_independently():
    scores = np.array([[0.0, 0.0], [1.0, 1.0]] * 3)  # two identical tasks of 6 runs
    replicates = metrics.stratified_bootstrap_replicates(scores, 20_000, np.random.default_rng(2))
    task_means = replicates.mean(axis=1)  # [R, 2]
    assert abs(np.corrcoef(task_means.T)[0, 1]) < 0.03


def test_bootstrap_is_reproducible_and_checks_inputs():
    scores = np.random.default_rng(0).normal(size=(5, 4))
    a = metrics.stratified_bootstrap_ci(scores, metrics.aggregate_iqm, reps=12_000, seed=3)
    b = metrics.stratified_bootstrap_ci(scores, metrics.aggregate_iqm, reps=12_000, seed=3)
    assert a == b and a.low < a.value < a.high
    with pytest.raises(ValueError, match=r"\[N runs, M tasks\]"):
        metrics.aggregate_mean(np.ones(3))
    with pytest.raises(ValueError, match="all NaN"):
        metrics.aggregate_mean(np.array([[1.0, np.nan]]))


def test_bootstrap_intervals_cover_true_values_on_known_distribution():
    # Four tasks; task m's runs are U(m, m + 1), so all runs together are U(0, 4): the true median
    # of task means, the mean and the IQM are all 2, and the optimality gap at 1 is
    # 1 - E[min(X, 1)] = 1 - (1/4 * 1/2 + 3/4 * 1) = 1/8.
    truth = {"median": 2.0, "iqm": 2.0, "mean": 2.0, "optimality_gap": 0.125}
    rng = np.random.default_rng(1234)
    trials, runs, tasks = 150, 10, 4
    covered = {name: 0 for name in truth}
    for trial in range(trials):
        scores = rng.uniform(size=(runs, tasks)) + np.arange(tasks)  # [N, M]
        intervals = metrics.aggregate_intervals(scores, reps=1000, seed=trial)
        for name, interval in intervals.items():
            assert interval.low <= interval.value <= interval.high
            covered[name] += interval.low <= truth[name] <= interval.high
    coverage = {name: count / trials for name, count in covered.items()}
    # nominal 95%; the percentile bootstrap of a sample of 10 per task runs a little narrow
    assert all(0.85 <= c <= 1.0 for c in coverage.values()), coverage


def improvement_by_pairs(x_runs_per_task, y_runs_per_task):
    """P(X > Y) written pair by pair, as the paper's Mann-Whitney sum: per task, a win counts 1 and
    a tie 1/2 over all N x K pairs of runs; the tasks' values are averaged."""
    per_task = []
    for x_runs, y_runs in zip(x_runs_per_task, y_runs_per_task):
        total = 0.0
        for x in x_runs:
            for y in y_runs:
                total += 1.0 if x > y else 0.5 if x == y else 0.0
        per_task.append(total / (len(x_runs) * len(y_runs)))
    return sum(per_task) / len(per_task)


def test_probability_of_improvement_known_answers():
    x = metrics.score_matrix([[5.0, 6.0], [2.0], [0.3, 0.4, 0.5]])
    y = metrics.score_matrix([[1.0], [0.0, 1.0, 1.5], [0.1]])
    assert metrics.probability_of_improvement(x, y) == 1.0  # every run of X above every run of Y
    assert metrics.probability_of_improvement(y, x) == 0.0
    assert metrics.probability_of_improvement(x, x) == 0.5  # identical: ties and mirrored wins
    constant = np.full((2, 3), 7.0)
    assert metrics.probability_of_improvement(constant, constant[:1]) == 0.5  # all ties


def test_probability_of_improvement_with_ties_by_hand():
    # task 0: X {1, 2, 3} against Y {2, 2}: pairs 1<2 1<2 (0), 2=2 2=2 (1/2 each), 3>2 3>2 (1 each)
    #   -> (0 + 0 + 0.5 + 0.5 + 1 + 1) / 6 = 1/2
    # task 1: X {4} against Y {4, 1}: 4=4 (1/2), 4>1 (1) -> 3/4
    # task 2: X {0, 5} against Y {5, -1}: 0<5 (0), 0>-1 (1), 5=5 (1/2), 5>-1 (1) -> 5/8
    # mean over tasks (1/2 + 3/4 + 5/8) / 3 = 5/8. Ties counted 0 would give (1/3 + 1/2 + 1/2) / 3 = 4/9,
    # ties counted 1 would give (2/3 + 1 + 3/4) / 3 = 29/36.
    x = metrics.score_matrix([[1.0, 2.0, 3.0], [4.0], [0.0, 5.0]])
    y = metrics.score_matrix([[2.0, 2.0], [4.0, 1.0], [5.0, -1.0]])
    assert metrics.probability_of_improvement(x, y) == pytest.approx(5 / 8)
    assert metrics.probability_of_improvement(y, x) == pytest.approx(3 / 8)  # P(Y > X) = 1 - P(X > Y)
    # one task only: (1 + 1/2) / 2 for task 1 with Y's runs in the other order
    assert metrics.probability_of_improvement(x[:1, 1:2], y[::-1, 1:2]) == pytest.approx(3 / 4)


def test_probability_of_improvement_equals_the_pair_by_pair_sum():
    rng = np.random.default_rng(5)
    for _ in range(20):
        tasks = int(rng.integers(1, 6))
        # small integers, so that ties are common; ragged numbers of runs per task
        x_runs = [rng.integers(0, 4, rng.integers(1, 5)).astype(float).tolist() for _ in range(tasks)]
        y_runs = [rng.integers(0, 4, rng.integers(1, 5)).astype(float).tolist() for _ in range(tasks)]
        x, y = metrics.score_matrix(x_runs), metrics.score_matrix(y_runs)
        expected = improvement_by_pairs(x_runs, y_runs)
        assert metrics.probability_of_improvement(x, y) == pytest.approx(expected)
        assert metrics.probability_of_improvement(y, x) == pytest.approx(1 - expected)
        # with a leading replicate axis: each replicate on its own
        stacked = metrics.probability_of_improvement(np.stack([x, x + 10]), np.stack([y, y]))
        np.testing.assert_allclose(stacked, [expected, 1.0])


def test_probability_of_improvement_checks_the_tasks_match():
    with pytest.raises(ValueError, match="share their tasks"):
        metrics.probability_of_improvement(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="all NaN"):
        metrics.probability_of_improvement(np.ones((2, 2)), np.array([[1.0, np.nan]]))


def test_probability_of_improvement_bootstrap():
    # one task, X {0, 1} against Y {0.5}: each resample of X is {0, 0}, {0, 1} or {1, 1}, with
    # probabilities 1/4, 1/2, 1/4, and P(X > Y) = 0, 1/2 or 1: the percentiles are exactly 0 and 1.
    x, y = np.array([[0.0], [1.0]]), np.array([[0.5]])
    assert metrics.probability_of_improvement_ci(x, y, reps=4000) == Interval(0.5, 0.0, 1.0)
    # X and Y are resampled independently: Y {0, 1} against itself is not always 1/2 once resampled
    both = metrics.probability_of_improvement_ci(x, x, reps=4000)
    assert both.value == 0.5 and both.low < 0.5 < both.high
    # one run per task for both agents: every replicate is the sample, the interval has no width
    single = metrics.probability_of_improvement_ci(np.array([[3.0, 1.0, 2.0]]), np.array([[1.0, 1.0, 4.0]]), reps=500)
    assert single == Interval(0.5, 0.5, 0.5)  # (1 + 1/2 + 0) / 3
    # reproducible by seed, and the seed matters
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 3)), rng.normal(0.3, size=(3, 3))
    a = metrics.probability_of_improvement_ci(x, y, reps=12_000, seed=7)
    assert a == metrics.probability_of_improvement_ci(x, y, reps=12_000, seed=7)
    assert a != metrics.probability_of_improvement_ci(x, y, reps=12_000, seed=8)
    assert a.low <= a.value <= a.high and a.value == metrics.probability_of_improvement(x, y)
    with pytest.raises(ValueError, match="reps"):
        metrics.probability_of_improvement_ci(x, y, reps=0)


def test_binned_mean_by_hand():
    x = np.array([0.0, 1.0, 4.0, 5.0, 9.0, 10.0])
    y = np.array([1.0, 3.0, 10.0, 20.0, 7.0, 9.0])
    np.testing.assert_allclose(metrics.binned_mean(x, y, [0.0, 5.0, 10.0]), [14 / 3, 12.0])
    np.testing.assert_allclose(metrics.binned_mean(x, y, [0.0, 2.0, 4.0, 6.0]), [2.0, np.nan, 15.0])
    with pytest.raises(ValueError, match="increasing"):
        metrics.binned_mean(x, y, [0.0, 0.0])
