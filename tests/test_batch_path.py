"""The batch's way from the actors to the learners (s3ta.training.batch), checked on the CPU: runners
copy unrolls into a host batch allocated once; each learner takes exactly its columns of what the loss
reads (LEARN_KEYS), into buffers allocated once, and the episode statistics (LOG_KEYS) stay on the
host. The device branch runs here on torch's "meta" device (shapes, keys, no data); pinned memory and
real copies to a GPU run in tests/test_gpu.py, where CUDA is."""

import pytest
import torch

from s3ta import agents
from s3ta.agents import AgentInputs
from s3ta.training import TrainConfig, batch as batch_module
from s3ta.training.batch import LEARN_KEYS, LOG_KEYS, LearnerBatch, allocate_batch, write_unroll
from s3ta.training.actor import allocate_state, allocate_unroll, unroll_specs
from s3ta.training.runners import ParallelRunner

CPU = torch.device("cpu")
T, B = 5, 4


def config(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(env="catch", agent="s3ta-small", unroll_length=T, batch_size=B, mode="parallel",
                                 device="cpu", num_actors=2), **changes})


@pytest.fixture(scope="module")
def agent():
    torch.manual_seed(0)
    return agents.build("s3ta-small", (3, 64, 64), 3)


def random_unroll(agent, num_envs: int, seed: int):
    """An unroll [T + 1, E] and agent state [E] of random values (every column different)."""
    generator = torch.Generator().manual_seed(seed)
    unroll = allocate_unroll(unroll_specs(T, num_envs, agent.observation_shape, agent.num_actions))
    for key, tensor in unroll.items():
        if tensor.dtype == torch.bool:
            tensor.copy_(torch.rand(tensor.shape, generator=generator) < 0.5)
        elif tensor.dtype.is_floating_point:
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        else:
            tensor.copy_(torch.randint(0, 200, tensor.shape, generator=generator))
    state = tuple(torch.randn(s.shape, generator=generator) for s in allocate_state(agent, num_envs))
    return unroll, state


def test_runners_write_unrolls_into_the_host_batch_in_place(agent):
    batch, state = allocate_batch(config(), agent, CPU)
    addresses = [t.data_ptr() for t in (*batch.values(), *state)]
    pieces = [random_unroll(agent, 2, seed) for seed in (1, 2)]
    for position, (unroll, unroll_state) in enumerate(pieces):
        write_unroll(batch, state, 2 * position, unroll, unroll_state)
    for key in batch:  # the batch is the pieces side by side, as torch.cat made it before
        assert torch.equal(batch[key], torch.cat([unroll[key] for unroll, _ in pieces], dim=1)), key
    for i, tensor in enumerate(state):
        assert torch.equal(tensor, torch.cat([unroll_state[i] for _, unroll_state in pieces]))
    assert [t.data_ptr() for t in (*batch.values(), *state)] == addresses, "no new memory per batch"

    longer, _ = random_unroll(agent, 2, 3)
    longer["obs"] = torch.zeros(T + 2, 2, *agent.observation_shape, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"obs is \(7, 2, 3, 64, 64\) torch.uint8, expected \(6, 2, 3, 64, 64\)"):
        write_unroll(batch, state, 0, longer, pieces[0][1])
    with pytest.raises(ValueError, match="expected"):  # past the last column
        write_unroll(batch, state, 3, *pieces[0])


@pytest.mark.parametrize("num_learners", [1, 2, 4])
def test_each_learner_takes_its_columns_of_what_the_loss_reads(agent, num_learners):
    batch, state = allocate_batch(config(num_learners=num_learners), agent, CPU)
    write_unroll(batch, state, 0, *random_unroll(agent, B, seed=7))
    share = B // num_learners
    for rank in range(num_learners):
        learner = LearnerBatch(config(num_learners=num_learners), agent, CPU, rank)
        unroll, unroll_state = learner.load(batch, state)
        assert tuple(unroll) == LEARN_KEYS and not set(unroll) & set(LOG_KEYS)
        columns = slice(rank * share, (rank + 1) * share)
        for key in LEARN_KEYS:
            assert unroll[key].shape == (T + 1, share, *batch[key].shape[2:]), key
            assert torch.equal(unroll[key], batch[key][:, columns]), key
            # one learner on the CPU reads the host batch itself; several copy their columns out of it
            shares_memory = unroll[key].untyped_storage().data_ptr() == batch[key].untyped_storage().data_ptr()
            assert shares_memory == (num_learners == 1), key
        for mine, host in zip(unroll_state, state, strict=True):
            assert mine.shape[0] == share and torch.equal(mine, host[columns])
        again, _ = learner.load(batch, state)
        assert all(again[key].data_ptr() == unroll[key].data_ptr() for key in LEARN_KEYS), "buffers allocated once"


def test_the_device_branch_moves_only_the_learn_keys_into_buffers_allocated_once(agent):
    batch, state = allocate_batch(config(num_learners=2), agent, CPU)
    learner = LearnerBatch(config(num_learners=2), agent, torch.device("meta"), rank=1)
    unroll, unroll_state = learner.load(batch, state)
    assert tuple(unroll) == LEARN_KEYS
    assert all(t.device.type == "meta" for t in (*unroll.values(), *unroll_state))
    assert {key: tuple(t.shape) for key, t in unroll.items()} == {
        "obs": (T + 1, 2, 3, 64, 64), "prev_action": (T + 1, 2), "reward": (T + 1, 2), "done": (T + 1, 2),
        "action": (T + 1, 2), "behaviour_logits": (T + 1, 2, 3)}
    assert [t.shape[0] for t in unroll_state] == [2] * len(state)
    again, _ = learner.load(batch, state)
    assert all(again[key] is unroll[key] for key in LEARN_KEYS)
    wrong = dict(batch, obs=batch["obs"][:, :2])
    with pytest.raises(ValueError, match=r"the batch's obs is \(6, 2, 3, 64, 64\)"):
        learner.load(wrong, state)


@pytest.mark.parametrize("num_learners, device, shared, pinned", [
    (1, "cpu", False, False), (2, "cpu", True, False), (1, "cuda", False, True), (2, "cuda", True, False)])
def test_the_host_batch_is_shared_for_several_learners_and_pinned_for_one_on_a_gpu(
        agent, monkeypatch, num_learners, device, shared, pinned):
    """Pinned memory cannot be shared between processes: with several learners each pins its own columns."""
    calls = []

    def record(name):
        def allocate(*args, shared=False, pin=False):
            calls.append((name, shared, pin))
        return allocate

    monkeypatch.setattr(batch_module, "allocate_unroll", record("unroll"))
    monkeypatch.setattr(batch_module, "allocate_state", record("state"))
    allocate_batch(config(num_learners=num_learners), agent, torch.device(device))
    assert calls == [("unroll", shared, pinned), ("state", shared, pinned)]


@pytest.mark.slow
def test_the_parallel_runner_hands_complete_unrolls_in_one_host_batch(agent):
    """Every column's state is the one before its unroll: the learner's forward from it reproduces the
    behaviour logits (no weights are published, so the actors act with the learner's)."""
    runner = ParallelRunner(config(envs_per_actor=2), agent, CPU)
    try:
        addresses = None
        for _ in range(3):
            batch, state = runner.next_batch()
            if addresses is None:
                addresses = [t.data_ptr() for t in (*batch.values(), *state)]
            assert [t.data_ptr() for t in (*batch.values(), *state)] == addresses
            with torch.no_grad():
                output, _ = agent(AgentInputs(batch["obs"], batch["prev_action"], batch["reward"], batch["done"]),
                                  state)
            torch.testing.assert_close(output.policy_logits, batch["behaviour_logits"])
            assert torch.equal(batch["prev_action"][1:], batch["action"][:-1])
    finally:
        runner.close()
