"""Scaling benchmark of the Ray backend (not a test): for each number of Ray actors, one actor's
unroll throughput through Ray (agent steps/s delivered to the driver), the learner alone, and
steady-state end-to-end `s3ta train --backend ray` steps/s, with the speed-up over the first row.

    python benchmarks/ray_scaling.py                                  # 1 vs 2 actors, local Ray
    python benchmarks/ray_scaling.py --actors 1 2 4 8 --ray-address auto --json ray.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

from s3ta.runtime import wait_passively  # noqa: E402 - no torch import

wait_passively()  # as the s3ta CLI does, before torch loads

import ray  # noqa: E402
import torch  # noqa: E402

from s3ta import agents  # noqa: E402
from s3ta.training import TrainConfig  # noqa: E402
from s3ta.training.loop import probe_env  # noqa: E402
from s3ta.training.learner import choose_unroll_threads, learn, make_optimizer, make_scheduler  # noqa: E402
from s3ta.training.ray_runner import RayRunner  # noqa: E402
from throughput import end_to_end, fake_batch, timed  # noqa: E402 - the sibling benchmark's helpers


def actor_sps(config: TrainConfig, seconds: float) -> float:
    """Agent steps/s one Ray actor delivers to the driver (unrolls of actor_batch envs, no learning)."""
    single = TrainConfig.from_dict({**config.to_dict(), "num_actors": 1, "envs_per_actor": config.actor_batch,
                                    "batch_size": config.actor_batch})
    shape, num_actions, _ = probe_env(config)
    agent = agents.build(config.agent, shape, num_actions, **config.agent_overrides)
    runner = RayRunner(single, agent, torch.device("cpu"), log=print)
    try:
        runner.next_batch()  # the actor has started and loaded its weights
        return config.unroll_length * config.actor_batch * timed(runner.next_batch, seconds)
    finally:
        runner.close()


def learner_sps(config: TrainConfig, seconds: float) -> float:
    """Agent steps/s of learn() alone on a fixed batch [T + 1, B], with the training default threads."""
    torch.set_num_threads(config.learner_threads or os.cpu_count() or 1)
    shape, num_actions, _ = probe_env(config)
    agent = agents.build(config.agent, shape, num_actions, **config.agent_overrides)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 1)
    batch, initial = fake_batch(config, shape, num_actions), agent.initial_state(config.batch_size)
    unroll_threads = choose_unroll_threads(agent, config, torch.device("cpu"))
    return config.unroll_length * config.batch_size * timed(
        lambda: learn(agent, optimizer, scheduler, batch, initial, config, unroll_threads), seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="s3ta-small")
    parser.add_argument("--env", default="catch")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2], help="numbers of Ray actors to compare")
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--envs-per-actor", type=int, default=0,
                        help="environments per actor (0 = batch-size / actors, as in training)")
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time of each micro-benchmark")
    parser.add_argument("--updates", type=int, default=10, help="learner updates of each end-to-end run")
    parser.add_argument("--ray-address", default="", help='"" = start a local Ray; "auto" or HOST:PORT = a cluster')
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()

    ray.init(address=args.ray_address or None, include_dashboard=False, logging_level=logging.WARNING,
             num_cpus=None if args.ray_address else max(os.cpu_count() or 1, max(args.actors)))
    resources = ray.cluster_resources()
    print(f"driver: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"ray {ray.__version__}; cluster: {resources.get('CPU', 0):.0f} CPUs, {len(ray.nodes())} node(s)")
    print(f"{args.agent} on {args.env}, T = {args.unroll_length}, B = {args.batch_size}")
    print(f"{'actors':>6s} {'envs/actor':>10s} {'actor SPS':>9s} {'learn SPS':>9s} {'e2e SPS':>8s} {'e2e FPS':>8s} "
          f"{'speed-up':>8s} {'e2e/bound':>9s}")
    base = TrainConfig(env=args.env, agent=args.agent, unroll_length=args.unroll_length, batch_size=args.batch_size)
    learner = learner_sps(base, args.seconds)  # the same for every row: the learner sees B unrolls either way
    rows = []
    for count in args.actors:
        config = TrainConfig(env=args.env, agent=args.agent, unroll_length=args.unroll_length,
                             batch_size=args.batch_size, num_actors=count, envs_per_actor=args.envs_per_actor,
                             backend="ray", ray_address=args.ray_address)
        one_actor = actor_sps(config, args.seconds)
        e2e = end_to_end(config, args.updates)
        frames_per_step = probe_env(config)[2]
        row = {"agent": args.agent, "env": args.env, "unroll_length": args.unroll_length,
               "batch_size": args.batch_size, "num_actors": count, "envs_per_actor": config.actor_batch,
               "actor_sps": one_actor, "learner_sps": learner, "e2e_sps": e2e, "e2e_fps": e2e * frames_per_step,
               "e2e_vs_bound": e2e / min(count * one_actor, learner)}
        row["speedup"] = e2e / rows[0]["e2e_sps"] if rows else 1.0
        rows.append(row)
        print(f"{count:6d} {config.actor_batch:10d} {one_actor:9.0f} {learner:9.1f} {e2e:8.1f} {row['e2e_fps']:8.0f} "
              f"{row['speedup']:7.2f}x {100 * row['e2e_vs_bound']:8.0f}%", flush=True)
    ray.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps({"cluster_resources": resources, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
