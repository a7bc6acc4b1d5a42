"""The data-parallel learner on CPU with gloo: two ranks that each take half of a batch make the
same update as one learner on the whole batch (loss, gradient norm, parameters), they stop together
on a NaN in one shard, and `train(num_learners=2)` trains like `num_learners=1`, with ranks in sync
after a run and after resuming it.

Tolerances: the ranks' parameters must be bitwise equal (every rank applies the same summed
gradient). Against one learner they differ only by float32 summation order (over B/2, then over
ranks, instead of over B): measured 1.5e-8 at most on parameters and their changes (changes up to
3e-3) and 2e-6 relative on the stats. We allow rtol 1e-5 / atol 1e-6 on stats and parameters, and
atol 1e-7 on the parameter changes. Averaging instead of summing the gradients halves grad_norm.
"""

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist

from s3ta import agents, envs
from s3ta.training import TrainConfig, train
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs
from s3ta.training.checkpoint import load_checkpoint
from s3ta.training.distributed import DataParallelLearner, learn_shard, split_batch, wrap
from s3ta.training.learner import NonFiniteLossError, learn, make_optimizer, make_scheduler

TINY = dict(env="catch", unroll_length=5, batch_size=4, log_interval=1000.0, mode="serial", learner_threads=1)
CASES = {  # a recurrent attention agent (4 state tensors) and a narrow feedforward one (no state)
    "s3ta-small": TrainConfig(agent="s3ta-small", grad_norm_clip=1e-3, **TINY),
    "feedforward": TrainConfig(agent="feedforward", agent_overrides={"stage_channels": [8], "blocks_per_stage": 1,
                                                                     "hidden_size": 32}, **TINY),
}
UPDATES = 2  # the second update also checks that the RMSProp state stays equal across ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _case(config: TrainConfig):
    """Initial weights and UPDATES batches of real unrolls (with episode ends) for ``config``."""
    torch.manual_seed(0)
    env = envs.make(config.env, config.batch_size, seed=0)
    agent = agents.build(config.agent, env.observation_shape, env.num_actions, **config.agent_overrides)
    actor = Actor(env, agent, config.unroll_length, seed=0)
    specs = unroll_specs(config.unroll_length, config.batch_size, env.observation_shape, env.num_actions)
    batches = []
    for _ in range(UPDATES):
        unroll, state = allocate_unroll(specs), allocate_state(agent, config.batch_size)
        actor.fill(unroll, state)
        batches.append((unroll, state))
    return agent, batches


def _one_learner(config, agent, batches):
    agent = copy.deepcopy(agent)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 100)
    stats = [learn(agent, optimizer, scheduler, batch, state, config) for batch, state in batches]
    return agent.state_dict(), stats


def _rank_main(rank: int, world: int, port: int, cases: dict, out: str) -> None:
    """One learner rank: the library API (process group, wrap, learn_shard) on its half of each batch."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    for name, (config, agent, batches) in cases.items():
        agent = copy.deepcopy(agent)  # the spawn arguments share memory between the ranks
        model = wrap(agent, torch.device("cpu"))
        optimizer = make_optimizer(agent, config)
        scheduler = make_scheduler(optimizer, config, 100)
        stats = []
        for batch, state in batches:
            shard, shard_state = split_batch(batch, state, world)[rank]
            stats.append(learn_shard(model, optimizer, scheduler, shard, shard_state, config))
        weights = {k: v.clone() for k, v in agent.state_dict().items()}
        batch, state = batches[0]
        shard, shard_state = split_batch(batch, state, world)[rank]
        if rank == 1:
            shard["reward"][2, 0] = float("nan")  # a NaN in one rank's shard only
        try:
            learn_shard(model, optimizer, scheduler, shard, shard_state, config)
            nan = "no error"
        except NonFiniteLossError as error:
            nan = str(error)
        unchanged = all(torch.equal(weights[k], v) for k, v in agent.state_dict().items())
        results[name] = (weights, stats, nan, unchanged)
    torch.save(results, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_on_half_batches_make_the_one_learner_update(tmp_path):
    cases, expected = {}, {}
    for name, config in CASES.items():
        agent, batches = _case(config)
        cases[name] = (config, agent, batches)
        expected[name] = _one_learner(config, agent, batches)
    assert expected["s3ta-small"][1][0]["grad_norm"] > CASES["s3ta-small"].grad_norm_clip, "clipping is exercised"

    torch.multiprocessing.spawn(_rank_main, args=(2, _free_port(), cases, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for name, (config, agent, _) in cases.items():
        expected_weights, expected_stats = expected[name]
        (weights0, stats0, nan0, unchanged0), (weights1, stats1, nan1, unchanged1) = ranks[0][name], ranks[1][name]
        assert all(torch.equal(weights0[k], weights1[k]) for k in weights0), "ranks hold identical weights"
        assert stats0 == stats1
        initial = agent.state_dict()
        for key, value in expected_weights.items():
            torch.testing.assert_close(weights0[key], value, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(weights0[key] - initial[key], value - initial[key], rtol=1e-3, atol=1e-7)
        for ours, theirs in zip(stats0, expected_stats):
            assert ours.keys() == theirs.keys()
            for key in ours:
                assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6), key
        # a NaN in rank 1's half stops both ranks before any change
        assert "loss became nan" in nan0 and "loss became nan" in nan1
        assert unchanged0 and unchanged1


@pytest.mark.slow
def test_train_with_two_learners_matches_one_and_keeps_ranks_in_sync(tmp_path, monkeypatch):
    checks = []
    close = DataParallelLearner.close

    def checked_close(self):
        checks.append(self.parameters_in_sync())
        close(self)

    monkeypatch.setattr(DataParallelLearner, "close", checked_close)
    config = TrainConfig(agent="s3ta-small", total_frames=5 * 4 * 3, seed=1, checkpoint_interval=1e-9,
                         keep_checkpoints=5, **TINY)
    one = train(config, tmp_path / "one")
    two = train(TrainConfig(**{**config.to_dict(), "num_learners": 2}), tmp_path / "two")
    assert checks == [True], "every rank ended with rank 0's parameters"
    assert two["finished"] and two["updates"] == 3 and (tmp_path / "two" / "DONE").exists()
    assert len(list((tmp_path / "two" / "checkpoints").glob("ckpt-*.pt"))) >= 3  # periodic and final
    saved_one, saved_two = load_checkpoint(one["checkpoint"]), load_checkpoint(two["checkpoint"])
    for key, value in saved_one.model.items():
        torch.testing.assert_close(saved_two.model[key], value, rtol=1e-5, atol=1e-6)
    assert not dist.is_initialized(), "the process group is torn down after training"

    # resuming hands the checkpoint's optimizer state to the new worker too: the ranks stay in sync
    saved_config = tmp_path / "two" / "config.json"
    TrainConfig(**{**TrainConfig.load(saved_config).to_dict(), "total_frames": 5 * 4 * 5}).save(saved_config)
    resumed = train(TrainConfig(), tmp_path / "two", resume=True)
    assert resumed["finished"] and resumed["updates"] == 5 and checks == [True, True]


def test_batch_size_must_split_evenly_among_learners():
    with pytest.raises(ValueError, match="num_learners must be >= 1 and divide batch_size"):
        TrainConfig(batch_size=6, num_learners=4)
