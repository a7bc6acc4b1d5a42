"""Can an attention agent learn to *see* what Pong's policy needs, when told? A supervised probe of
the architecture and its initialisation, without reinforcement learning in the way.

Frames of random Pong play are labelled from the emulator RAM with where the ball is relative to the
player's paddle (above, below, level; "level" also when no ball is in play), the one relation a
Pong policy must read to move the paddle. The agent is trained on these labels through its own
forward pass (the first 3 policy logits serve as the classifier, cross-entropy, Adam) over
unrolls of T steps, and every few updates the probe reports held-out accuracy, each head's
attention entropy and its lift on the ball and the player (attention mass over the boxes' area
share; 1 = chance). If accuracy and lift rise within a few hundred updates, the architecture can
find the ball quickly and the bottleneck of an RL run lies in the reward signal; if they do not,
no RL recipe on top of this init will find it quickly either.

    python benchmarks/research/ball_probe.py --updates 300
    python benchmarks/research/ball_probe.py --updates 300 --agent-config convlstm_init_gain=3 query_content_bias_gain=30
    python benchmarks/research/ball_probe.py --updates 300 --force-heads ball player --json benchmarks/results/probe-forced.json
    python benchmarks/research/ball_probe.py --plot benchmarks/results/probe-*.json --out docs/img/ball-probe.png
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s3ta import agents
from s3ta.agents import AgentInputs
from s3ta.analysis.atari_objects import random_play
from s3ta.analysis.geometry import box_mask, cell_index
from s3ta.analysis.grounding import class_lift
from s3ta.training.cli import _parse_override

LEVEL_PIXELS = 6  # |ball centre - paddle centre| within this is "level"


def label(boxes: np.ndarray, labels: list[str]) -> int:
    """0: ball above the player's paddle centre, 1: below, 2: level or no ball."""
    centre = {name: (box[1] + box[3]) / 2 for box, name in zip(boxes, labels)}
    if "ball" not in centre or "player" not in centre:
        return 2
    offset = centre["ball"] - centre["player"]
    return 2 if abs(offset) <= LEVEL_PIXELS else int(offset > 0)


def collect(episodes: int, steps: int, seed: int):
    """Random play: obs uint8 [steps, episodes, 3, 210, 160], labels [steps, episodes], and the boxes."""
    obs, boxes = random_play("pong", episodes, steps, seed)
    targets = [[label(*step) for step in episode_boxes] for episode_boxes in boxes]
    return torch.from_numpy(obs), torch.tensor(targets).T, boxes


def object_maps(boxes, names: list[str], map_shape: tuple[int, int], height: int = 210,
                width: int = 160) -> torch.Tensor:
    """Attention maps that sit on the named objects' boxes: [steps, episodes, len(names), h, w], each
    cell weighted by how many of the object's pixels it holds (uniform when the object is absent)."""
    h, w = map_shape
    rows, cols = cell_index(height, h), cell_index(width, w)
    cell_of = rows[:, None] * w + cols[None, :]
    steps = len(boxes[0])
    maps = np.full((steps, len(boxes), len(names), h * w), 1.0 / (h * w), np.float32)
    for episode, episode_boxes in enumerate(boxes):
        for t, (step_boxes, labels) in enumerate(episode_boxes):
            for k, name in enumerate(names):
                mask = box_mask(step_boxes[[i for i, label in enumerate(labels) if label == name]], height, width)
                if mask.any():
                    counts = np.bincount(cell_of[mask], minlength=h * w).astype(np.float32)
                    maps[t, episode, k] = counts / counts.sum()
    return torch.from_numpy(maps.reshape(steps, len(boxes), len(names), h, w))


def forcing(maps: torch.Tensor | None):
    """An attention override that replaces the first heads by ``maps`` [T, B, k, h, w] (None: no override)."""
    if maps is None:
        return None
    return lambda weights, t: torch.cat([maps[t], weights[:, maps.shape[2]:]], dim=1)


def unrolls(obs: torch.Tensor, targets: torch.Tensor, length: int, batch: int, rng: np.random.Generator,
            maps: torch.Tensor | None = None):
    """A batch of random windows [length, batch] (episode, start) from the collected play, with the
    matching forced attention maps if any."""
    steps, episodes = targets.shape
    episode = rng.integers(0, episodes, batch)
    start = rng.integers(0, steps - length + 1, batch)
    index = start[None, :] + np.arange(length)[:, None]  # [T, B]
    window = (index, episode[None, :])
    return obs[window], targets[window], None if maps is None else maps[window]


def inputs_for(obs: torch.Tensor) -> AgentInputs:
    steps, batch = obs.shape[:2]
    return AgentInputs(obs, torch.zeros(steps, batch, dtype=torch.long), torch.zeros(steps, batch),
                       torch.zeros(steps, batch, dtype=torch.bool))


@torch.no_grad()
def evaluate(agent, obs: torch.Tensor, targets: torch.Tensor, boxes, burn_in: int,
             maps: torch.Tensor | None = None) -> dict:
    if maps is None:
        output, _ = agent(inputs_for(obs), agent.initial_state(obs.shape[1]))
    else:
        output, _ = agent(inputs_for(obs), agent.initial_state(obs.shape[1]), attention_override=forcing(maps))
    predicted = output.policy_logits[burn_in:, :, :3].argmax(-1)
    accuracy = (predicted == targets[burn_in:]).float().mean().item()
    majority = targets[burn_in:].flatten().bincount(minlength=3).max().item() / targets[burn_in:].numel()
    if output.attention is None:  # a baseline without attention
        return {"accuracy": accuracy, "majority": majority, "entropy": [], "lift": {}}
    weights = output.attention[burn_in:].flatten(-2)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean((0, 1))
    lift = class_lift(output.attention.numpy(), boxes, *obs.shape[-2:], skip=burn_in)
    return {"accuracy": accuracy, "majority": majority, "entropy": entropy.tolist(),
            "lift": {name: lift[name] for name in ("ball", "player") if name in lift}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="s3ta-small")
    parser.add_argument("--agent-config", nargs="*", type=_parse_override, default=[], metavar="KEY=VALUE",
                        help="override fields of the agent's config, as `s3ta train --agent-config` does")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--unroll-length", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--train-episodes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="agent steps of random play per episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--force-heads", nargs="*", default=[], choices=("ball", "player", "enemy"),
                        help="replace the first heads' attention by maps on these RAM objects (a control: can the "
                             "rest of the agent use a head that is already on the ball?)")
    parser.add_argument("--json", type=Path, help="also write the evaluations here, as JSON (refuses to overwrite)")
    parser.add_argument("--plot", nargs="*", type=Path, metavar="RESULT.json",
                        help="instead of probing: draw held-out accuracy against updates for these --json results "
                             "into --out")
    parser.add_argument("--out", type=Path, help="the PNG that --plot writes")
    args = parser.parse_args()
    if args.plot is not None:
        if not args.plot or args.out is None:
            parser.error("--plot needs at least one RESULT.json and --out PNG")
        plot_results(args.plot, args.out)
        return
    if args.json is not None and args.json.exists():
        parser.error(f"--json {args.json} exists; choose another path")
    torch.set_num_threads(args.threads)
    overrides = dict(args.agent_config)

    started = time.perf_counter()
    obs, targets, train_boxes = collect(args.train_episodes, args.steps, seed=1000)
    held_obs, held_targets, held_boxes = collect(3, 120, seed=2000)
    print(f"data: {obs.shape[1]} x {obs.shape[0]} training steps, 3 x 120 held out "
          f"({time.perf_counter() - started:.0f} s); label shares above/below/level "
          f"{', '.join(f'{v:.2f}' for v in (targets.flatten().bincount(minlength=3) / targets.numel()).tolist())}")
    torch.manual_seed(args.seed)
    agent = agents.build(args.agent, tuple(obs.shape[2:]), 18, **overrides)
    if args.force_heads and not agents.is_attention_agent(agent):
        raise SystemExit("ball_probe: --force-heads needs an attention agent")
    train_maps = held_maps = None
    if args.force_heads:
        train_maps = object_maps(train_boxes, args.force_heads, agent.attention_shape[1:])
        held_maps = object_maps(held_boxes, args.force_heads, agent.attention_shape[1:])
        print(f"heads 0..{len(args.force_heads) - 1} forced onto {', '.join(args.force_heads)}")
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate)
    rng = np.random.default_rng(args.seed)
    burn_in = 5
    print(f"{args.agent} {overrides or '(default init)'}, Adam lr {args.learning_rate:g}, T {args.unroll_length}, "
          f"B {args.batch_size}, loss after {burn_in} burn-in steps")
    uniform = math.log(math.prod(agent.attention_shape[1:])) if agents.is_attention_agent(agent) else math.nan
    print(f"| update | held-out accuracy (majority class) | attention entropy per head (uniform {uniform:.2f}) | "
          "lift on ball per head | "
          "lift on player per head | seconds |")
    print("|---:|---|---|---|---|---:|")
    evaluations = []
    for update in range(args.updates + 1):
        if update % args.eval_every == 0:
            agent.eval()
            m = evaluate(agent, held_obs, held_targets, held_boxes, burn_in, held_maps)
            agent.train()
            evaluations.append({"update": update, "seconds": time.perf_counter() - started, **m})
            if args.json is not None:
                write_json(args.json, args, overrides, evaluations)
            lift = {k: ", ".join(f"{v:.1f}" for v in m["lift"].get(k, [])) for k in ("ball", "player")}
            print(f"| {update} | {m['accuracy']:.2f} ({m['majority']:.2f}) | "
                  f"{', '.join(f'{e:.2f}' for e in m['entropy'])} | {lift['ball']} | {lift['player']} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)
        if update == args.updates:
            break
        batch_obs, batch_targets, batch_maps = unrolls(obs, targets, args.unroll_length, args.batch_size, rng,
                                                       train_maps)
        output, _ = agent(inputs_for(batch_obs), agent.initial_state(args.batch_size),
                          **({} if batch_maps is None else {"attention_override": forcing(batch_maps)}))
        loss = F.cross_entropy(output.policy_logits[burn_in:, :, :3].flatten(0, 1), batch_targets[burn_in:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def write_json(path: Path, args: argparse.Namespace, overrides: dict, evaluations: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "plot", "out", "agent_config")}
    label = args.agent + "".join(f", {k}={v}" for k, v in overrides.items()) + (
        f", heads forced onto {'+'.join(args.force_heads)}" if args.force_heads else "")
    path.write_text(json.dumps({"label": label, "settings": settings, "agent_config": overrides,
                                "evaluations": evaluations}, indent=1))


def plot_results(results: list[Path], out: Path) -> None:
    """Held-out accuracy against updates, a line per probe result, with each one's majority-class level."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for path in results:
        result = json.loads(path.read_text())
        rows = result["evaluations"]
        ax.plot([r["update"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=result["label"])
    ax.axhline(rows[0]["majority"], color="grey", linestyle="--", label="always the majority class")
    ax.set_xlabel("supervised updates (T 20 x B 16 frames each)")
    ax.set_ylabel("held-out accuracy: ball above / below / level with the paddle")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    FigureCanvasAgg(fig)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
