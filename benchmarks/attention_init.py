"""How sharp an attention agent's heads are on real Atari frames, at initialisation (for several
``query_init_gain`` values and seeds) or for given checkpoints: per-head entropy (nats; uniform over
the h x w map is log(h w)), and the spread over the map of the content ("what") and spatial ("where")
logits. Frames come from random play (fixed seed), the first 10 steps are skipped.

    python benchmarks/attention_init.py --env pong --gains 1 4 6 8 --seeds 0 1
    python benchmarks/attention_init.py --env pong --checkpoints runs/pong-s1 zoo:NAME
    python benchmarks/attention_init.py --recordings rec/   # where each head's peak sits over a recording
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from s3ta import agents, envs
from s3ta.agents import AgentInputs


def random_play_inputs(env_id: str, num_envs: int, steps: int, seed: int) -> AgentInputs:
    env = envs.make(env_id, num_envs, seed=seed)
    timestep = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    obs, done = [], []
    for _ in range(steps):
        obs.append(timestep.obs.copy())
        done.append(np.asarray(timestep.done, bool).copy())
        timestep = env.step(rng.integers(0, env.num_actions, num_envs))
    env.close()
    return AgentInputs(torch.from_numpy(np.stack(obs)), torch.zeros(steps, num_envs, dtype=torch.long),
                       torch.zeros(steps, num_envs), torch.from_numpy(np.stack(done)))


@torch.no_grad()
def measure(agent, inputs: AgentInputs, skip: int = 10) -> dict[str, float | list[float]]:
    output, _ = agent(inputs, agent.initial_state(inputs.obs.shape[1]))
    weights = output.attention[skip:].flatten(-2)  # [T, B, N, h*w]
    entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(-1).mean(dim=(0, 1))  # [N]
    return {
        "entropy_per_head": [round(v, 2) for v in entropy.tolist()],
        "uniform_entropy": math.log(weights.shape[-1]),
        "content_std": output.content_logits[skip:].flatten(-2).std(-1).mean().item(),
        "spatial_std": output.spatial_logits[skip:].flatten(-2).std(-1).mean().item(),
        "max_weight": weights.max(-1).values.mean().item(),
    }


def peak_stability(recording_dir: str) -> None:
    """Per head of a recording (``s3ta explain record``): how many distinct cells its peak visits and
    the share of steps its peak spends on its most frequent cell (1.0 = a head that never moves)."""
    from s3ta.analysis.recording import load_recording

    recording = load_recording(recording_dir)
    recording.require_attention("peak stability")
    weights = np.asarray(recording.arrays["attention"])  # [T, N, h, w]
    steps, heads, height, width = weights.shape
    print(f"{recording_dir}: {steps} steps")
    print("| head | distinct peak cells | share of steps on the most frequent cell (row, col) | mean peak weight |")
    print("|---|---:|---|---:|")
    for head in range(heads):
        flat = weights[:, head].reshape(steps, -1)
        cells, counts = np.unique(flat.argmax(1), return_counts=True)
        row, col = np.unravel_index(cells[counts.argmax()], (height, width))
        print(f"| {head} | {cells.size} | {counts.max() / steps:.3f} ({row}, {col}) | {flat.max(1).mean():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="pong")
    parser.add_argument("--agent", default="s3ta-small")
    parser.add_argument("--gains", type=float, nargs="*", default=[1.0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--checkpoints", nargs="*", default=[], help="measure these instead of fresh agents")
    parser.add_argument("--recordings", nargs="*", default=[], help="report peak stability of these recordings")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--envs", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.recordings:
        for path in args.recordings:
            peak_stability(path)
        return

    inputs = random_play_inputs(args.env, args.envs, args.steps, seed=3)
    shape, actions = tuple(inputs.obs.shape[2:]), envs.make(args.env, 1).num_actions
    rows = []
    if args.checkpoints:
        from s3ta.training.checkpoint import load_agent

        for path in args.checkpoints:
            agent, checkpoint = load_agent(path)
            rows.append((f"{path} ({checkpoint.counters['frames']:,} frames)", measure(agent, inputs)))
    else:
        for gain in args.gains:
            for seed in args.seeds:
                torch.manual_seed(seed)
                agent = agents.build(args.agent, shape, actions, query_init_gain=gain).eval()
                rows.append((f"init, gain {gain:g}, seed {seed}", measure(agent, inputs)))
    print(f"| agent | entropy per head (uniform {rows[0][1]['uniform_entropy']:.2f}) | content logit std | "
          f"spatial logit std | mean peak weight |")
    print("|---|---|---:|---:|---:|")
    for label, m in rows:
        print(f"| {label} | {', '.join(f'{e:.2f}' for e in m['entropy_per_head'])} | {m['content_std']:.3f} | "
              f"{m['spatial_std']:.2f} | {m['max_weight']:.4f} |")


if __name__ == "__main__":
    main()
