"""GPU throughput (not a test): learner steps/s and end-to-end training frames/s on one CUDA device,
fp32 and bf16 side by side, with the GPU's measured matmul peak of each format for the MFU. Run by
benchmarks/gpu_check.sh on a lent GPU machine; the table goes to docs/benchmarks.md.

    python benchmarks/gpu_throughput.py --agents s3ta s3ta-small lstm --env breakout --json gpu.json
    python benchmarks/gpu_throughput.py --table gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from s3ta.runtime import wait_passively  # noqa: E402 - no torch import

wait_passively()

import torch  # noqa: E402

from s3ta import agents, envs  # noqa: E402
from s3ta.training import TrainConfig  # noqa: E402
from s3ta.training.config import config_source  # noqa: E402
from s3ta.training.learner import learn, make_optimizer, make_scheduler  # noqa: E402
from throughput import end_to_end, fake_batch, flops_per_step  # noqa: E402 - beside this file


def cuda_timed(step, seconds: float, warmup: int = 3) -> float:
    """Calls of ``step`` per second on the GPU (synchronised), over at least ``seconds``."""
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    torch.cuda.synchronize()
    return calls / (time.perf_counter() - start)


def gpu_peak(dtype: torch.dtype, n: int = 8192) -> float:
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    return 2 * n**3 * cuda_timed(lambda: a @ b, 2.0)


def row(name: str, env_id: str, precision: str, seconds: float, e2e_seconds: float, peaks: dict) -> dict:
    base = config_source("atari-small") if name.endswith("-small") else {}  # -small agents: the recipe's sizes
    config = TrainConfig.from_dict({**base, "env": env_id, "agent": name, "precision": precision, "device": "cuda",
                                    "num_actors": max(1, (os.cpu_count() or 2) - 1)})
    probe = envs.make(env_id, 1)
    shape, num_actions, frames_per_step = probe.observation_shape, probe.num_actions, probe.frames_per_step
    probe.close()
    torch.manual_seed(0)
    agent = agents.build(name, shape, num_actions, **config.agent_overrides)
    acting_flops, learning_flops = flops_per_step(agent, config, shape, num_actions)  # on CPU, as counted elsewhere
    agent = agent.cuda()
    batch = {k: v.cuda() for k, v in fake_batch(config, shape, num_actions).items()}
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 1)
    initial = tuple(s.cuda() for s in agent.initial_state(config.batch_size))
    steps = config.unroll_length * config.batch_size
    learner_sps = steps * cuda_timed(lambda: learn(agent, optimizer, scheduler, batch, initial, config), seconds)
    updates = 3 + int(e2e_seconds * min(learner_sps, 20_000) / steps)
    e2e_sps = end_to_end(config, updates)
    return {"agent": name, "env": env_id, "precision": precision, "unroll_length": config.unroll_length,
            "batch_size": config.batch_size, "num_actors": config.num_actors, "learner_sps": learner_sps,
            "e2e_sps": e2e_sps, "e2e_fps": e2e_sps * frames_per_step, "learning_gflop": learning_flops / 1e9,
            "learner_mfu": learner_sps * learning_flops / peaks[precision]}


def markdown_table(saved: dict) -> str:
    lines = [f"{saved['device']}, torch {saved['torch']}; matmul peak "
             + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in saved["peaks"].items()), "",
             "| agent | env | precision | T x B | actors | learner SPS | end-to-end SPS | end-to-end FPS | learner MFU |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in saved["rows"]:
        lines.append(f"| {r['agent']} | {r['env']} | {r['precision']} | {r['unroll_length']} x {r['batch_size']} "
                     f"| {r['num_actors']} | {r['learner_sps']:,.0f} | {r['e2e_sps']:,.0f} | {r['e2e_fps']:,.0f} "
                     f"| {100 * r['learner_mfu']:.1f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=["s3ta", "s3ta-small", "lstm"])
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time of the learner alone")
    parser.add_argument("--e2e-seconds", type=float, default=25.0, help="about this long per end-to-end run")
    parser.add_argument("--json", help="write the rows to this JSON file")
    parser.add_argument("--table", metavar="JSON", help="only print the Markdown table of a saved --json file")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    if not torch.cuda.is_available():
        raise SystemExit("torch sees no CUDA device: this benchmark is for a GPU machine (benchmarks/gpu_check.sh)")
    peaks = {p: gpu_peak(torch.bfloat16 if p == "bf16" else torch.float32) for p in args.precisions}
    saved = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cpus": os.cpu_count(),
             "peaks": peaks, "rows": []}
    for name in args.agents:
        for precision in args.precisions:
            saved["rows"].append(row(name, args.env, precision, args.seconds, args.e2e_seconds, peaks))
            print(json.dumps(saved["rows"][-1]), flush=True)
            if args.json:  # after every row: a run cut short by its time limit keeps what it measured
                Path(args.json).write_text(json.dumps(saved, indent=2))
    print(markdown_table(saved))


if __name__ == "__main__":
    main()
