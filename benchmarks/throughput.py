"""Throughput benchmark (not a test): for each agent on Atari and on a built-in task, in one run,
env-only steps/s, actor inference steps/s, learner steps/s, end-to-end training steps/s and
frames/s, the model's FLOPs per agent step (acting + learning, torch.utils.flop_counter), and the
machine's measured matmul peak of each number format, so each line also shows its model-FLOP
utilisation (MFU); and where the time goes: core-milliseconds per 1,000 agent steps of the learner's
encoder, its time loop, actor inference and env stepping.

    python benchmarks/throughput.py                       # everything at the spec's batch of 32 (~20 min on 2 cores)
    python benchmarks/throughput.py --agents s3ta-small --envs catch --seconds 10
    python benchmarks/throughput.py --config atari-small --agents s3ta-small lstm-small --envs breakout \
        --precisions fp32 bf16                            # the recipe's sizes, fp32 and bf16 side by side
    python benchmarks/throughput.py --table benchmarks/results/throughput.json   # the docs table of a saved run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from s3ta.runtime import wait_passively  # noqa: E402 - no torch import

wait_passively()  # as the s3ta CLI does, before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from s3ta import agents, envs  # noqa: E402
from s3ta.agents import AgentInputs  # noqa: E402
from s3ta.precision import autocast, bf16_support  # noqa: E402
from s3ta.runtime import tune_allocator  # noqa: E402
from s3ta.training import TrainConfig, train  # noqa: E402
from s3ta.training.config import config_source  # noqa: E402
from s3ta.training.learner import choose_unroll_threads, learn, make_optimizer, make_scheduler  # noqa: E402


def timed(step, seconds: float, warmup: int = 1) -> float:
    """Calls of ``step`` per second over at least ``seconds`` (after ``warmup`` calls)."""
    for _ in range(warmup):
        step()
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls / (time.perf_counter() - start)


def matmul_peak(seconds: float, sizes=(1024, 2048, 4096), trials: int = 3, dtype=torch.float32) -> float:
    """Measured FLOP/s of square ``dtype`` matmuls with all torch threads: the best of a few sizes and
    trials, so that a momentary disturbance lowers no MFU denominator."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        for _ in range(trials):
            best = max(best, 2 * n**3 * timed(lambda: torch.mm(a, b), seconds / trials))
    return best


def fake_inputs(steps: int, batch: int, shape, num_actions: int) -> AgentInputs:
    return AgentInputs(obs=torch.randint(0, 256, (steps, batch, *shape), dtype=torch.uint8),
                       prev_action=torch.randint(0, num_actions, (steps, batch)),
                       prev_reward=torch.zeros(steps, batch), done=torch.zeros(steps, batch, dtype=torch.bool))


def fake_batch(config: TrainConfig, shape, num_actions: int) -> dict[str, torch.Tensor]:
    steps, batch = config.unroll_length + 1, config.batch_size
    inputs = fake_inputs(steps, batch, shape, num_actions)
    return {"obs": inputs.obs, "prev_action": inputs.prev_action, "reward": inputs.prev_reward,
            "done": inputs.done, "action": torch.randint(0, num_actions, (steps, batch)),
            "behaviour_logits": torch.randn(steps, batch, num_actions)}


def flops_per_step(agent, config: TrainConfig, shape, num_actions: int) -> tuple[float, float]:
    """(acting, learning) FLOPs per agent step."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        agent(fake_inputs(1, 1, shape, num_actions), agent.initial_state(1))
    acting = counter.get_total_flops()
    optimizer = make_optimizer(agent, config)
    scheduler = make_scheduler(optimizer, config, 1)
    with FlopCounterMode(display=False) as counter:
        learn(agent, optimizer, scheduler, fake_batch(config, shape, num_actions),
              agent.initial_state(config.batch_size), config)
    learning = counter.get_total_flops() / (config.unroll_length * config.batch_size)
    return acting, learning


def core_ms_per_1000_steps(agent, config: TrainConfig, batch, seconds: float) -> tuple[float, float]:
    """(encoder, time loop) core-milliseconds per 1,000 agent steps of a learner update: the encoder's
    forward and backward on all the learner's threads, the rest of the update on the loop's threads."""
    threads = torch.get_num_threads()
    unroll_threads = choose_unroll_threads(agent, config, torch.device("cpu")) or threads

    def encoder():
        agent.zero_grad(set_to_none=True)
        with autocast(config.precision, "cpu"):
            encoded = agent.encode(batch["obs"])
        encoded.float().sum().backward()

    optimizer, scheduler = make_optimizer(agent, config), None
    scheduler = make_scheduler(optimizer, config, 1)
    initial = agent.initial_state(config.batch_size)
    update = 1.0 / timed(lambda: learn(agent, optimizer, scheduler, batch, initial, config,
                                       choose_unroll_threads(agent, config, torch.device("cpu"))), seconds)
    encode = 1.0 / timed(encoder, seconds)
    per_1000 = 1000.0 / (config.unroll_length * config.batch_size)
    return 1000 * encode * threads * per_1000, 1000 * max(update - encode, 0.0) * unroll_threads * per_1000


def end_to_end(config: TrainConfig, updates: int) -> float:
    """Steady-state training agent steps/s (updates after the first two), from metrics.jsonl."""
    with tempfile.TemporaryDirectory() as run_dir:
        probe = envs.make(config.env, 1)
        frames_per_step = probe.frames_per_step
        probe.close()
        frames = updates * config.unroll_length * config.batch_size * frames_per_step
        train(TrainConfig.from_dict({**config.to_dict(), "total_frames": frames, "log_interval": 0.0}), run_dir,
              stream=open(os.devnull, "w"))
        records = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
        records = [r for r in records if r["kind"] == "update"][2:]
    frames_done = records[-1]["frames"] - records[0]["frames"]
    return frames_done / (records[-1]["time"] - records[0]["time"]) / frames_per_step


def benchmark(agent_name: str, env_id: str, config: TrainConfig, seconds: float, updates: int, e2e_seconds: float,
              peak: float) -> dict:
    cores = os.cpu_count() or 1
    env = envs.make(env_id, config.actor_batch, seed=0)
    shape, num_actions, frames_per_step = env.observation_shape, env.num_actions, env.frames_per_step
    actions = np.zeros(env.num_envs, dtype=np.int64)
    env.reset(seed=0)
    torch.set_num_threads(1)  # the env's own threads aside, as in an actor process
    env_sps = env.num_envs * timed(lambda: env.step(actions), seconds)
    env.close()

    torch.manual_seed(0)
    agent = agents.build(agent_name, shape, num_actions, **config.agent_overrides)
    torch.set_num_threads(cores)
    acting_flops, learning_flops = flops_per_step(agent, config, shape, num_actions)

    torch.set_num_threads(1)  # as in an actor process
    inputs, state = fake_inputs(1, config.actor_batch, shape, num_actions), agent.initial_state(config.actor_batch)

    def act():
        with torch.no_grad(), autocast(config.precision, "cpu"):
            agent(inputs, state)

    actor_sps = config.actor_batch * timed(act, seconds)

    torch.set_num_threads(config.learner_threads or cores)  # the learner alone on the machine, threads as in train()
    encoder_ms, loop_ms = core_ms_per_1000_steps(agent, config, fake_batch(config, shape, num_actions), seconds)
    unroll_threads = choose_unroll_threads(agent, config, torch.device("cpu"))
    optimizer, batch = make_optimizer(agent, config), fake_batch(config, shape, num_actions)
    scheduler = make_scheduler(optimizer, config, 1)
    initial = agent.initial_state(config.batch_size)
    learner_sps = config.unroll_length * config.batch_size * timed(
        lambda: learn(agent, optimizer, scheduler, batch, initial, config, unroll_threads), seconds)

    # enough updates for the measured window (after the first two) to last about e2e_seconds
    steps_per_update = config.unroll_length * config.batch_size
    updates = max(updates, 2 + math.ceil(e2e_seconds * min(env_sps, learner_sps) / steps_per_update))
    e2e_sps = end_to_end(config, updates)
    total_flops = acting_flops + learning_flops
    return {
        "agent": agent_name, "env": env_id, "precision": config.precision, "preset": config.preset,
        "unroll_length": config.unroll_length, "batch_size": config.batch_size,
        "num_actors": config.num_actors, "learner_threads": torch.get_num_threads(),
        "unroll_threads": unroll_threads or torch.get_num_threads(), "e2e_updates": updates,
        "env_sps": env_sps, "actor_sps": actor_sps, "learner_sps": learner_sps,
        "e2e_sps": e2e_sps, "e2e_fps": e2e_sps * frames_per_step,
        "gflop_per_step": total_flops / 1e9, "acting_gflop": acting_flops / 1e9, "learning_gflop": learning_flops / 1e9,
        "learner_mfu": learner_sps * learning_flops / peak, "e2e_mfu": e2e_sps * total_flops / peak,
        "e2e_vs_bound": e2e_sps / min(env_sps, learner_sps),
        # core-ms per 1,000 agent steps (env stepping: ale-py's own threads, counted as one core)
        "encoder_core_ms": encoder_ms, "loop_core_ms": loop_ms, "actor_core_ms": 1e6 / actor_sps,
        "env_ms": 1e6 / env_sps,
    }


def flops_table(names: list[str], env_id: str, preset: str | None) -> str:
    """Markdown rows: parameters and acting / learning / total MFLOP per agent step of each agent."""
    base = config_source(preset) if preset else {}
    probe = envs.make(env_id, 1)
    shape, num_actions = probe.observation_shape, probe.num_actions
    probe.close()
    lines = ["| agent | parameters | acting MFLOP | learning MFLOP | total MFLOP |", "|---|---:|---:|---:|---:|"]
    for name in names:
        values = {**base, "env": env_id, "agent": name}
        if not name.endswith("-small"):
            values.pop("agent_overrides", None)
        config = TrainConfig.from_dict(values)
        torch.manual_seed(0)
        agent = agents.build(name, shape, num_actions, **config.agent_overrides)
        acting, learning = flops_per_step(agent, config, shape, num_actions)
        parameters = sum(p.numel() for p in agent.parameters())
        lines.append(f"| `{name}` | {parameters:,} | {acting / 1e6:.1f} | {learning / 1e6:.1f} | "
                     f"{(acting + learning) / 1e6:.1f} |")
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    """The docs/benchmarks.md table of a run's rows. A run with bf16 rows also has a column of their
    end-to-end speed-up over the fp32 row of the same agent, env and preset."""
    fp32_fps = {(r["agent"], r["env"], r.get("preset")): r["e2e_fps"] for r in rows if r.get("precision", "fp32") == "fp32"}
    compared = any(r.get("precision", "fp32") != "fp32" for r in rows)
    lines = ["| agent | env | precision | env-only SPS | actor SPS (1 thread) | learner SPS (as in training) | end-to-end SPS "
             "| end-to-end FPS |" + (" end to end vs fp32 |" if compared else "")
             + " GFLOP / agent step (act + learn) | learner MFU | end-to-end MFU | e2e / min(env, learner) |",
             "|---|---|---|" + "---:|" * (10 if compared else 9)]
    for r in rows:
        precision = r.get("precision", "fp32")
        speedup = ""
        if compared:
            baseline = fp32_fps.get((r["agent"], r["env"], r.get("preset")))
            speedup = f" {r['e2e_fps'] / baseline:.2f}× |" if precision != "fp32" and baseline else "  |"
        lines.append(f"| {r['agent']} | {r['env']} | {precision} | {r['env_sps']:,.0f} "
                     f"| {r['actor_sps']:,.0f} | {r['learner_sps']:,.1f} "
                     f"| {r['e2e_sps']:,.1f} | {r['e2e_fps']:,.0f} |{speedup} {r['gflop_per_step']:.3f} "
                     f"({r['acting_gflop']:.3f} + {r['learning_gflop']:.3f}) | {100 * r['learner_mfu']:.0f}% "
                     f"| {100 * r['e2e_mfu']:.0f}% | {100 * r['e2e_vs_bound']:.0f}% |")
    parts = ("encoder_core_ms", "loop_core_ms", "actor_core_ms", "env_ms")
    if any("encoder_core_ms" in r for r in rows):
        lines += ["", "Where the time goes, core-milliseconds per 1,000 agent steps:", "",
                  "| agent | env | precision | learner encoder (fwd + bwd) | learner time loop and update | actor inference "
                  "| env stepping | sum |", "|---|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['agent']} | {r['env']} | {r['precision']} | "
                  + " | ".join(f"{r[k]:,.0f}" for k in parts) + f" | {sum(r[k] for k in parts):,.0f} |"
                  for r in rows if "encoder_core_ms" in r]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", nargs="+", default=agents.names())
    parser.add_argument("--envs", nargs="+", default=["breakout", "catch"])
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time of each micro-benchmark")
    parser.add_argument("--updates", type=int, default=5, help="least learner updates of each end-to-end run")
    parser.add_argument("--e2e-seconds", type=float, default=10.0,
                        help="least measuring time of each end-to-end run (more updates for fast configurations)")
    parser.add_argument("--config", help="a training preset (e.g. atari-small): its agent sizes, T and B")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                        help="number formats, each a row (bf16 needs native support: s3ta.precision)")
    parser.add_argument("--unroll-length", type=int, help="default: the preset's, or 20")
    parser.add_argument("--batch-size", type=int, help="default: the preset's, or the spec's 32")
    parser.add_argument("--learner-threads", type=int, default=0,
                        help="torch threads of the learner (0 = the training default, all cores)")
    parser.add_argument("--unroll-threads", type=int, default=0,
                        help="threads of the learner's time loop (0 = the training default: 1 for small steps)")
    parser.add_argument("--flops", action="store_true",
                        help="only print each agent's parameters and FLOPs per agent step (no timing), on the "
                             "first of --envs, under --config's sizes")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--table", metavar="JSON", help="only print the Markdown table of a saved --json file")
    parser.add_argument("--row", nargs=3, metavar=("AGENT", "ENV", "PRECISION"), help=argparse.SUPPRESS)  # one row, as JSON
    parser.add_argument("--peak", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.table:
        saved = json.loads(Path(args.table).read_text())
        peaks = saved.get("peaks", {"fp32": saved["peak_flops"]})
        print(", ".join(f"{name} matmul peak: {value / 1e9:.1f} GFLOP/s" for name, value in peaks.items())
              + f"\n\n{markdown_table(saved['rows'])}")
        return

    if args.flops:
        print(flops_table(args.agents, args.envs[0], args.config))
        return
    tune_allocator()  # as train() does, so the learner-only rates use the same allocator
    torch.set_num_threads(os.cpu_count() or 1)
    if args.row:
        name, env_id, precision = args.row
        base = config_source(args.config) if args.config else {}
        if not name.endswith("-small"):  # the preset's agent sizes are s3ta-small's (its comparison agents share them)
            base.pop("agent_overrides", None)
        config = TrainConfig.from_dict({
            **base, "env": env_id, "agent": name, "precision": precision,
            "unroll_length": args.unroll_length or base.get("unroll_length", 20),
            "batch_size": args.batch_size or base.get("batch_size", TrainConfig().batch_size),
            "learner_threads": args.learner_threads, "unroll_threads": args.unroll_threads})
        print(json.dumps(benchmark(name, env_id, config, args.seconds, args.updates, args.e2e_seconds, args.peak)))
        return
    unsupported = [p for p in args.precisions if p == "bf16" and not bf16_support("cpu")[0]]
    if unsupported:
        raise SystemExit(f"bf16 rows asked for, but {bf16_support('cpu')[1]}")
    peaks = {p: matmul_peak(args.seconds, dtype=torch.bfloat16 if p == "bf16" else torch.float32)
             for p in args.precisions}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          + ", ".join(f"{p} matmul peak {value / 1e9:.1f} GFLOP/s" for p, value in peaks.items()))
    header = (f"{'agent':18s} {'env':9s} {'prec':4s} {'env SPS':>9s} {'actor SPS':>9s} {'learn SPS':>9s} {'e2e SPS':>8s} "
              f"{'e2e FPS':>8s} {'GFLOP/st':>8s} {'learn MFU':>9s} {'e2e MFU':>7s} {'e2e/bound':>9s}")
    print(header)
    rows = []
    rows_to_run = [(env_id, name, precision) for env_id in args.envs for name in args.agents
                   for precision in args.precisions]
    for env_id, name, precision in rows_to_run:
        # each row in a fresh process: one row's heap and threads do not carry into the next one's timings
        command = [sys.executable, __file__, "--row", name, env_id, precision, "--peak", str(peaks[precision])] + [
            f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in
            ("seconds", "updates", "e2e_seconds", "learner_threads", "unroll_threads")
        ] + [f"--{flag.replace('_', '-')}={getattr(args, flag)}" for flag in ("config", "unroll_length", "batch_size")
             if getattr(args, flag)]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the {name} / {env_id} row failed (exit code {done.returncode}), see above")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:18s} {env_id:9s} {precision:4s} {row['env_sps']:9.0f} {row['actor_sps']:9.0f} {row['learner_sps']:9.1f} "
              f"{row['e2e_sps']:8.1f} {row['e2e_fps']:8.0f} {row['gflop_per_step']:8.3f} "
              f"{100 * row['learner_mfu']:8.0f}% {100 * row['e2e_mfu']:6.0f}% {100 * row['e2e_vs_bound']:8.0f}%",
              flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"peak_flops": peaks.get("fp32"), "peaks": peaks, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
