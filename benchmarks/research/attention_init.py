"""How sharp an attention agent's heads are on real Atari frames, and where they look, at
initialisation (for several init gains and seeds) or for given checkpoints: per-head entropy (nats;
uniform over the h x w map is log(h w)), the spread over the map of the content ("what") and spatial
("where") logits, and each head's lift on the RAM-decoded objects of each class (attention mass on the
class over its area share; 1 = chance). Frames come from random play (fixed seeds), the first 10 steps
of each episode are skipped.

    python benchmarks/research/attention_init.py --env pong --gains 1 4 6 8 --seeds 0 1
    python benchmarks/research/attention_init.py --env pong --convlstm-gains 1 3 --content-bias-gains 1 30 --seeds 0 1 2
    python benchmarks/research/attention_init.py --env pong --convlstm-gains 3 --content-bias-gains 30 --agent-config padding_mode=replicate
    python benchmarks/research/attention_init.py --env pong --checkpoints runs/pong-s1 zoo:NAME
    python benchmarks/research/attention_init.py --recordings rec/   # where each head's peak sits over a recording
"""

from __future__ import annotations

import argparse
import itertools
import math

import numpy as np
import torch

from s3ta import agents
from s3ta.agents import AgentInputs
from s3ta.analysis.atari_objects import Boxes, RamAtariEnv, random_play
from s3ta.analysis.grounding import border_lift, class_lift
from s3ta.envs import atari
from s3ta.training.cli import _parse_override

def random_play_inputs(env_id: str, num_envs: int, steps: int, seed: int) -> tuple[AgentInputs, Boxes]:
    """``num_envs`` stretches of random play (``atari_objects.random_play``) as agent inputs [steps, num_envs],
    and the RAM-decoded object boxes of every frame (empty for games without a decoder)."""
    game = atari.game_from_id(env_id)
    if game is None:
        raise SystemExit(f"attention_init: {env_id!r} is not an Atari game")
    obs, boxes = random_play(game, num_envs, steps, seed)
    inputs = AgentInputs(torch.from_numpy(obs), torch.zeros(steps, num_envs, dtype=torch.long),
                         torch.zeros(steps, num_envs), torch.zeros(steps, num_envs, dtype=torch.bool))
    return inputs, boxes


@torch.no_grad()
def measure(agent, inputs: AgentInputs, boxes: Boxes, skip: int = 10) -> dict:
    output, _ = agent(inputs, agent.initial_state(inputs.obs.shape[1]))
    weights = output.attention[skip:].flatten(-2)  # [T, B, N, h*w]
    entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(-1).mean(dim=(0, 1))  # [N]
    height, width = inputs.obs.shape[-2:]
    attention = output.attention.numpy()  # [T, B, N, h, w]
    return {
        "entropy_per_head": [round(v, 2) for v in entropy.tolist()],
        "uniform_entropy": math.log(weights.shape[-1]),
        "content_std": output.content_logits[skip:].flatten(-2).std(-1).mean().item(),
        "spatial_std": output.spatial_logits[skip:].flatten(-2).std(-1).mean().item(),
        "max_weight": weights.max(-1).values.mean().item(),
        "lift": class_lift(attention, boxes, height, width, skip),
        "border_lift": border_lift(attention[skip:]),
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
    parser.add_argument("--gains", type=float, nargs="*", default=[1.0], help="query_init_gain values")
    parser.add_argument("--convlstm-gains", type=float, nargs="*", default=[1.0], help="convlstm_init_gain values")
    parser.add_argument("--content-bias-gains", type=float, nargs="*", default=[1.0],
                        help="query_content_bias_gain values")
    parser.add_argument("--agent-config", nargs="*", type=_parse_override, default=[], metavar="KEY=VALUE",
                        help="override fields of every fresh agent's config, as `s3ta train --agent-config` does")
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

    inputs, boxes = random_play_inputs(args.env, args.envs, args.steps, seed=3)
    shape, actions = tuple(inputs.obs.shape[2:]), RamAtariEnv(atari.game_from_id(args.env)).num_actions
    rows = []
    if args.checkpoints:
        from s3ta.training.checkpoint import load_agent

        for path in args.checkpoints:
            agent, checkpoint = load_agent(path)
            rows.append((f"{path} ({checkpoint.counters['frames']:,} frames)", measure(agent, inputs, boxes)))
    else:
        for gain, lstm_gain, bias_gain, seed in itertools.product(args.gains, args.convlstm_gains,
                                                                   args.content_bias_gains, args.seeds):
            torch.manual_seed(seed)
            agent = agents.build(args.agent, shape, actions, **{
                "query_init_gain": gain, "convlstm_init_gain": lstm_gain, "query_content_bias_gain": bias_gain,
                **dict(args.agent_config)}).eval()
            extra = "".join(f", {k}={v}" for k, v in args.agent_config)
            label = f"init, gains: query {gain:g}, ConvLSTM {lstm_gain:g}, q_K bias {bias_gain:g}{extra}; seed {seed}"
            rows.append((label, measure(agent, inputs, boxes)))
    classes = sorted({label for _, m in rows for label in m["lift"]})
    print(f"| agent | entropy per head (uniform {rows[0][1]['uniform_entropy']:.2f}) | content logit std | "
          f"spatial logit std | mean peak weight | lift on the map's border per head | "
          + " | ".join(f"lift on {c} per head" for c in classes) + " |")
    print("|---|---|---:|---:|---:|---|" + "---|" * len(classes))
    for label, m in rows:
        lifts = " | ".join(", ".join(f"{v:.1f}" for v in m["lift"].get(c, [])) for c in classes)
        print(f"| {label} | {', '.join(f'{e:.2f}' for e in m['entropy_per_head'])} | {m['content_std']:.3f} | "
              f"{m['spatial_std']:.2f} | {m['max_weight']:.4f} | {', '.join(f'{v:.1f}' for v in m['border_lift'])} | "
              f"{lifts} |")


if __name__ == "__main__":
    main()
