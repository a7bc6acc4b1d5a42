"""`s3ta eval`: episode selection without a bias towards short episodes, the saved CSV and JSON,
the printed scores (raw and human-normalised), and the command line; and the replay of
benchmarks/research/pong_points.py, which plays through the same loop."""

import argparse
import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fixtures.evaluation_runs import make_config, write_checkpoint
from s3ta import agents
from s3ta.agents import AgentInputs, AgentOutput
from s3ta.envs.base import TimeStep
from s3ta.evaluation import cli
from s3ta.evaluation.evaluate import (
    Episode,
    episode_quotas,
    evaluate_checkpoint,
    format_results,
    play,
    read_episode_returns,
    summarize,
)


class LengthByIndexEnv:
    """Env slot b plays episodes of ``b + 1 + k`` steps (k: the slot's episode count so far)
    whose return is 100 * b + k, so every episode says where it came from and in which order."""

    frames_per_step = 1
    observation_shape = (1, 4, 4)
    num_actions = 2
    action_names = ("A", "B")

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.t = np.zeros(num_envs, np.int64)
        self.k = np.zeros(num_envs, np.int64)

    def _timestep(self, done, episode_return, episode_length):
        obs = np.zeros((self.num_envs, *self.observation_shape), np.uint8)
        return TimeStep(obs, np.zeros(self.num_envs, np.float32), done, episode_return, episode_length, {})

    def reset(self, seed=None):
        self.t[:] = 0
        self.k[:] = 0
        n = self.num_envs
        return self._timestep(np.ones(n, bool), np.full(n, np.nan), np.zeros(n, np.int64))

    def step(self, actions):
        self.t += 1
        done = self.t == np.arange(self.num_envs) + 1 + self.k
        returns = np.where(done, 100.0 * np.arange(self.num_envs) + self.k, np.nan)
        lengths = np.where(done, self.t, 0)
        self.t[done] = 0
        self.k[done] += 1
        return self._timestep(done, returns, lengths)

    def close(self):
        pass


class UniformAgent(nn.Module):
    """Equal logits for every action, no state."""

    def __init__(self, num_actions=2):
        super().__init__()
        self.num_actions = num_actions
        self.bias = nn.Parameter(torch.zeros(()))

    def initial_state(self, batch_size):
        return ()

    def forward(self, inputs, state):
        T, B = inputs.done.shape
        return AgentOutput(torch.zeros(T, B, self.num_actions) + self.bias, torch.zeros(T, B)), state


def test_episode_quotas():
    np.testing.assert_array_equal(episode_quotas(10, 4), [3, 3, 2, 2])
    np.testing.assert_array_equal(episode_quotas(3, 3), [1, 1, 1])
    assert episode_quotas(8, 8).sum() == 8
    with pytest.raises(ValueError):
        episode_quotas(0, 2)


def test_play_takes_each_slots_first_episodes_whatever_their_length():
    # Slot 0 finishes episodes fastest; the first 10 episodes to finish would be mostly its own.
    episodes = play(UniformAgent(), LengthByIndexEnv(4), 10, seed=0)
    assert [e.index for e in episodes] == list(range(10))
    assert [e.env_slot for e in episodes] == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    # each slot's episodes are its first ones, in order (return = 100 * slot + k)
    assert [e.episode_return for e in episodes] == [0, 1, 2, 100, 101, 102, 200, 201, 300, 301]
    assert [e.length for e in episodes] == [1, 2, 3, 2, 3, 4, 3, 4, 4, 5]


def test_play_reports_each_counted_episode():
    seen = []
    played = play(UniformAgent(), LengthByIndexEnv(2), 3, on_episode=seen.append)
    assert sorted(seen) == [(0, 0, 0.0, 1), (1, 0, 1.0, 2), (2, 1, 100.0, 2)]
    assert sorted(seen) == played  # each reported with the index it has in the returned (saved) order


def test_play_gives_every_step_before_the_episode_it_ends():
    # per-step traces, as benchmarks/research/pong_points.py keeps them: steps counted per slot since its last end
    env = LengthByIndexEnv(2)
    running, ended, traced = np.zeros(2, np.int64), np.zeros(2, np.int64), []

    def on_step(step):
        running[:] += 1
        ended[step.result.done] = running[step.result.done]
        running[step.result.done] = 0

    played = play(UniformAgent(), env, 5, on_step=on_step,
                  on_episode=lambda e: traced.append((e.index, int(ended[e.env_slot]))))
    assert sorted(traced) == [(e.index, e.length) for e in played]


def test_reset_at_points_restarts_the_agent_after_a_reward_as_at_an_episode_start():
    # benchmarks/research/pong_points.py --reset-at-points: the test of whether lost Pong games are a recurrent state
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "research" / "pong_points.py"
    spec = importlib.util.spec_from_file_location("pong_points", path)
    pong_points = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pong_points)
    torch.manual_seed(0)
    agent = agents.build("s3ta-small", (3, 64, 64), 3).eval()
    T, B = 5, 2
    inputs = AgentInputs(obs=torch.randint(0, 256, (T, B, 3, 64, 64), dtype=torch.uint8),
                         prev_action=torch.randint(0, 3, (T, B)), prev_reward=torch.zeros(T, B),
                         done=torch.zeros(T, B, dtype=torch.bool))
    inputs.prev_reward[2, 0] = -1.0  # env 0 loses a point before step 2
    with torch.no_grad():
        wrapped, _ = pong_points.ResetAtPoints(agent)(inputs, agent.initial_state(B))
        plain, _ = agent(inputs, agent.initial_state(B))
        later = AgentInputs(*(x[2:, :1].clone() for x in inputs))  # env 0 from step 2, as a new episode
        later.done[0] = True
        fresh, _ = agent(later, agent.initial_state(1))
    torch.testing.assert_close(wrapped.policy_logits[2:, 0], fresh.policy_logits[:, 0])
    torch.testing.assert_close(wrapped.policy_logits[:2], plain.policy_logits[:2])  # before the point
    torch.testing.assert_close(wrapped.policy_logits[:, 1], plain.policy_logits[:, 1])  # the other env
    assert not torch.allclose(wrapped.policy_logits[2:, 0], plain.policy_logits[2:, 0], atol=1e-4)


def test_summary_of_an_atari_game_has_the_human_normalised_score():
    episodes = [Episode(i, 0, r, 100) for i, r in enumerate([-21.0, -19.0, -20.0])]
    summary = summarize(episodes, "pong")
    assert summary["return"]["mean"] == pytest.approx(-20.0)
    assert summary["return"]["ci_low"] == pytest.approx(-20.0 - 4.302653 * 1.0 / np.sqrt(3), abs=1e-5)
    norm = summary["normalized"]
    assert norm["suite"] == "atari" and (norm["low"], norm["high"]) == (-20.7, 14.6)
    assert norm["mean"] == pytest.approx(0.7 / 35.3)
    assert norm["ci_high"] == pytest.approx((summary["return"]["ci_high"] + 20.7) / 35.3)
    text = format_results({**summary, "env": "pong", "agent": "s3ta", "checkpoint_frames": 10, "protocol": "paper",
                           "policy": "sampled", "seed": 0}, episodes)
    assert "raw score: mean -20" in text and "human-normalised score: mean 1.98%" in text
    assert "HNS" in text.splitlines()[0]


def test_summary_without_references_is_raw_only():
    summary = summarize([Episode(0, 0, 3.0, 5), Episode(1, 0, 5.0, 5)], "CartPole-v1")
    assert summary["normalized"] is None and summary["return"]["mean"] == 4.0


def test_evaluate_checkpoint_writes_csv_and_json(tmp_path):
    run_dir = tmp_path / "run"
    write_checkpoint(run_dir, make_config("catch", "s3ta-small", seed=5), frames=640)
    summary, episodes = evaluate_checkpoint(run_dir, 5, num_envs=2, progress=False)
    assert summary["episodes"] == len(episodes) == 5
    assert summary["seed"] == 5 and summary["protocol"] == "paper" and summary["policy"] == "sampled"
    assert summary["checkpoint_frames"] == 640 and summary["agent"] == "s3ta-small"
    assert [e.env_slot for e in episodes] == [0, 0, 0, 1, 1]
    assert all(e.length == 7 and e.episode_return in (-1.0, 1.0) for e in episodes)  # catch episodes

    saved = json.loads((run_dir / "eval" / "summary.json").read_text())
    with open(run_dir / "eval" / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    returns = [float(r["return"]) for r in rows]
    assert returns == [e.episode_return for e in episodes]
    np.testing.assert_array_equal(read_episode_returns(run_dir / "eval"), returns)
    assert saved["return"]["mean"] == pytest.approx(np.mean(returns))
    assert saved["normalized"]["mean"] == pytest.approx((np.mean(returns) + 0.75) / 1.75)
    assert [float(r["normalized_score"]) for r in rows] == pytest.approx([(r + 0.75) / 1.75 for r in returns])

    # same seed, same episodes; greedy play is recorded as such, and --out is honoured
    again, _ = evaluate_checkpoint(run_dir, 5, num_envs=2, progress=False, out=tmp_path / "elsewhere")
    assert again["return"] == summary["return"]
    greedy, _ = evaluate_checkpoint(run_dir, 2, greedy=True, progress=False, out=tmp_path / "greedy")
    assert greedy["policy"] == "greedy" and greedy["num_envs"] == 2


def test_evaluate_rejects_an_env_the_agent_does_not_fit(tmp_path):
    write_checkpoint(tmp_path / "run", make_config("catch", "s3ta-small"), frames=10)
    with pytest.raises(ValueError, match="was built for"):
        evaluate_checkpoint(tmp_path / "run", 1, env="find-target", progress=False)


def run_cli(argv):
    parser = argparse.ArgumentParser(prog="s3ta")
    cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_eval_command_prints_and_saves(tmp_path, capsys):
    write_checkpoint(tmp_path / "run", make_config("catch", "s3ta-small"), frames=10)
    assert run_cli(["eval", str(tmp_path / "run"), "--episodes", "3", "--seed", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "raw score: mean" in out and "optimal-normalised score" in out and "95% CI" in out
    assert (tmp_path / "run" / "eval" / "episodes.csv").exists()
    assert json.loads((tmp_path / "run" / "eval" / "summary.json").read_text())["seed"] == 1


def test_eval_command_reports_a_missing_checkpoint(tmp_path, capsys):
    assert run_cli(["eval", str(tmp_path), "--episodes", "1"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
