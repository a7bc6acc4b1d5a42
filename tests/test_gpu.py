"""The CUDA path, on a machine that has one (marked `gpu`, skipped elsewhere; `pytest -m gpu` runs them
alone): a few updates on cuda (fp32 and bf16, actors serial and parallel), a CUDA run resumed on the CPU
and back, the batch's way to the GPU from pinned memory, and two learners over NCCL where two GPUs
exist. docs/multi-gpu.md says which of these have run on a GPU so far."""

import dataclasses
import io
import json
import math
import re

import pytest
import torch

from s3ta import agents
from s3ta.training import TrainConfig, train
from s3ta.training.batch import LEARN_KEYS, LearnerBatch, allocate_batch, write_unroll
from s3ta.training.checkpoint import load_checkpoint
from s3ta.training.distributed import DataParallelLearner
from tests.test_batch_path import random_unroll

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")

TINY = dict(env="catch", agent="s3ta-small", unroll_length=5, batch_size=4, log_interval=0.0, mode="serial",
            device="cuda")
CUDA = torch.device("cuda")


def attempts(run_dir) -> list[tuple[int, str, int]]:
    """(first frame, device without its name, learners) of each attempt recorded in attempts.json."""
    return [(a["frames"], a["device"].split(" ")[0], a["num_learners"])
            for a in json.loads((run_dir / "attempts.json").read_text())]


@pytest.mark.parametrize("mode, precision", [("serial", "fp32"), ("serial", "bf16"), ("parallel", "fp32")])
def test_a_few_updates_on_cuda(tmp_path, mode, precision):
    stream = io.StringIO()
    config = TrainConfig(**{**TINY, "mode": mode, "num_actors": 2}, total_frames=60, precision=precision)
    summary = train(config, tmp_path, stream=stream)
    assert summary["finished"] and summary["updates"] == 3
    assert re.search(r", cuda:0 \(.+\) (fp32|bf16):", stream.getvalue()), stream.getvalue()  # names the GPU
    assert attempts(tmp_path) == [(0, "cuda:0", 1)]
    updates = [r for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "update"]
    assert len(updates) == 3 and all(math.isfinite(r["loss/total"]) and r["grad_norm"] > 0 for r in updates)
    assert all(t.device.type == "cpu" for t in load_checkpoint(tmp_path).model.values())


def test_a_cuda_run_resumes_on_the_cpu_and_back(tmp_path):
    train(TrainConfig(**TINY, total_frames=40), tmp_path, stream=io.StringIO())
    train(TrainConfig(), tmp_path, resume=True, total_frames=80, machine={"device": "cpu"}, stream=io.StringIO())
    summary = train(TrainConfig(), tmp_path, resume=True, total_frames=120, machine={"device": "cuda"},
                    stream=io.StringIO())
    assert summary["finished"] and summary["frames"] == 120 and summary["updates"] == 6
    assert attempts(tmp_path) == [(0, "cuda:0", 1), (40, "cpu", 1), (80, "cuda:0", 1)]


def test_the_batch_reaches_the_gpu_from_pinned_memory():
    config = TrainConfig(**{**TINY, "mode": "parallel"})
    agent = agents.build("s3ta-small", (3, 64, 64), 3)
    batch, state = allocate_batch(config, agent, CUDA)  # one learner: the runner's batch itself is pinned
    assert all(t.is_pinned() for t in (*batch.values(), *state))
    write_unroll(batch, state, 0, *random_unroll(agent, 4, seed=1))
    unroll, unroll_state = LearnerBatch(config, agent, CUDA).load(batch, state)
    torch.cuda.synchronize()
    assert tuple(unroll) == LEARN_KEYS and all(t.is_cuda for t in (*unroll.values(), *unroll_state))
    assert all(torch.equal(unroll[key].cpu(), batch[key]) for key in LEARN_KEYS)

    two = dataclasses.replace(config, num_learners=2)  # shared host batch; each learner pins its own columns
    batch, state = allocate_batch(two, agent, CUDA)
    assert all(t.is_shared() and not t.is_pinned() for t in batch.values())
    write_unroll(batch, state, 0, *random_unroll(agent, 4, seed=2))
    learner = LearnerBatch(two, agent, CUDA, rank=1)
    assert all(t.is_pinned() for t in learner.gathered[0].values())
    unroll, unroll_state = learner.load(batch, state)
    torch.cuda.synchronize()
    assert all(torch.equal(unroll[key].cpu(), batch[key][:, 2:]) for key in LEARN_KEYS)
    assert all(torch.equal(mine.cpu(), host[2:]) for mine, host in zip(unroll_state, state))


@two_gpus
def test_two_learners_over_nccl_stay_in_sync_and_resume_with_one(tmp_path, monkeypatch):
    checks = []
    close = DataParallelLearner.close

    def checked_close(self):
        checks.append(self.parameters_in_sync())
        close(self)

    monkeypatch.setattr(DataParallelLearner, "close", checked_close)
    config = TrainConfig(**{**TINY, "mode": "parallel", "num_actors": 2, "num_learners": 2}, total_frames=60)
    stream = io.StringIO()
    summary = train(config, tmp_path, stream=stream)
    assert summary["finished"] and checks == [True] and ", 2 learners:" in stream.getvalue()
    summary = train(TrainConfig(), tmp_path, resume=True, total_frames=100, machine={"num_learners": 1},
                    stream=io.StringIO())
    assert summary["finished"] and attempts(tmp_path) == [(0, "cuda:0", 2), (60, "cuda:0", 1)]
