"""The Python API (docs/api.md): `s3ta.load` gives a Policy whose `step` acts as `s3ta eval` and
`s3ta explain record` act (the same AgentRunner), returning attention and its what/where logits."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import s3ta
from fixtures.evaluation_runs import make_config, write_checkpoint
from s3ta.agents import AgentInputs
from s3ta.rollout import run_episodes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_example_in_docs_api_runs_as_written(capsys):
    """The first ```python block of docs/api.md, executed as it stands."""
    code = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S).group(1)
    exec(compile(code, str(DOCS), "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert re.search(r"mean return over \d+ episodes: [+-]\d\.\d\d", out), out
    assert "4 heads" in out and "of the 8x8 map" in out


def test_step_plays_as_evaluation_does_and_returns_attention_with_its_logits():
    """Stepping the policy through its env gives the actions and outputs of run_episodes (the loop of
    `s3ta eval`) on the same seeds, and the attention is the softmax of content + spatial logits."""
    policy = s3ta.load("zoo:catch-s3ta-small", seed=3)
    env = policy.make_env(num_envs=2, seed=5)
    reference = run_episodes(policy.agent, policy.make_env(num_envs=2, seed=5), num_episodes=3, seed=3, max_steps=12)
    timestep = env.reset(seed=3)
    for expected in reference:
        step = policy.step(timestep)
        np.testing.assert_array_equal(step.action, expected.action)
        np.testing.assert_allclose(step.policy_logits, expected.output.policy_logits.numpy(), rtol=1e-6)
        np.testing.assert_allclose(step.attention, expected.output.attention.numpy(), rtol=1e-6)
        timestep = env.step(step.action)
    assert step.attention.shape == step.content_logits.shape == step.spatial_logits.shape == (2, 4, 8, 8)
    logits = torch.from_numpy(step.content_logits + step.spatial_logits).flatten(-2)
    np.testing.assert_allclose(torch.softmax(logits, -1).view(2, 4, 8, 8).numpy(), step.attention, atol=1e-5)
    assert step.baseline.shape == (2,) and step.action.dtype == np.int64


def test_raw_pixels_step_as_timesteps_do_and_reset_starts_over():
    """Raw observations (done True on the first step by default) give what TimeSteps give, carrying the
    recurrent state between steps; reset() forgets it."""
    greedy = s3ta.load("zoo:catch-s3ta-small", greedy=True)
    raw = s3ta.load("zoo:catch-s3ta-small", greedy=True)
    env = greedy.make_env(seed=0)
    timestep = env.reset(seed=0)
    first = None
    for _ in range(5):
        step = greedy.step(timestep)
        mine = raw.step(timestep.obs, reward=timestep.reward, done=None if first is None else timestep.done)
        first = first or (timestep.obs, step)
        np.testing.assert_array_equal(step.action, mine.action)
        np.testing.assert_allclose(step.policy_logits, mine.policy_logits, rtol=1e-6)
        timestep = env.step(step.action)
    # the state is carried: the first observation again, mid-episode, is not the first step again
    again = raw.step(first[0])
    assert not np.allclose(again.attention, first[1].attention)
    raw.reset()
    np.testing.assert_allclose(raw.step(first[0]).attention, first[1].attention, rtol=1e-6)
    # the agent's own forward pass on that first step, for a reference outside the runner
    agent = greedy.agent
    with torch.no_grad():
        output, _ = agent(AgentInputs(torch.from_numpy(first[0])[None], torch.zeros(1, 1, dtype=torch.long),
                                      torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool)), agent.initial_state(1))
    np.testing.assert_allclose(output.attention[0].numpy(), first[1].attention, rtol=1e-6)


def test_wrong_observations_are_refused_with_the_expected_shape():
    policy = s3ta.load("zoo:catch-s3ta-small")
    with pytest.raises(ValueError, match=r"\[B, C, H, W\] = \[B, 3, 64, 64\].*got shape \(64, 64, 3\)"):
        policy.step(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        policy.step(np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"done must be \[B\] = \[2\]"):
        policy.step(np.zeros((2, 3, 64, 64), np.uint8), done=np.ones(3, bool))
    policy.step(np.zeros((2, 3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="reset"):
        policy.step(np.zeros((1, 3, 64, 64), np.uint8))


def test_a_run_directory_loads_its_newest_readable_checkpoint_with_a_warning(tmp_path):
    run = tmp_path / "run"
    write_checkpoint(run, make_config("catch", "s3ta-small"), frames=10)
    newest = write_checkpoint(run, make_config("catch", "s3ta-small"), frames=20)
    newest.write_bytes(newest.read_bytes()[:100])  # cut short, as by a machine lost mid-write
    with pytest.warns(UserWarning, match=f"skipped unreadable newer checkpoint.*{newest.name}"):
        policy = s3ta.load(run)
    assert policy.checkpoint.counters["frames"] == 10 and policy.env_id == "catch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s3ta.load(run / "checkpoints" / "ckpt-000000000010.pt")
