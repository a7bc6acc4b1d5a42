"""Evaluating a checkpoint: play N episodes under an evaluation protocol and save per-episode raw
scores and lengths (``eval/episodes.csv``) and their summary (``eval/summary.json``): mean with a
95% Student-t interval and, where the task has reference scores, the normalised score.

Episode selection without a bias towards short episodes: with B environments stepped together,
env slot b contributes exactly its first ``quota[b]`` episodes (``episode_quotas``), whatever
their length; episodes a slot finishes beyond its quota are discarded. Taking the first N
episodes to finish over all slots instead would over-represent short episodes.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from s3ta import __version__
from s3ta.evaluation.metrics import mean_ci, normalized_score
from s3ta.evaluation.reference import game_name, reference_for

EVAL_DIR = "eval"
EPISODES_CSV = "episodes.csv"
SUMMARY_JSON = "summary.json"
DEFAULT_MAX_ENVS = 8
# Sampling from the policy is the default: the paper's IMPALA agents act (and are scored) by
# sampling from their softmax policy, and argmax play can lock a deterministic emulator into a loop.
DEFAULT_POLICY = "sampled"


class Episode(NamedTuple):
    index: int  # position in the saved order: env slot, then the slot's own episode order
    env_slot: int
    episode_return: float  # raw undiscounted score
    length: int  # agent steps


def episode_quotas(num_episodes: int, num_envs: int) -> np.ndarray:
    """Episodes each env slot contributes: N // B, plus one for the first N % B slots. [B]"""
    if num_episodes < 1 or num_envs < 1:
        raise ValueError(f"need num_episodes >= 1 and num_envs >= 1, got {num_episodes}, {num_envs}")
    quotas = np.full(num_envs, num_episodes // num_envs, np.int64)
    quotas[: num_episodes % num_envs] += 1
    return quotas


def play(agent, env, num_episodes: int, *, greedy: bool = False, seed: int | None = None,
         on_episode: Callable[[Episode], None] | None = None,
         on_step: Callable[[Any], None] | None = None) -> list[Episode]:
    """Play ``agent`` in the batched ``env`` until every slot has finished its quota of episodes.

    Returns the episodes ordered by env slot, then by finishing order within the slot.
    ``on_episode(episode)`` is called as each counted episode finishes; its ``index`` is already
    its place in that order (the ``episode`` column of episodes.csv). ``on_step(step)`` is called with
    every batched ``rollout.Step`` before the episodes it ends are counted (for per-step traces).
    """
    from s3ta.rollout import run_episodes  # torch is imported only when episodes are played

    quotas = episode_quotas(num_episodes, env.num_envs)
    first_index = np.concatenate([[0], np.cumsum(quotas)[:-1]])  # index of each slot's first episode
    found: list[list[tuple[float, int]]] = [[] for _ in range(env.num_envs)]
    for step in run_episodes(agent, env, sys.maxsize, greedy=greedy, seed=seed):
        if on_step is not None:
            on_step(step)
        result = step.result
        for slot in np.flatnonzero(result.done):
            if len(found[slot]) < quotas[slot]:
                found[slot].append((float(result.episode_return[slot]), int(result.episode_length[slot])))
                if on_episode is not None:
                    index = int(first_index[slot]) + len(found[slot]) - 1
                    on_episode(Episode(index, int(slot), *found[slot][-1]))
        if all(len(f) == q for f, q in zip(found, quotas)):
            break
    ordered = [(slot, ret, length) for slot, runs in enumerate(found) for ret, length in runs]
    return [Episode(i, slot, ret, length) for i, (slot, ret, length) in enumerate(ordered)]


def summarize(episodes: list[Episode], env_id: str, confidence: float = 0.95) -> dict[str, Any]:
    """Mean raw return with its t-interval, length statistics and the normalised score."""
    returns = np.array([e.episode_return for e in episodes], np.float64)
    lengths = np.array([e.length for e in episodes], np.float64)
    ret = mean_ci(returns, confidence)
    summary: dict[str, Any] = {
        "episodes": len(episodes),
        "return": {"mean": ret.value, "ci_low": ret.low, "ci_high": ret.high, "confidence": confidence,
                   "std": float(returns.std(ddof=1)) if returns.size > 1 else math.nan,
                   "min": float(returns.min()), "max": float(returns.max())},
        "length": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
        "normalized": None,
    }
    ref = reference_for(env_id)
    if ref is not None:
        def to_norm(x: float) -> float:  # linear, so it maps the interval's ends too
            return float(normalized_score(x, ref.low, ref.high))

        summary["normalized"] = {
            "suite": ref.suite, "low_name": "random", "low": ref.low, "high_name": ref.high_name,
            "high": ref.high, "source": ref.source,
            "mean": to_norm(ret.value), "ci_low": to_norm(ret.low), "ci_high": to_norm(ret.high),
        }
    return summary


def write_results(out_dir: str | Path, episodes: list[Episode], summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``episodes.csv`` (one row per episode) and ``summary.json`` into ``out_dir``.

    Both are written to temporary files first, so a failed write (a full disk) leaves an earlier
    evaluation in ``out_dir`` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    norm = summary.get("normalized")
    csv_path, json_path = out_dir / EPISODES_CSV, out_dir / SUMMARY_JSON
    csv_tmp, json_tmp = csv_path.with_suffix(".csv.tmp"), json_path.with_suffix(".json.tmp")
    try:
        _write_files(csv_tmp, json_tmp, episodes, summary, norm)
    except BaseException:
        csv_tmp.unlink(missing_ok=True)
        json_tmp.unlink(missing_ok=True)
        raise
    csv_tmp.replace(csv_path)
    # Replaced last: its presence marks a complete evaluation (experiment and report rely on it).
    json_tmp.replace(json_path)
    return csv_path, json_path


def _write_files(csv_path: Path, json_path: Path, episodes: list[Episode], summary: dict[str, Any],
                 norm: dict[str, Any] | None) -> None:
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["episode", "env_slot", "return", "length", "normalized_score"])
        for e in episodes:
            score = "" if norm is None else repr(float(normalized_score(e.episode_return, norm["low"], norm["high"])))
            writer.writerow([e.index, e.env_slot, repr(e.episode_return), e.length, score])
    json_path.write_text(json.dumps(summary, indent=2, allow_nan=True) + "\n")


def read_episode_returns(eval_dir: str | Path) -> np.ndarray:
    """The raw returns column of ``eval_dir/episodes.csv``, in saved order. [N]"""
    with open(Path(eval_dir) / EPISODES_CSV, newline="") as f:
        return np.array([float(row["return"]) for row in csv.DictReader(f)], np.float64)


def run_dir_of(checkpoint_path: Path) -> Path:
    """The run directory holding a checkpoint file (``RUN/checkpoints/ckpt-*.pt`` -> ``RUN``); for a zoo
    agent's weights, ``runs/zoo/NAME`` under the working directory (never the installed package)."""
    from s3ta.checkpoints import ZOO_DIR

    parent = checkpoint_path.parent
    if parent.parent.resolve() == ZOO_DIR.resolve():
        return Path("runs") / "zoo" / parent.name
    return parent.parent if parent.name == "checkpoints" else parent


def evaluate_checkpoint(checkpoint: str | Path, episodes: int, *, env: str | None = None,
                        protocol: str | None = None, seed: int | None = None, greedy: bool = False,
                        num_envs: int | None = None, out: str | Path | None = None,
                        progress: bool = True, replace: bool = True) -> tuple[dict[str, Any], list[Episode]]:
    """Evaluate a checkpoint file, ``zoo:NAME`` or a run directory's newest checkpoint that loads (newer
    ones that do not are skipped and named in the summary's ``skipped_checkpoints``); save and return the
    results.

    Defaults come from the checkpoint's training config: its env, its protocol and its seed (so
    the evaluation episodes are reproducible). ``num_envs`` defaults to min(episodes, 8). Results
    go to ``out`` (default: ``RUN_DIR/eval``), which is checked before any episode is played: it
    must be a writable directory, and with ``replace=False`` (``s3ta eval`` without ``--force``)
    must not hold an evaluation already (``OutputExistsError``).
    """
    from tqdm import tqdm

    from s3ta import envs
    from s3ta.checkpoints import load_agent, skipped_note
    from s3ta.outputs import refuse_to_replace, writable_dir

    agent, ckpt = load_agent(checkpoint)
    config = ckpt.config
    env_id = env or config["env"]
    protocol = protocol or config.get("protocol", "paper")
    seed = config.get("seed", 0) if seed is None else seed
    num_envs = num_envs or min(episodes, DEFAULT_MAX_ENVS)
    vec_env = envs.make(env_id, num_envs, seed=seed, protocol=protocol)
    try:
        fits = tuple(vec_env.observation_shape) == tuple(agent.observation_shape)
        if not fits or vec_env.num_actions != agent.num_actions:
            raise ValueError(f"env {env_id!r} gives observations {tuple(vec_env.observation_shape)} and "
                             f"{vec_env.num_actions} actions, but the checkpoint's agent was built for observations "
                             f"{tuple(agent.observation_shape)} and {agent.num_actions} actions")
        out_dir = Path(out) if out is not None else run_dir_of(ckpt.path) / EVAL_DIR
        refuse_to_replace(out_dir, (SUMMARY_JSON, EPISODES_CSV), "an evaluation", replace)
        writable_dir(out_dir)  # before playing: a fault here costs nothing
        # A bar on a terminal; one plain line per episode in a log file.
        interactive = progress and sys.stderr.isatty()
        bar = tqdm(total=episodes, desc=f"eval {env_id}", unit="episode", disable=not interactive, file=sys.stderr)
        returns: list[float] = []

        def on_episode(episode: Episode) -> None:
            returns.append(episode.episode_return)
            bar.update(1)
            bar.set_postfix(mean_return=f"{np.mean(returns):.4g}")
            if progress and not interactive:  # "episode" is the index the table and episodes.csv show
                print(f"eval {env_id}: episode {episode.index} (env slot {episode.env_slot}) return "
                      f"{episode.episode_return:.6g}, {episode.length} steps [{len(returns)}/{episodes} done]",
                      file=sys.stderr, flush=True)

        try:
            played = play(agent, vec_env, episodes, greedy=greedy, seed=seed, on_episode=on_episode)
        finally:
            bar.close()
        frames_per_step = int(vec_env.frames_per_step)
    finally:
        vec_env.close()

    summary = {
        "env": env_id, "game": game_name(env_id), "agent": ckpt.agent["name"],
        "checkpoint": str(ckpt.path), "checkpoint_frames": int(ckpt.counters.get("frames", 0)),
        **({"skipped_checkpoints": skipped_note(ckpt)} if ckpt.skipped else {}),
        "train_total_frames": config.get("total_frames"), "train_seed": config.get("seed"),
        "protocol": protocol, "seed": seed, "policy": "greedy" if greedy else "sampled",
        "num_envs": num_envs, "frames_per_step": frames_per_step,
        "episode_selection": "the first N // B (+1 for the first N % B) episodes of each of the B env slots",
        **summarize(played, env_id),
        "s3ta_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_results(out_dir, played, summary)
    summary["output_dir"] = str(out_dir)
    return summary, played


def _fmt(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def format_results(summary: dict[str, Any], episodes: list[Episode]) -> str:
    """The per-episode table (when ``episodes`` is non-empty) and the summary lines that ``s3ta eval`` prints."""
    norm = summary.get("normalized")
    label = None if norm is None else ("HNS" if norm["suite"] == "atari" else "normalised")
    header = f"{'episode':>7}  {'slot':>4}  {'return':>10}  {'length':>7}" + (f"  {label:>10}" if label else "")
    lines = [header] if episodes else []
    for e in episodes:
        line = f"{e.index:>7}  {e.env_slot:>4}  {e.episode_return:>10.6g}  {e.length:>7}"
        if norm:
            line += f"  {float(normalized_score(e.episode_return, norm['low'], norm['high'])):>10.4f}"
        lines.append(line)
    ret = summary["return"]
    pct = int(round(100 * ret["confidence"]))
    lines.append(f"{summary['env']} ({summary['agent']}, {summary['checkpoint_frames']:,} frames trained), "
                 f"{summary['episodes']} episodes, protocol {summary['protocol']}, {summary['policy']} actions, "
                 f"seed {summary['seed']}")
    if summary.get("skipped_checkpoints"):
        lines.append(summary["skipped_checkpoints"])
    lines.append(f"raw score: mean {_fmt(ret['mean'])}  {pct}% CI [{_fmt(ret['ci_low'])}, {_fmt(ret['ci_high'])}]"
                 f"  (std {_fmt(ret['std'])}, min {_fmt(ret['min'])}, max {_fmt(ret['max'])});"
                 f" mean length {summary['length']['mean']:.1f} steps")
    if norm:
        name = "human-normalised score" if norm["suite"] == "atari" else "optimal-normalised score"
        lines.append(f"{name}: mean {norm['mean']:.2%}  {pct}% CI [{_fmt_pct(norm['ci_low'])}, "
                     f"{_fmt_pct(norm['ci_high'])}]  (random {norm['low']:g}, {norm['high_name']} {norm['high']:g})")
    else:
        lines.append("no reference scores for this env: raw scores only")
    if "output_dir" in summary:
        out_dir = Path(summary["output_dir"])
        lines.append(f"saved {out_dir / EPISODES_CSV} and {out_dir / SUMMARY_JSON}")
    return "\n".join(lines)


def _fmt_pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.2%}"
