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

    python benchmarks/ball_probe.py --updates 300
    python benchmarks/ball_probe.py --updates 300 --agent-config convlstm_init_gain=3 query_content_bias_gain=30
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from s3ta import agents
from s3ta.agents import AgentInputs
from s3ta.analysis.atari_objects import RamAtariEnv
from s3ta.analysis.grounding import step_grounding
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
    obs, targets, boxes = [], [], []
    for episode in range(episodes):
        env = RamAtariEnv("pong", seed=seed + episode)
        timestep = env.reset(seed=seed + episode)
        rng = np.random.default_rng(seed + episode)
        frames, episode_targets, episode_boxes = [], [], []
        for _ in range(steps):
            step_boxes, step_labels = timestep.info["boxes"][0], list(timestep.info["box_labels"][0])
            frames.append(timestep.obs[0].copy())
            episode_targets.append(label(step_boxes, step_labels))
            episode_boxes.append((step_boxes, step_labels))
            timestep = env.step(rng.integers(0, env.num_actions, 1))
        obs.append(np.stack(frames))
        targets.append(episode_targets)
        boxes.append(episode_boxes)
    return torch.from_numpy(np.stack(obs, axis=1)), torch.tensor(targets).T, boxes


def unrolls(obs: torch.Tensor, targets: torch.Tensor, length: int, batch: int, rng: np.random.Generator):
    """A batch of random windows [length, batch] (episode, start) from the collected play."""
    steps, episodes = targets.shape
    episode = rng.integers(0, episodes, batch)
    start = rng.integers(0, steps - length + 1, batch)
    index = start[None, :] + np.arange(length)[:, None]  # [T, B]
    return obs[index, episode[None, :]], targets[index, episode[None, :]]


def inputs_for(obs: torch.Tensor) -> AgentInputs:
    steps, batch = obs.shape[:2]
    return AgentInputs(obs, torch.zeros(steps, batch, dtype=torch.long), torch.zeros(steps, batch),
                       torch.zeros(steps, batch, dtype=torch.bool))


@torch.no_grad()
def evaluate(agent, obs: torch.Tensor, targets: torch.Tensor, boxes, burn_in: int) -> dict:
    output, _ = agent(inputs_for(obs), agent.initial_state(obs.shape[1]))
    predicted = output.policy_logits[burn_in:, :, :3].argmax(-1)
    accuracy = (predicted == targets[burn_in:]).float().mean().item()
    majority = targets[burn_in:].flatten().bincount(minlength=3).max().item() / targets[burn_in:].numel()
    if output.attention is None:  # a baseline without attention
        return {"accuracy": accuracy, "majority": majority, "entropy": [], "lift": {}}
    weights = output.attention[burn_in:].flatten(-2)
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(-1).mean((0, 1))
    mass, chance = {}, {}
    attention = output.attention.numpy()
    for episode, episode_boxes in enumerate(boxes):
        for t in range(burn_in, len(episode_boxes)):
            grounding = step_grounding(attention[t, episode], *episode_boxes[t], *obs.shape[-2:])
            for name in ("ball", "player"):
                if name in grounding["classes"]:
                    mass[name] = mass.get(name, 0.0) + np.asarray(grounding["classes"][name]["mass"])
                    chance[name] = chance.get(name, 0.0) + grounding["classes"][name]["chance"]
    return {"accuracy": accuracy, "majority": majority, "entropy": entropy.tolist(),
            "lift": {name: (mass[name] / chance[name]).tolist() for name in mass}}


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = dict(args.agent_config)

    started = time.perf_counter()
    obs, targets, _ = collect(args.train_episodes, args.steps, seed=1000)
    held_obs, held_targets, held_boxes = collect(3, 120, seed=2000)
    print(f"data: {obs.shape[1]} x {obs.shape[0]} training steps, 3 x 120 held out "
          f"({time.perf_counter() - started:.0f} s); label shares above/below/level "
          f"{', '.join(f'{v:.2f}' for v in (targets.flatten().bincount(minlength=3) / targets.numel()).tolist())}")
    torch.manual_seed(args.seed)
    agent = agents.build(args.agent, tuple(obs.shape[2:]), 18, **overrides)
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
    for update in range(args.updates + 1):
        if update % args.eval_every == 0:
            agent.eval()
            m = evaluate(agent, held_obs, held_targets, held_boxes, burn_in)
            agent.train()
            lift = {k: ", ".join(f"{v:.1f}" for v in m["lift"].get(k, [])) for k in ("ball", "player")}
            print(f"| {update} | {m['accuracy']:.2f} ({m['majority']:.2f}) | "
                  f"{', '.join(f'{e:.2f}' for e in m['entropy'])} | {lift['ball']} | {lift['player']} | "
                  f"{time.perf_counter() - started:.0f} |", flush=True)
        if update == args.updates:
            break
        batch_obs, batch_targets = unrolls(obs, targets, args.unroll_length, args.batch_size, rng)
        output, _ = agent(inputs_for(batch_obs), agent.initial_state(args.batch_size))
        loss = F.cross_entropy(output.policy_logits[burn_in:, :, :3].flatten(0, 1), batch_targets[burn_in:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


if __name__ == "__main__":
    main()
