"""`s3ta experiment --backend ray`: cells run as Ray tasks on a local two-CPU Ray instance, write
their results, and are skipped when the command runs again; cells' sizes fit their CPUs; a clear
error when Ray is missing."""

import argparse
import importlib
import json
import sys

import pytest

from s3ta.evaluation import cli
from s3ta.training import TrainConfig

ray = pytest.importorskip("ray")

from s3ta.evaluation.ray_experiment import cell_sizes  # noqa: E402 - needs ray


def parse(argv):
    parser = argparse.ArgumentParser(prog="s3ta")
    cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def experiment_argv(out, *extra):
    return ["experiment", "--backend", "ray", "--cpus-per-cell", "1", "--envs", "catch", "--agents", "s3ta-small",
            "--seeds", "0", "1", "--total-frames", "40", "--out", str(out), "--mode", "serial", "--unroll-length", "5",
            "--batch-size", "2", "--eval-episodes", "2", "--log-interval", "1000", *extra]


@pytest.mark.slow  # a local Ray instance and real training cells: ~a minute
def test_cells_run_as_ray_tasks_and_finished_ones_are_skipped(tmp_path, capsys):
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        args = parse(experiment_argv(tmp_path))
        assert args.func(args) == 0
        first = capsys.readouterr().out
        assert "2 cells submitted to Ray, each with 1 CPUs" in first and "[2/2]" in first
        for seed in (0, 1):
            run_dir = tmp_path / "catch" / "s3ta-small" / f"seed{seed}"
            assert (run_dir / "DONE").exists()
            summary = json.loads((run_dir / "eval" / "summary.json").read_text())
            assert summary["episodes"] == 2 and summary["checkpoint_frames"] >= 40
            assert json.loads((run_dir / "config.json").read_text())["learner_threads"] == 1  # sized to the cell

        args = parse(experiment_argv(tmp_path))
        assert args.func(args) == 0
        second = capsys.readouterr().out
        assert second.count("skipped") == 4  # two progress lines and two table rows
        assert ray.is_initialized(), "a Ray instance the caller started is left running"
    finally:
        ray.shutdown()


def test_cell_sizes_fit_the_cpus_and_respect_the_grid():
    assert cell_sizes({}, cpus=8) == {"num_actors": 7, "learner_threads": 8}  # the training defaults on 8 cores
    assert TrainConfig(batch_size=32, **cell_sizes({}, cpus=8)).actor_batch == 4  # 7 actors: 4 envs each
    assert cell_sizes({}, cpus=4) == {"num_actors": 3, "learner_threads": 4}
    assert cell_sizes({}, cpus=1) == {"num_actors": 1, "learner_threads": 1}
    assert cell_sizes({"mode": "serial"}, cpus=3) == {"learner_threads": 3}
    assert cell_sizes({"num_actors": 2}, cpus=8) == {"learner_threads": 8}
    assert cell_sizes({"num_actors": 2, "learner_threads": 1}, cpus=8) == {}


def test_missing_ray_names_the_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "s3ta.evaluation.ray_experiment")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 's3ta\[ray\]'"):
        importlib.import_module("s3ta.evaluation.ray_experiment")
    args = parse(experiment_argv(tmp_path))
    assert args.func(args) == 2
    assert "pip install 's3ta[ray]'" in capsys.readouterr().err
