"""Training machinery: unroll alignment, determinism of serial mode, the parallel runner, config
round-trips and validation, checkpoints (atomic, corrupt, mismatched), resume after SIGKILL, SIGTERM,
NaN stops, and one read of the device per update. Runs are pinned to the CPU (device="cpu"): on CUDA,
cuDNN's weight gradients are not deterministic."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from s3ta import agents, envs
from s3ta.agents import AgentInputs
from s3ta.training import TrainConfig, train
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs
from s3ta.training.checkpoint import CheckpointError, list_checkpoints, load_agent, load_checkpoint
from s3ta.training.cli import config_from_args
from s3ta.training.learner import (
    SMALL_STEP_FLOPS,
    NonFiniteLossError,
    choose_unroll_threads,
    learn,
    make_optimizer,
    make_scheduler,
    torch_threads,
    unroll_step_flops,
)

TINY = dict(env="catch", agent="s3ta-small", unroll_length=5, batch_size=4, log_interval=1000.0, device="cpu")


def small_config(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, "total_frames": 200, "mode": "serial", **changes})


@pytest.mark.parametrize("name", ["s3ta-small", "lstm"])
def test_unrolls_chain_and_reproduce_behaviour_logits(name):
    torch.manual_seed(0)
    env = envs.make("catch", 3, seed=0)
    agent = agents.build(name, env.observation_shape, env.num_actions)
    actor = Actor(env, agent, unroll_length=6, seed=0)
    specs = unroll_specs(6, 3, env.observation_shape, env.num_actions)
    previous = None
    for _ in range(4):
        unroll, state = allocate_unroll(specs), allocate_state(agent, 3)
        actor.fill(unroll, state)
        # prev_action[t] is the action taken at t - 1 (except where an episode starts)
        assert torch.equal(unroll["prev_action"][1:], unroll["action"][:-1])
        if previous is not None:  # step 0 repeats the previous unroll's last step
            for key in ("obs", "action", "behaviour_logits", "done", "reward"):
                assert torch.equal(unroll[key][0], previous[key][-1])
        with torch.no_grad():  # unchanged weights: the learner's forward is the behaviour policy
            output, _ = agent(AgentInputs(unroll["obs"], unroll["prev_action"], unroll["reward"], unroll["done"]), state)
        torch.testing.assert_close(output.policy_logits, unroll["behaviour_logits"])
        previous = unroll
    # every finished episode of catch returns +1 or -1 and lasts 7 steps
    ended = ~torch.isnan(previous["episode_return"])
    assert set(previous["episode_return"][ended].tolist()) <= {-1.0, 1.0}


def test_serial_mode_is_deterministic(tmp_path):
    first = train(small_config(seed=3), tmp_path / "a")
    second = train(small_config(seed=3), tmp_path / "b")
    other = train(small_config(seed=4), tmp_path / "c")
    weights = [load_checkpoint(r["checkpoint"]).model for r in (first, second, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
    assert first["frames"] >= 200 and first["finished"]


def test_parallel_mode_writes_a_complete_run(tmp_path):
    config = TrainConfig(**{**TINY, "total_frames": 400, "mode": "parallel", "num_actors": 2, "batch_size": 4})
    summary = train(config, tmp_path)
    assert summary["finished"] and summary["frames"] >= 400
    assert (tmp_path / "DONE").exists()
    assert TrainConfig.load(tmp_path / "config.json") == config
    kinds = {json.loads(line)["kind"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()}
    assert kinds >= {"episode"}
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    agent, checkpoint = load_agent(tmp_path)
    assert checkpoint.counters["frames"] == summary["frames"] and agent.name == "s3ta-small"


@pytest.mark.parametrize("name, own_part", [("lstm-small", "projection.weight"),
                                             ("fixed-query-small", "fixed_queries"),
                                             ("l2-keys-small", "convlstm.hidden_conv.weight")])
def test_comparison_agents_train_on_catch(tmp_path, name, own_part):
    # s3ta-small's comparison agents (issue 36) through the whole loop; each one's own part learns
    config = small_config(agent=name, total_frames=400, log_interval=1e-9)
    torch.manual_seed(config.seed)
    initial = agents.build(name, (3, 64, 64), 3).state_dict()
    summary = train(config, tmp_path)
    assert summary["finished"]
    agent, _ = load_agent(tmp_path)
    trained = agent.state_dict()
    assert not torch.equal(trained[own_part], initial[own_part])
    assert all(torch.isfinite(value).all() for value in trained.values() if value.is_floating_point())
    updates = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
               if '"update"' in line]
    assert updates and all(math.isfinite(u["loss/total"]) for u in updates)
    assert ("attention_entropy/head0" in updates[-1]) == (name != "lstm-small")


def test_checkpoints_keep_the_last_k_and_hold_the_full_state(tmp_path):
    config = small_config(total_frames=400, checkpoint_interval=1e-9, keep_checkpoints=2)
    train(config, tmp_path)
    kept = list_checkpoints(tmp_path)
    assert len(kept) == 2 and not list((tmp_path / "checkpoints").glob("*.tmp"))
    checkpoint = load_checkpoint(kept[-1])
    assert checkpoint.optimizer["state"], "optimizer moments are saved"
    assert checkpoint.scheduler["last_epoch"] == checkpoint.counters["updates"]
    assert checkpoint.config == config.to_dict() and "torch" in checkpoint.rng


@pytest.mark.parametrize("hold, expected", [(0, [1.0, 0.75, 0.5, 0.25, 0.0]), (500, [1.0, 1.0, 0.5, 0.25, 0.0])])
def test_learning_rate_decays_linearly_to_zero(hold, expected):
    config = small_config(total_frames=1000, learning_rate=1.0, lr_constant_frames=hold)
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, frames_per_update=250)
    rates = []
    for _ in range(5):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected)


def test_corrupt_and_mismatched_checkpoints_give_one_line_errors(tmp_path):
    summary = train(small_config(), tmp_path / "run")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(corrupt)
    assert "corrupt" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")

    # resuming a run whose checkpoint belongs to another agent names the mismatch
    run = tmp_path / "run"
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "agent": "lstm"}))
    with pytest.raises(CheckpointError, match="another agent") as error:
        train(small_config(), run, resume=True)
    assert "\n" not in str(error.value)
    assert Path(summary["checkpoint"]).exists()


def test_agent_configs_compare_with_every_field_filled_in(tmp_path):
    """A checkpoint saved before a config field existed still matches a run that has it at its
    default; a field that really differs is named, alone."""
    from s3ta.training.checkpoint import check_compatible

    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    checkpoint = load_checkpoint(train(small_config(), tmp_path / "run")["checkpoint"])
    description = agents.describe(agent)
    older = {**checkpoint.agent, "config": {k: v for k, v in checkpoint.agent["config"].items()
                                            if k not in ("convlstm_init_gain", "query_content_bias_gain")}}
    check_compatible(checkpoint._replace(agent=older), description)
    changed = agents.describe(agents.build("s3ta-small", (3, 64, 64), 3, num_heads=2))
    with pytest.raises(CheckpointError, match=r"another agent config: num_heads=4 \(checkpoint\) vs 2 \(this run\)$"):
        check_compatible(checkpoint._replace(agent=older), changed)
    newer = {**checkpoint.agent, "config": {**checkpoint.agent["config"], "field_of_a_later_version": 2}}
    with pytest.raises(CheckpointError, match=r"comes from a newer s3ta: .*\(field_of_a_later_version\)"):
        check_compatible(checkpoint._replace(agent=newer), description)


def test_cli_reports_a_corrupt_checkpoint_in_one_line(tmp_path):
    train(small_config(total_frames=400), tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(b"\x00garbage")
    result = subprocess.run([sys.executable, "-m", "s3ta", "train", "--out", str(tmp_path), "--resume"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "corrupt" in result.stderr


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path):
    train(small_config(), tmp_path)
    with pytest.raises(CheckpointError, match="--resume"):
        train(small_config(), tmp_path)


@pytest.mark.parametrize("unroll_threads", [None, 1])
def test_nonfinite_loss_raises_a_clear_error(unroll_threads):
    config = small_config()
    threads = torch.get_num_threads()
    env = envs.make("catch", 2, seed=0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions)
    actor = Actor(env, agent, 5, seed=0)
    unroll, state = allocate_unroll(unroll_specs(5, 2, env.observation_shape, 3)), allocate_state(agent, 2)
    actor.fill(unroll, state)
    unroll["reward"][2, 0] = float("nan")
    optimizer = make_optimizer(agent, config)
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="loss became nan"):
        learn(agent, optimizer, make_scheduler(optimizer, config, 10), unroll, state, config, unroll_threads)
    assert all(torch.equal(before[k], v) for k, v in agent.state_dict().items()), "no update on a bad loss"
    assert not optimizer.state and optimizer.param_groups[0]["lr"] == config.learning_rate, "nor an optimizer step"
    assert torch.get_num_threads() == threads


def test_an_update_reads_the_device_once(monkeypatch):
    """No per-statistic .item() and no `if tensor` between forward, backward and the optimizer step: on a GPU
    each is a wait of the host for the device. The one read is learner.read_stats's; the agents' episode
    starts (s3ta/agents/core.py, episode_starts) are read before their time loop, outside this module's reach."""
    config = small_config()
    env = envs.make("catch", 2, seed=0)
    agent = agents.build("s3ta-small", env.observation_shape, env.num_actions)
    unroll, state = allocate_unroll(unroll_specs(5, 2, env.observation_shape, 3)), allocate_state(agent, 2)
    Actor(env, agent, 5, seed=0).fill(unroll, state)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 10)
    package = Path(agents.__file__).parents[1]
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        def counted(self, *args, _read=getattr(torch.Tensor, name), _name=name):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if caller.is_relative_to(package):  # torch's own reads of CPU step counters do not count
                reads.append(f"{_name} in {caller.relative_to(package)}:{sys._getframe(1).f_code.co_name}")
            return _read(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    stats = learn(agent, optimizer, scheduler, unroll, state, config)
    monkeypatch.undo()
    assert sorted(reads) == ["tolist in agents/core.py:episode_starts", "tolist in training/learner.py:read_stats"]
    assert set(stats) >= {"loss/total", "grad_norm", "learning_rate", "attention_entropy/head3"}


@pytest.mark.parametrize("name", ["s3ta-small", "lstm", "feedforward"])
def test_time_loop_on_its_own_threads_is_the_same_update(name):
    """learn() with unroll_threads cuts the graph at the encoder's output and carries the gradient across."""
    config = small_config(agent=name)
    env = envs.make("catch", 2, seed=0)
    torch.manual_seed(0)
    agent = agents.build(name, env.observation_shape, env.num_actions)
    unroll, state = allocate_unroll(unroll_specs(5, 2, env.observation_shape, 3)), allocate_state(agent, 2)
    Actor(env, agent, 5, seed=0).fill(unroll, state)
    results = []
    for unroll_threads in (None, 1):
        model = copy.deepcopy(agent)
        optimizer = make_optimizer(model, config)
        stats = learn(model, optimizer, make_scheduler(optimizer, config, 10), unroll, state, config, unroll_threads)
        results.append((dict(model.named_parameters()), stats))
    (whole, whole_stats), (split, split_stats) = results
    assert split_stats == pytest.approx(whole_stats, rel=1e-5, abs=1e-6)
    for key, before in agent.named_parameters():
        assert not torch.equal(split[key], before), f"{key} got no gradient through the split"
        torch.testing.assert_close(split[key], whole[key])


def test_time_loop_threads_follow_the_size_of_a_step():
    cpu, config = torch.device("cpu"), TrainConfig(batch_size=32)
    small, big = (agents.build(name, (3, 64, 64), 3) for name in ("s3ta-small", "s3ta"))
    with torch_threads(2):
        assert unroll_step_flops(small, 32) < SMALL_STEP_FLOPS < unroll_step_flops(big, 32)
        assert choose_unroll_threads(small, config, cpu) == 1
        assert choose_unroll_threads(big, config, cpu) is None  # the learner's own threads: no split
        assert choose_unroll_threads(big, TrainConfig(batch_size=32, unroll_threads=1), cpu) == 1
        assert choose_unroll_threads(small, TrainConfig(batch_size=32, num_learners=2), cpu) is None
        assert choose_unroll_threads(small, config, torch.device("cuda")) is None
    with torch_threads(1):
        assert choose_unroll_threads(small, config, cpu) is None
    with pytest.raises(ValueError, match="unroll_threads"):
        TrainConfig(unroll_threads=-1)


@pytest.mark.parametrize("num_actors, expected", [(1, 32), (2, 16), (3, 8), (7, 4), (15, 2), (40, 1)])
def test_default_envs_per_actor_divides_the_batch_for_any_actor_count(num_actors, expected):
    config = TrainConfig(batch_size=32, num_actors=num_actors)  # e.g. 3 actors on a 4-core machine
    assert config.actor_batch == expected and config.batch_size % config.actor_batch == 0


def test_config_precedence_defaults_file_flags(tmp_path):
    import argparse

    saved = tmp_path / "config.json"
    TrainConfig(env="find-target", batch_size=8, total_frames=123).save(saved)
    args = argparse.Namespace(config=str(saved), batch_size=16, agent_overrides=[("num_heads", 6)])
    config = config_from_args(args)
    assert (config.env, config.batch_size, config.total_frames) == ("find-target", 16, 123)
    assert config.agent_overrides == {"num_heads": 6}
    with pytest.raises(ValueError, match="no config fields"):
        TrainConfig(agent_overrides={"heads": 2})
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)


@pytest.mark.parametrize("overrides, message", [
    ({"num_heads": "abc"}, "agent config num_heads must be an integer like 4, got 'abc'"),
    ({"conv_channels": 16}, "agent config conv_channels must be a list of integers like [16, 32, 32], got 16"),
    ({"conv_channels": [16, "x", 32]}, "must be a list of integers"),
    ({"num_heads": True}, "num_heads must be an integer"),
    ({"query_init_gain": "big"}, "query_init_gain must be a number like 1.0"),
    ({"padding_mode": 0}, 'padding_mode must be a string like "zeros"'),
])
def test_agent_overrides_of_the_wrong_type_are_named(overrides, message):
    with pytest.raises(ValueError) as error:
        TrainConfig(agent_overrides=overrides)
    assert message in str(error.value) and "\n" not in str(error.value)
    TrainConfig(agent_overrides={"query_init_gain": 2, "conv_channels": [8, 16, 16]})  # an int is a number


def test_an_experiment_names_a_wrong_agent_override_too():
    from s3ta.evaluation.experiment import Grid

    with pytest.raises(ValueError, match="agent config num_heads must be an integer like 4, got 'abc'"):
        Grid(envs=("catch",), agents=("s3ta-small",), seeds=(0,), total_frames=100,
             train={"agent_overrides": {"num_heads": "abc"}})


def test_serial_mode_takes_one_learner():
    with pytest.raises(ValueError, match="num_learners must be 1 in mode 'serial'.*mode 'parallel'"):
        TrainConfig(batch_size=4, num_learners=2, mode="serial")
    TrainConfig(batch_size=4, num_learners=2, mode="parallel")


def _wait_for(predicate, timeout: float, process: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited early: {process.communicate()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("timed out")


def _train_command(out: Path, total_frames: int) -> list[str]:
    return [sys.executable, "-m", "s3ta", "train", "--out", str(out), "--env", "catch", "--agent", "s3ta-small",
            "--total-frames", str(total_frames), "--unroll-length", "5", "--batch-size", "4", "--num-actors", "1",
            "--checkpoint-interval", "0.5", "--log-interval", "1", "--device", "cpu"]


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_checkpoint(tmp_path):
    process = subprocess.Popen(_train_command(tmp_path, 10**9), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lambda: any(load_checkpoint(p).counters["frames"] > 0 for p in list_checkpoints(tmp_path)), 120, process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    saved = load_checkpoint(tmp_path)
    frames = saved.counters["frames"]

    total = frames + 200
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "total_frames": total}))
    summary = train(TrainConfig(), tmp_path, resume=True)
    assert summary["frames"] == frames + 200 and summary["finished"]
    assert summary["updates"] == saved.counters["updates"] + 10
    resumed_log = (tmp_path / "metrics.jsonl").read_text()
    assert resumed_log  # the log continues in the same file
    lines = [json.loads(line) for line in resumed_log.splitlines()]
    assert any(r["kind"] == "episode" and r["frames"] > frames for r in lines), "the resumed run logged new episodes"
    assert lines[-1]["frames"] <= total


@pytest.mark.slow
def test_sigterm_stops_cleanly_with_a_checkpoint(tmp_path):
    process = subprocess.Popen(_train_command(tmp_path, 10**9), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _wait_for(lambda: (tmp_path / "metrics.jsonl").exists() and list_checkpoints(tmp_path), 120, process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stdout
    assert load_checkpoint(tmp_path).counters["frames"] > 0


@pytest.mark.slow
def test_parallel_training_runs_on_atari(tmp_path):
    config = TrainConfig(env="breakout", agent="s3ta-small", total_frames=2 * 4 * 2 * 4, unroll_length=4,
                         batch_size=2, num_actors=1, mode="parallel", log_interval=1000.0, device="cpu")
    summary = train(config, tmp_path)
    assert summary["finished"] and summary["frames"] == 64  # frames count action repeats (4 per step)
