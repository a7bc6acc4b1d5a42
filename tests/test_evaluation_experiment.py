"""`s3ta experiment`: grids from flags and files, one run directory per cell, resuming (finished
cells skipped, interrupted ones resumed from their checkpoint), failures, and one real run."""

import argparse
import json
import time

import pytest

from fixtures.evaluation_runs import write_evaluation, write_metrics
from s3ta.evaluation import cli
from s3ta.evaluation.experiment import Cell, Grid, read_grid_file, run_experiment


class FakeTrainer:
    """Follows the contract of s3ta.training.train: writes config.json, a checkpoint, metrics.jsonl
    and DONE when it reaches total_frames. ``interrupt`` names cells it stops half-way once."""

    def __init__(self, interrupt=(), fail=()):
        self.calls = []
        self.interrupt = set(interrupt)
        self.fail = set(fail)

    def __call__(self, config, run_dir, resume=False, machine=None):
        cell = (config.env, config.agent, config.seed)
        self.calls.append((cell, resume))
        if cell in self.fail:
            raise RuntimeError("the learner diverged\nsecond line")
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(run_dir / "config.json")
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        half = config.total_frames // 2
        if cell in self.interrupt:
            self.interrupt.discard(cell)
            write_metrics(run_dir, [(half, 0.0)])
            (run_dir / "checkpoints" / f"ckpt-{half:012d}.pt").write_bytes(b"fake")
            return {"finished": False, "interrupted_by": "SIGINT", "frames": half}
        write_metrics(run_dir, [(config.total_frames, 1.0)])
        (run_dir / "checkpoints" / f"ckpt-{config.total_frames:012d}.pt").write_bytes(b"fake")
        (run_dir / "DONE").touch()
        return {"finished": True, "frames": config.total_frames}


class FakeEvaluator:
    def __init__(self):
        self.calls = []

    def __call__(self, run_dir, episodes, greedy):
        self.calls.append(run_dir)
        config = json.loads((run_dir / "config.json").read_text())
        summary = write_evaluation(run_dir, config["env"], [float(config["seed"])] * episodes,
                                   config["agent"], policy="greedy" if greedy else "sampled")
        return summary, []


GRID = dict(envs=["catch", "find-target"], agents=["s3ta-small", "lstm"], seeds=[0, 1], total_frames=400,
            eval_episodes=3, train={"unroll_length": 5, "batch_size": 2})


def run(grid, root, trainer, evaluator):
    return run_experiment(grid, root, train_fn=trainer, evaluate_fn=evaluator, log=lambda message: None)


def test_grid_cells_and_run_dirs(tmp_path):
    grid = Grid.from_dict(GRID)
    cells = grid.cells()
    assert len(cells) == 8
    assert cells[0] == Cell("catch", "s3ta-small", 0) and cells[-1] == Cell("find-target", "lstm", 1)
    assert cells[1].run_dir(tmp_path) == tmp_path / "catch" / "s3ta-small" / "seed1"
    assert Cell("ALE/Pong-v5", "s3ta", 2).run_dir(tmp_path) == tmp_path / "ALE_Pong-v5" / "s3ta" / "seed2"
    config = grid.config(cells[3])
    assert (config.env, config.agent, config.seed) == ("catch", "lstm", 1)
    assert (config.total_frames, config.unroll_length) == (400, 5)


@pytest.mark.parametrize("change, message", [
    ({"agents": ["no-such-agent"]}, "unknown agent"),
    ({"seeds": [0, 0]}, "repeated seeds"),
    ({"envs": []}, "at least one"),
    ({"train": {"seed": 3}}, "grid-axis"),
    ({"train": {"batch_sise": 3}}, "unknown"),
    ({"total_frames": 0}, ">= 1"),
])
def test_grid_validation(change, message):
    with pytest.raises(ValueError, match=message):
        Grid.from_dict({**GRID, **change})


def test_experiment_runs_every_cell_then_skips_them(tmp_path):
    trainer, evaluator = FakeTrainer(), FakeEvaluator()
    results = run(Grid.from_dict(GRID), tmp_path, trainer, evaluator)
    assert [r.status for r in results] == ["trained"] * 8
    assert len(trainer.calls) == len(evaluator.calls) == 8 and not any(resume for _, resume in trainer.calls)
    assert all((r.run_dir / "eval" / "summary.json").exists() for r in results)
    assert json.loads((tmp_path / "grid.json").read_text())["envs"] == ["catch", "find-target"]

    again = run(Grid.from_dict(GRID), tmp_path, trainer, evaluator)
    assert [r.status for r in again] == ["skipped"] * 8
    assert len(trainer.calls) == len(evaluator.calls) == 8  # nothing trained or evaluated again
    assert again[1].summary["return"]["mean"] == 1.0  # seed 1's fake score, read back


def test_experiment_resumes_an_interrupted_cell_and_stops_there(tmp_path):
    interrupted = ("catch", "lstm", 0)
    trainer, evaluator = FakeTrainer(interrupt=[interrupted]), FakeEvaluator()
    first = run(Grid.from_dict(GRID), tmp_path, trainer, evaluator)
    assert [r.status for r in first] == ["trained", "trained", "interrupted"]  # stops at the interruption
    assert "SIGINT" in first[-1].message
    assert not (first[-1].run_dir / "eval").exists()

    second = run(Grid.from_dict(GRID), tmp_path, trainer, evaluator)
    assert [r.status for r in second] == ["skipped", "skipped", "resumed"] + ["trained"] * 5
    assert trainer.calls[3] == (interrupted, True)  # resumed from its checkpoint
    assert [resume for _, resume in trainer.calls[4:]] == [False] * 5
    assert len(trainer.calls) == 3 + 6


def test_finished_cell_without_evaluation_is_only_evaluated(tmp_path):
    trainer, evaluator = FakeTrainer(), FakeEvaluator()
    grid = Grid.from_dict({**GRID, "envs": ["catch"], "agents": ["lstm"], "seeds": [0]})
    run(grid, tmp_path, trainer, evaluator)
    (tmp_path / "catch" / "lstm" / "seed0" / "eval" / "summary.json").unlink()
    results = run(grid, tmp_path, trainer, evaluator)
    assert results[0].status == "evaluated" and len(trainer.calls) == 1 and len(evaluator.calls) == 2
    # asking for other evaluation settings re-evaluates, without training
    more = run(Grid.from_dict({**grid.to_dict(), "eval_episodes": 5}), tmp_path, trainer, evaluator)
    assert more[0].status == "evaluated" and more[0].summary["episodes"] == 5 and len(trainer.calls) == 1


def test_cell_started_with_other_settings_is_reported_not_touched(tmp_path):
    trainer, evaluator = FakeTrainer(), FakeEvaluator()
    small = {**GRID, "envs": ["catch"], "agents": ["lstm"], "seeds": [0]}
    run(Grid.from_dict(small), tmp_path, trainer, evaluator)
    results = run(Grid.from_dict({**small, "total_frames": 800}), tmp_path, trainer, evaluator)
    assert results[0].status == "failed"
    assert "total_frames: 400 (saved) vs 800 (grid)" in results[0].message
    assert len(trainer.calls) == 1


class MachineTrainer(FakeTrainer):
    """Records the machine settings each resumed cell is given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.machines = []

    def __call__(self, config, run_dir, resume=False, machine=None):
        self.machines.append(machine)
        return super().__call__(config, run_dir, resume)


def test_a_cell_resumes_under_this_commands_machine_settings_and_any_preset_record(tmp_path):
    """Two shards on one machine take one learner thread each from their second session on, and a run
    made under an earlier preset version with equal settings counts as its cell: neither is a conflict.
    A setting that changes what the run learns still is."""
    cell = ("catch", "lstm", 0)
    small = {**GRID, "envs": ["catch"], "agents": ["lstm"], "seeds": [0]}
    trainer = MachineTrainer(interrupt=[cell])
    run(Grid.from_dict({**small, "train": {**small["train"], "preset": "atari-small@4"}}), tmp_path, trainer,
        FakeEvaluator())
    threads = {**small, "train": {**small["train"], "learner_threads": 1, "preset": "atari-small@5"}}
    results = run(Grid.from_dict(threads), tmp_path, trainer, FakeEvaluator())
    assert results[0].status == "resumed", results[0].message
    assert trainer.machines == [None, {"learner_threads": 1}]

    learns = {**small, "train": {**small["train"], "entropy_cost": 0.5}}
    results = run(Grid.from_dict({**learns, "seeds": [0]}), tmp_path, trainer, FakeEvaluator())
    assert results[0].status == "failed" and "entropy_cost" in results[0].message


def test_a_failing_cell_does_not_stop_the_others(tmp_path):
    trainer = FakeTrainer(fail=[("catch", "s3ta-small", 0)])
    results = run(Grid.from_dict({**GRID, "envs": ["catch"]}), tmp_path, trainer, FakeEvaluator())
    assert [r.status for r in results] == ["failed", "trained", "trained", "trained"]
    assert results[0].message == "RuntimeError: the learner diverged"


def test_shards_split_the_grid_and_together_cover_it_once(tmp_path):
    grid = Grid.from_dict(GRID)
    trainers = [FakeTrainer(), FakeTrainer()]
    for index, trainer in enumerate(trainers):
        run_experiment(grid, tmp_path, train_fn=trainer, evaluate_fn=FakeEvaluator(), log=lambda m: None,
                       shard=(index, 2))
    trained = [[cell for cell, _ in trainer.calls] for trainer in trainers]
    assert len(trained[0]) == len(trained[1]) == 4 and not set(trained[0]) & set(trained[1])
    assert sorted(trained[0] + trained[1]) == sorted((c.env, c.agent, c.seed) for c in grid.cells())
    with pytest.raises(ValueError, match="0 <= I < N"):
        run_experiment(grid, tmp_path, train_fn=FakeTrainer(), shard=(2, 2), log=lambda m: None)


class TimedTrainer(FakeTrainer):
    """A trainer that takes ``seconds`` of the clock and records the time limit it was given."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds, self.limits = seconds, []

    def __call__(self, config, run_dir, resume=False, time_limit=None, machine=None):
        self.limits.append(time_limit)
        time.sleep(self.seconds)
        return super().__call__(config, run_dir, resume)


def test_time_limit_is_shared_by_the_cells_and_stops_the_grid(tmp_path):
    trainer = TimedTrainer(seconds=0.15)
    results = run_experiment(Grid.from_dict(GRID), tmp_path, train_fn=trainer, evaluate_fn=FakeEvaluator(),
                             log=lambda m: None, time_limit=0.4)
    assert [r.status for r in results] == ["trained"] * 3 + ["interrupted"]
    assert results[-1].message == "the time limit was spent"
    assert trainer.limits[0] == pytest.approx(0.4, abs=0.05)  # each cell trains with what is left
    assert trainer.limits[0] > trainer.limits[1] > trainer.limits[2] > 0


def test_grid_settings_from_a_preset_under_the_flags(tmp_path):
    args = parse(["experiment", "--config", "atari-small", "--envs", "pong", "--agents", "s3ta-small", "lstm-small",
                  "--seeds", "1", "--total-frames", "1000", "--out", str(tmp_path), "--batch-size", "8"])
    grid = cli.grid_from_args(args)
    config = grid.config(grid.cells()[1])
    assert config.agent == "lstm-small" and config.total_frames == 1000 and config.env == "pong"
    assert config.batch_size == 8 and config.preset.startswith("atari-small@")  # the flag over the preset
    assert config.entropy_cost == 0.003 and list(config.agent_overrides["conv_strides"]) == [4, 2, 2]


def parse(argv):
    parser = argparse.ArgumentParser(prog="s3ta")
    cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_grid_from_flags_and_files(tmp_path):
    args = parse(["experiment", "--envs", "catch", "find-target", "--agents", "s3ta-small", "lstm", "--seeds", "0", "1",
                  "--total-frames", "20000", "--out", str(tmp_path), "--mode", "serial", "--unroll-length", "20",
                  "--agent-config", "lstm_size=64"])
    grid = cli.grid_from_args(args)
    assert grid.envs == ("catch", "find-target") and grid.seeds == (0, 1) and grid.total_frames == 20000
    assert grid.train == {"mode": "serial", "unroll_length": 20, "agent_overrides": {"lstm_size": 64}}
    assert grid.eval_episodes == 30 and grid.eval_greedy is False

    toml = tmp_path / "grid.toml"
    toml.write_text('envs = ["catch"]\nagents = ["lstm"]\nseeds = [3]\ntotal_frames = 100\neval_episodes = 4\n'
                    '[train]\nmode = "serial"\nbatch_size = 8\n')
    from_file = cli.grid_from_args(parse(["experiment", "--grid", str(toml), "--out", str(tmp_path),
                                          "--seeds", "5", "6", "--batch-size", "4", "--eval-greedy"]))
    assert from_file.seeds == (5, 6) and from_file.eval_episodes == 4 and from_file.eval_greedy is True
    assert from_file.train == {"mode": "serial", "batch_size": 4}
    # grid.json written by an experiment is a grid file too
    (tmp_path / "g.json").write_text(json.dumps(from_file.to_dict()))
    assert Grid.from_dict(read_grid_file(tmp_path / "g.json")) == from_file

    with pytest.raises(ValueError, match="--agents"):
        cli.grid_from_args(parse(["experiment", "--envs", "catch", "--seeds", "0", "--total-frames", "5",
                                  "--out", "x"]))


def test_real_training_and_evaluation_of_one_cell(tmp_path, capsys):
    """The real trainer and evaluator, end to end, on one tiny cell (a few updates on catch)."""
    pytest.importorskip("s3ta.training.loop")
    argv = ["experiment", "--envs", "catch", "--agents", "s3ta-small", "--seeds", "0", "--total-frames", "40",
            "--out", str(tmp_path), "--mode", "serial", "--unroll-length", "5", "--batch-size", "2",
            "--eval-episodes", "2", "--log-interval", "1000", "--learner-threads", "1"]
    args = parse(argv)
    assert args.func(args) == 0
    run_dir = tmp_path / "catch" / "s3ta-small" / "seed0"
    assert (run_dir / "DONE").exists() and (run_dir / "eval" / "episodes.csv").exists()
    summary = json.loads((run_dir / "eval" / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["checkpoint_frames"] >= 40
    args = parse(argv)
    assert args.func(args) == 0
    assert "skipped" in capsys.readouterr().out


def test_a_finished_shard_says_its_own_cells_are_done(tmp_path, capsys):
    """Shard 0 of a two-cell grid runs one cell: its summary counts that cell, not the other shard's as
    "not started", and its last line says that this shard is done rather than the whole grid."""
    argv = ["experiment", "--envs", "catch", "--agents", "s3ta-small", "lstm", "--seeds", "0", "--total-frames", "40",
            "--out", str(tmp_path), "--mode", "serial", "--unroll-length", "5", "--batch-size", "2",
            "--eval-episodes", "1", "--log-interval", "1000", "--learner-threads", "1", "--shard", "0/2"]
    args = parse(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "= 2 runs of 40 frames each; shard 0/2 runs 1 of them" in out
    assert "not started" not in out and "all runs trained" not in out
    assert "the 1 run of shard 0/2 trained and evaluated" in out
    assert not (tmp_path / "catch" / "lstm").exists()
