"""Learning tests, bounded by frames (not time): agents must actually get better on built-in tasks,
in both acting modes. Thresholds are returns on `catch` (random policy -0.75, optimal 1.0): the
mean of the last 100 training episodes and a greedy evaluation of the final checkpoint. The
budgets are where single runs were seen to pass comfortably (docs/benchmarks.md).
"""

import numpy as np
import pytest

from s3ta import envs
from s3ta.evaluation.evaluate import play
from s3ta.training import TrainConfig, train
from s3ta.training.config import load_preset
from s3ta.training.checkpoint import load_agent

pytestmark = pytest.mark.slow  # minutes each


def greedy_return(run_dir, episodes: int = 100) -> float:
    agent, _ = load_agent(run_dir)
    played = play(agent, envs.make("catch", 20, seed=123), episodes, greedy=True, seed=123)
    return float(np.mean([episode.episode_return for episode in played]))


# The init gains of atari-small@4, the version these runs used (its deviations say why): keys and content
# queries large enough that the heads are content-driven from the first step. With PyTorch's default init the
# heads stay near uniform for ~150k frames on catch before the return leaves the random level
# (docs/notebook/catch.md).
CONTENT_DRIVEN_INIT = {key: value for key, value in load_preset("atari-small@4")["config"]["agent_overrides"].items()
                       if key in ("convlstm_init_gain", "query_content_bias_gain")}


def test_s3ta_small_learns_catch_in_serial_mode(tmp_path):
    # Serial mode is deterministic: this run reached 0.98 (last 100 episodes) and 1.0 greedy at 100k frames, and
    # 0.72 / 0.84 at 60k; the default init gave -0.76 at 100k.
    config = TrainConfig(env="catch", agent="s3ta-small", agent_overrides=CONTENT_DRIVEN_INIT, total_frames=100_000,
                         unroll_length=20, batch_size=8, learning_rate=2e-3, mode="serial", log_interval=1e9)
    summary = train(config, tmp_path)
    assert summary["mean_recent_return"] > 0.7, summary
    assert greedy_return(tmp_path) > 0.8


NARROW_RESNET = {"stage_channels": [8, 16, 16], "hidden_size": 128}  # the paper's architecture, narrower: faster tests


def test_lstm_baseline_learns_catch_in_parallel_mode(tmp_path):
    config = TrainConfig(env="catch", agent="lstm", agent_overrides={**NARROW_RESNET, "lstm_size": 128},
                         total_frames=80_000, unroll_length=20, batch_size=16, learning_rate=1e-3, mode="parallel",
                         num_actors=1, log_interval=1e9)
    # Parallel mode is not deterministic. One run: -0.35 by 17k frames, -0.2 by 48k, at the end 0.0 (last 100
    # episodes) and 0.2 greedy. The thresholds (a third of the balls caught, then nearly half, against 1 in 8 by
    # a random policy) leave ~3 standard errors of the 100-episode means below that run.
    summary = train(config, tmp_path)
    assert summary["mean_recent_return"] > -0.3, summary
    assert greedy_return(tmp_path) > -0.1


def test_feedforward_baseline_learns_catch_in_serial_mode(tmp_path):
    config = TrainConfig(env="catch", agent="feedforward", agent_overrides=NARROW_RESNET, total_frames=30_000,
                         unroll_length=20, batch_size=16, learning_rate=1e-3, mode="serial", log_interval=1e9)
    summary = train(config, tmp_path)
    assert summary["mean_recent_return"] > 0.5, summary
    assert greedy_return(tmp_path) > 0.7
