"""Where the learner's time goes (not a test): torch.profiler over a few learn() updates on a fixed
batch, printing the operators by self CPU time, the update rate and the minor page faults per update.

    cd benchmarks && python profile_learner.py --agent s3ta --env breakout --batch-size 8
    cd benchmarks && python profile_learner.py --agent s3ta --env breakout --system-malloc   # glibc defaults
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from s3ta.runtime import wait_passively  # noqa: E402 - no torch import

wait_passively()  # as the s3ta CLI does, before torch loads

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from s3ta import agents, envs  # noqa: E402
from s3ta.runtime import tune_allocator  # noqa: E402
from s3ta.training import TrainConfig  # noqa: E402
from s3ta.training.learner import choose_unroll_threads, learn, make_optimizer, make_scheduler  # noqa: E402
from throughput import fake_batch  # noqa: E402 - the sibling benchmark's helper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agent", default="s3ta")
    parser.add_argument("--env", default="breakout")
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--updates", type=int, default=5, help="profiled updates (after 3 warm-up ones)")
    parser.add_argument("--unroll-threads", type=int, default=0,
                        help="threads of the time loop, as TrainConfig.unroll_threads (0 = train()'s choice)")
    parser.add_argument("--rows", type=int, default=15, help="operators to list")
    parser.add_argument("--system-malloc", action="store_true",
                        help="keep glibc's default allocator settings instead of train()'s tune_allocator()")
    args = parser.parse_args()

    if not args.system_malloc:
        tune_allocator()

    torch.set_num_threads(args.threads)
    config = TrainConfig(env=args.env, agent=args.agent, unroll_length=args.unroll_length, batch_size=args.batch_size,
                         unroll_threads=args.unroll_threads)
    probe = envs.make(args.env, 1)
    shape, num_actions = probe.observation_shape, probe.num_actions
    probe.close()
    torch.manual_seed(0)
    agent = agents.build(args.agent, shape, num_actions)
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 1)
    batch, initial = fake_batch(config, shape, num_actions), agent.initial_state(args.batch_size)
    unroll_threads = choose_unroll_threads(agent, config, torch.device("cpu"))

    def update() -> None:
        learn(agent, optimizer, scheduler, batch, initial, config, unroll_threads)

    for _ in range(3):
        update()
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(args.updates):
        update()
    seconds = time.perf_counter() - start
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / args.updates
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.updates):
            update()
    print(f"{args.agent} on {args.env}, T = {args.unroll_length}, B = {args.batch_size}, {args.threads} threads "
          f"(time loop: {unroll_threads or args.threads}), {args.updates} updates, "
          f"{'glibc default' if args.system_malloc else 'tuned'} allocator")
    print(f"without the profiler: {args.unroll_length * args.batch_size * args.updates / seconds:.1f} learner SPS, "
          f"{faults:,.0f} minor page faults per update")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
