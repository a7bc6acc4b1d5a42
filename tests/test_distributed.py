"""The data-parallel learner on CPU with gloo (device="cpu" everywhere: on a GPU box `auto` would pick
NCCL, which tests/test_gpu.py runs): two ranks that each take half of a batch make the same update as
one learner on the whole batch (loss, gradient norm, parameters), they stop together on a NaN in one
shard, and `train(num_learners=2)` trains like `num_learners=1`, with ranks in sync after a run and
after resuming a one-learner run with two. A start that cannot work (too few GPUs) leaves nothing behind.

Tolerances: the ranks' parameters must be bitwise equal (every rank applies the same summed
gradient). Against one learner they differ only by float32 summation order (over B/2, then over
ranks, instead of over B): measured 1.5e-8 at most on parameters and their changes (changes up to
3e-3) and 2e-6 relative on the stats. We allow rtol 1e-5 / atol 1e-6 on stats and parameters, and
atol 1e-7 on the parameter changes. Averaging instead of summing the gradients halves grad_norm.
"""

import copy
import dataclasses
import json
import os
import socket

import pytest
import torch
import torch.distributed as dist

from s3ta import agents, envs
from s3ta.agents import AgentInputs
from s3ta.training import TrainConfig, loop, train
from s3ta.training.actor import Actor, allocate_state, allocate_unroll, unroll_specs
from s3ta.training.batch import LearnerBatch
from s3ta.training.checkpoint import load_checkpoint
from s3ta.training.distributed import DataParallelLearner, learn_shard, wrap
from s3ta.training.learner import NonFiniteLossError, learn, make_optimizer, make_scheduler
from s3ta.training.runners import SerialRunner

TINY = dict(env="catch", unroll_length=5, batch_size=4, log_interval=1000.0, mode="parallel", num_actors=1,
            learner_threads=1, device="cpu")
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
        inputs = LearnerBatch(dataclasses.replace(config, num_learners=world), agent, torch.device("cpu"), rank)
        stats = []
        for batch, state in batches:
            shard, shard_state = inputs.load(batch, state)
            stats.append(learn_shard(model, optimizer, scheduler, shard, shard_state, config))
        weights = {k: v.clone() for k, v in agent.state_dict().items()}
        batch, state = batches[0]
        shard, shard_state = inputs.load(batch, state)
        if rank == 1:
            shard["reward"][2, 0] = float("nan")  # a NaN in one rank's shard only
        try:
            learn_shard(model, optimizer, scheduler, shard, shard_state, config)
            nan = "no error"
        except NonFiniteLossError as error:
            nan = str(error)
        unchanged = all(torch.equal(weights[k], v) for k, v in agent.state_dict().items())
        results[name] = (weights, stats, nan, unchanged)
    # the spatial basis is a constant: DDP does not broadcast buffers before a forward pass (rank 1's stays its own)
    config, agent, batches = cases["s3ta-small"]
    model = wrap(copy.deepcopy(agent), torch.device("cpu"))
    if rank == 1:
        model.module.basis.add_(1.0)
    shard, shard_state = LearnerBatch(dataclasses.replace(config, num_learners=world), agent, torch.device("cpu"),
                                      rank).load(*batches[0])
    model(AgentInputs(shard["obs"], shard["prev_action"], shard["reward"], shard["done"]), shard_state)
    results["basis"] = model.module.basis.clone()
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
    assert torch.equal(ranks[1]["basis"], ranks[0]["basis"] + 1.0), "no buffer broadcast before a forward pass"


@pytest.mark.slow
def test_train_with_two_learners_matches_one_and_keeps_ranks_in_sync(tmp_path, monkeypatch):
    checks = []
    close = DataParallelLearner.close

    def checked_close(self):
        checks.append(self.parameters_in_sync())
        close(self)

    monkeypatch.setattr(DataParallelLearner, "close", checked_close)
    # mode 'serial' takes one learner: a serial runner under a parallel-mode config gives both runs the same unrolls
    monkeypatch.setattr(loop, "ParallelRunner", SerialRunner)
    config = TrainConfig(agent="s3ta-small", total_frames=5 * 4 * 3, seed=1, checkpoint_interval=1e-9,
                         keep_checkpoints=5, **TINY)
    one = train(config, tmp_path / "one")
    two = train(dataclasses.replace(config, num_learners=2), tmp_path / "two")
    assert checks == [True], "every rank ended with rank 0's parameters"
    assert two["finished"] and two["updates"] == 3 and (tmp_path / "two" / "DONE").exists()
    assert len(list((tmp_path / "two" / "checkpoints").glob("ckpt-*.pt"))) >= 3  # periodic and final
    saved_one, saved_two = load_checkpoint(one["checkpoint"]), load_checkpoint(two["checkpoint"])
    for key, value in saved_one.model.items():
        torch.testing.assert_close(saved_two.model[key], value, rtol=1e-5, atol=1e-6)
    assert not dist.is_initialized(), "the process group is torn down after training"

    # the one-learner run resumes with two (another machine): the checkpoint's optimizer state reaches the
    # new worker too, and the ranks stay in sync
    resumed = train(TrainConfig(), tmp_path / "one", resume=True, total_frames=5 * 4 * 5, machine={"num_learners": 2})
    assert resumed["finished"] and resumed["updates"] == 5 and checks == [True, True]
    attempts = json.loads((tmp_path / "one" / loop.ATTEMPTS).read_text())
    assert [(a["frames"], a["num_learners"], a["device"]) for a in attempts] == [(0, 1, "cpu"), (60, 2, "cpu")]
    assert TrainConfig.load(tmp_path / "one" / "config.json").num_learners == 2


def test_batch_size_must_split_evenly_among_learners():
    with pytest.raises(ValueError, match="num_learners must be >= 1 and divide batch_size"):
        TrainConfig(batch_size=6, num_learners=4)


def test_a_multi_gpu_start_on_too_few_gpus_leaves_nothing_behind(tmp_path, monkeypatch):
    """The GPU count is checked before the run directory, the actors or the learner processes exist."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    config = TrainConfig(agent="s3ta-small", total_frames=100, **{**TINY, "device": "cuda", "num_learners": 2})
    with pytest.raises(ValueError, match=r"num_learners=2 needs 2 GPUs \(rank i on cuda:i\), torch sees 1"):
        train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_data_parallel_learner_reads_a_shared_host_batch():
    """The other ranks read their columns from shared memory: a batch elsewhere is refused before they start."""
    config = TrainConfig(agent="s3ta-small", **{**TINY, "num_learners": 2})
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    optimizer = make_optimizer(agent, config)
    host = allocate_unroll(unroll_specs(5, 4, (3, 64, 64), 3)), allocate_state(agent, 4)
    with pytest.raises(ValueError, match="shared memory"):
        DataParallelLearner(config, agent, optimizer, make_scheduler(optimizer, config, 20), torch.device("cpu"), 20,
                            host=host)
    assert not dist.is_initialized()
