"""Point by point: replays a Pong checkpoint's `s3ta eval` episodes (same env slots, seed and sampled
actions, so the same games) and records, per episode, when each point was won or lost, the policy's
entropy and value, and where the agent's paddle was (read from the frame's pixels).

Asks of a lost game: was it lost from the serve or after a turn, and did the agent play differently
in it (paddle stuck at a wall, a flatter policy)? Writes ``--out/points.json`` and a plot of the
score difference through each episode.

``--reset-at-points`` is the intervention on the recurrent state: the agent's state is zeroed after every
point, as at the start of an episode. If lost games come from a state of the recurrent core that the
agent does not leave, they should become rarer; if from the court position, they should not.

    python benchmarks/research/pong_points.py benchmarks/results/training-logs/pong-s2/weights-20M.pt --episodes 30 \\
        --out runs/pong7-points --plot docs/img/pong7-points.png
    python benchmarks/research/pong_points.py benchmarks/results/training-logs/pong-s2/weights-20M.pt --episodes 60 \\
        --reset-at-points --out runs/pong7-reset
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from s3ta import envs
from s3ta.agents import AgentInputs
from s3ta.evaluation.evaluate import DEFAULT_MAX_ENVS, Episode, play
from s3ta.evaluation.metrics import mean_ci
from s3ta.training.checkpoint import load_agent

PADDLE_RGB = (92, 186, 92)  # the agent's (right, green) paddle
PADDLE_COLUMNS = slice(140, 144)
COURT_ROWS = (34, 194)  # between the top and bottom walls


def paddle_y(obs: np.ndarray) -> np.ndarray:
    """Centre row of the agent's paddle in each frame, NaN where it is not drawn. obs: [B, 3, 210, 160]."""
    strip = obs[:, :, COURT_ROWS[0]:COURT_ROWS[1], PADDLE_COLUMNS]  # [B, 3, R, 4]
    match = np.all(strip == np.array(PADDLE_RGB, np.uint8)[None, :, None, None], axis=1).any(-1)  # [B, R]
    rows = np.arange(COURT_ROWS[0], COURT_ROWS[1], dtype=np.float64)
    count = match.sum(-1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (match * rows).sum(-1) / np.maximum(count, 1), np.nan)


class ResetAtPoints(nn.Module):
    """``agent`` with its recurrent state zeroed after every point: the input ``done`` (episode start) is
    raised on each step whose previous reward is nonzero, so the agent resets its state and previous
    action and reward there exactly as at the start of an episode."""

    def __init__(self, agent: nn.Module):
        super().__init__()
        self.agent = agent

    def initial_state(self, batch_size: int):
        return self.agent.initial_state(batch_size)

    def forward(self, inputs: AgentInputs, state):
        return self.agent(inputs._replace(done=inputs.done | (inputs.prev_reward != 0)), state)


def _new_trace() -> dict:
    return dict(points=[], entropy=[], value=[], paddle=[])  # (step, +1/-1) per point; per-step values


def replay(checkpoint: str, episodes: int, *, reset_at_points: bool = False,
           seed: int | None = None) -> list[dict]:
    """The evaluation episodes of ``s3ta eval CHECKPOINT --episodes N`` (``evaluate.play`` with the same
    env slots, seed and sampled actions), each with its per-step trace. ``reset_at_points`` zeroes the
    agent's recurrent state after every point; ``seed`` replaces the checkpoint's (another sample of games)."""
    agent, ckpt = load_agent(checkpoint)
    config = ckpt.config
    if config["env"] != "pong":
        raise SystemExit(f"{checkpoint} was trained on {config['env']!r}; this script reads Pong's paddle")
    if reset_at_points:
        agent = ResetAtPoints(agent)
    seed = config.get("seed", 0) if seed is None else seed
    num_envs = min(episodes, DEFAULT_MAX_ENVS)
    env = envs.make("pong", num_envs, seed=seed, protocol=config.get("protocol", "paper"))
    traces = [_new_trace() for _ in range(num_envs)]  # the episode each slot is playing
    ended = [_new_trace() for _ in range(num_envs)]  # the episode each slot ended last
    played: list[dict] = []

    def on_step(step) -> None:
        entropy = torch.distributions.Categorical(logits=step.output.policy_logits.float()).entropy().cpu().numpy()
        value, ys, result = step.output.baseline.float().cpu().numpy(), paddle_y(step.timestep.obs), step.result
        for slot, trace in enumerate(traces):
            trace["entropy"].append(float(entropy[slot]))
            trace["value"].append(float(value[slot]))
            trace["paddle"].append(float(ys[slot]))
            if result.reward[slot] != 0:
                trace["points"].append((len(trace["entropy"]) - 1, int(np.sign(result.reward[slot]))))
            if result.done[slot]:
                ended[slot], traces[slot] = trace, _new_trace()

    def on_episode(episode: Episode) -> None:
        played.append(dict(index=episode.index, slot=episode.env_slot, episode_return=episode.episode_return,
                           length=episode.length, **ended[episode.env_slot]))
        print(f"episode {episode.index}: return {episode.episode_return:+.0f}", file=sys.stderr, flush=True)

    try:
        play(agent, env, episodes, seed=seed, on_episode=on_episode, on_step=on_step)
    finally:
        env.close()
    return sorted(played, key=lambda e: e["index"])


def summarize(episode: dict) -> dict:
    """One line of the table: the points, where the score difference turned, the policy and the paddle."""
    signs = np.array([s for _, s in episode["points"]])
    diff = np.cumsum(signs) if signs.size else np.zeros(0)
    paddle = np.array(episode["paddle"])
    seen = paddle[~np.isnan(paddle)]
    at_wall = float(np.mean((seen < COURT_ROWS[0] + 12) | (seen > COURT_ROWS[1] - 12))) if seen.size else np.nan
    won_first = int(np.argmax(signs > 0)) if np.any(signs > 0) else None
    return dict(index=episode["index"], slot=episode["slot"], episode_return=episode["episode_return"],
                length=episode["length"], points_won=int(np.sum(signs > 0)), points_lost=int(np.sum(signs < 0)),
                first_points=("".join("+" if s > 0 else "-" for s in signs[:6])),
                lowest_difference=int(diff.min()) if diff.size else 0,
                first_point_won_at=won_first,
                entropy=float(np.mean(episode["entropy"])), value=float(np.mean(episode["value"])),
                paddle_at_wall=at_wall, paddle_std=float(seen.std()) if seen.size else np.nan)


def plot(episodes: list[dict], path: Path) -> None:
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for e in episodes:
        steps = [0] + [t for t, _ in e["points"]]
        diff = np.concatenate([[0], np.cumsum([s for _, s in e["points"]])])
        lost = e["episode_return"] < 0
        ax.step(steps, diff, where="post", color="tab:red" if lost else "tab:blue", alpha=0.9 if lost else 0.35,
                linewidth=1.6 if lost else 0.8, label=f"episode {e['index']} ({e['episode_return']:+.0f})" if lost else None)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("agent step")
    ax.set_ylabel("points won − points lost")
    ax.set_title("Pong evaluation episodes, point by point (blue: won games)", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--reset-at-points", action="store_true",
                        help="zero the agent's recurrent state after every point (as at an episode start)")
    parser.add_argument("--seed", type=int, help="env and action seed (default: the checkpoint's, as s3ta eval)")
    args = parser.parse_args(argv)
    episodes = replay(args.checkpoint, args.episodes, reset_at_points=args.reset_at_points, seed=args.seed)
    rows = [summarize(e) for e in episodes]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "points.json").write_text(json.dumps(dict(checkpoint=args.checkpoint, episodes=rows,
                                                          reset_at_points=args.reset_at_points, seed=args.seed,
                                                          points={e["index"]: e["points"] for e in episodes})))
    print("| episode | return | steps | points won / lost | first six points | lowest difference | "
          "policy entropy | value | paddle near a wall | paddle y std |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['index']} | {r['episode_return']:+.0f} | {r['length']} | {r['points_won']} / {r['points_lost']} | "
              f"`{r['first_points']}` | {r['lowest_difference']} | {r['entropy']:.2f} | {r['value']:+.2f} | "
              f"{r['paddle_at_wall']:.0%} | {r['paddle_std']:.1f} |")
    returns = np.array([r["episode_return"] for r in rows])
    score = mean_ci(returns)
    print(f"\nmean return {score.value:+.2f}, 95% CI [{score.low:+.2f}, {score.high:+.2f}] over {len(rows)} episodes; "
          f"games lost: {int(np.sum(returns < 0))}" + (" (state reset after every point)" if args.reset_at_points else ""))
    if args.plot:
        plot(episodes, args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
