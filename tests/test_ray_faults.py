"""The Ray runner's handling of actor faults, without starting Ray: an actor Ray is restarting is
waited for, however many requests fail meanwhile; an actor that keeps dying is reported."""

import pytest

ray = pytest.importorskip("ray")
from s3ta.training import ray_runner  # noqa: E402
from s3ta.training.ray_runner import RayRunner  # noqa: E402


def runner_with_outcomes(monkeypatch, outcomes):
    """A runner of one actor whose successive requests end in ``outcomes`` (an exception or a result)."""
    runner = object.__new__(RayRunner)
    runner.log, runner.restarts = (lambda message: None), 0
    runner.failures, runner.restarting_since, runner.incarnations = [0], [None], ["first"]
    runner.pending = {}
    requests = iter(outcomes)
    monkeypatch.setattr(runner, "_submit", lambda index: runner.pending.__setitem__(next(requests), index))
    monkeypatch.setattr(ray_runner.ray, "wait", lambda refs, **kwargs: (refs[:1], refs[1:]))

    def get(outcome):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(ray_runner.ray, "get", get)
    monkeypatch.setattr(ray_runner.time, "sleep", lambda seconds: None)
    runner._submit(0)
    return runner


class Info:
    incarnation = "first"


def test_an_actor_that_is_restarting_is_waited_for(monkeypatch):
    restarting = ray.exceptions.ActorUnavailableError("The actor is restarting.", b"0" * 16)
    result = ("unroll", "state", Info())
    runner = runner_with_outcomes(monkeypatch, [restarting] * 3 * ray_runner.MAX_FAILURES_IN_A_ROW + [result] * 2)
    assert runner._next_unroll() == result
    assert runner.failures == [0] and runner.restarting_since == [None]


def test_an_actor_that_keeps_dying_is_reported(monkeypatch):
    died = ray.exceptions.RayActorError(error_msg="the worker died")
    runner = runner_with_outcomes(monkeypatch, [died] * (ray_runner.MAX_FAILURES_IN_A_ROW + 1))
    with pytest.raises(RuntimeError, match="failed 10 times in a row"):
        runner._next_unroll()


def test_a_restart_that_never_ends_is_reported(monkeypatch):
    restarting = ray.exceptions.ActorUnavailableError("The actor is restarting.", b"0" * 16)
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(ray_runner.time, "monotonic", lambda: float(next(clock)))
    runner = runner_with_outcomes(monkeypatch, [restarting] * 10)
    with pytest.raises(RuntimeError, match="has been restarting for"):
        runner._next_unroll()
