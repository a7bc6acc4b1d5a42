"""The zoo: trained reference agents shipped inside the package, one folder each (weights, card.json,
learning curve, attention GIF), addressed as ``zoo:NAME`` wherever a checkpoint is taken.

Reading the zoo (its names, cards and hash-checked weights) is ``s3ta.checkpoints``, the low module
that every command loads agents through; its names are re-exported here. This module is the zoo's
maintainer side, above evaluation, analysis and the plots: ``add`` makes a zoo agent from a training
run (evaluates it, draws its curve and GIF, writes its card, with the training hours and the device and
arithmetic of each stretch that ``s3ta.evaluation.runlog`` reads from the run), and ``s3ta.zoo.hub``
exports an agent as a folder for a model hub.

A zoo agent's ``weights.pt`` is an s3ta checkpoint holding only the model (no optimizer, schedule or RNG
state), so ``s3ta.checkpoints.load_agent("zoo:NAME")`` reads it with ``weights_only=True`` like any
other. ``card.json`` says how it was made and scored; its ``sha256`` is checked on every load.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable

from s3ta.checkpoints import (  # noqa: F401 - the zoo's registry, re-exported
    CARD,
    CURVE,
    GIF,
    MAX_WEIGHTS_BYTES,
    PREFIX,
    WEIGHTS,
    ZOO_DIR,
    ZooError,
    is_zoo_name,
    sha256,
)
from s3ta.checkpoints import zoo_card as card
from s3ta.checkpoints import zoo_folder as folder
from s3ta.checkpoints import zoo_names as names
from s3ta.checkpoints import zoo_weights as weights_path
from s3ta.evaluation.runlog import trained_on, training_hours  # noqa: F401 - training_hours re-exported


def describe_machine() -> str:
    """CPU model, core count, GPU if any, torch version: the card's "machine"."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU"
    return f"{os.cpu_count()} cores of {cpu}{gpu}, torch {torch.__version__}"


def export_weights(checkpoint_path: str | Path, out: Path) -> Path:
    """Write the model-only checkpoint of ``checkpoint_path`` to ``out``; raises ZooError over 10 MB."""
    import torch

    from s3ta.checkpoints import checkpoint_payload, load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    torch.save(checkpoint_payload(model=checkpoint.model, agent=checkpoint.agent, config=checkpoint.config,
                                  counters=checkpoint.counters), out)
    if out.stat().st_size > MAX_WEIGHTS_BYTES:
        raise ZooError(f"{out} is {out.stat().st_size / 2**20:.1f} MB; zoo weights must be at most 10 MB")
    return out


def add(run_dir: str | Path, name: str, *, checkpoint: str | Path | None = None, episodes: int = 30,
        gif_steps: int = 240, root: Path = ZOO_DIR, machine: str | None = None, notes: str = "",
        log: Callable[[str], None] = print, progress: bool = False) -> Path:
    """Make zoo agent ``name`` from a training run: its newest checkpoint that loads (or ``checkpoint``) as weights,
    ``episodes`` evaluation episodes under the run's protocol (sampled actions, the run's seed), the
    learning curve, and an attention GIF of the first ``gif_steps`` steps of one evaluation episode.
    ``log`` takes a line per stage; ``progress`` adds progress bars (on stderr) while the GIF's episode is
    recorded and written, as `s3ta explain record` and `s3ta explain video` show them."""
    from s3ta import agents, envs
    from s3ta.analysis.recording import record
    from s3ta.checkpoints import load_agent, load_checkpoint
    from s3ta.evaluation.evaluate import evaluate_checkpoint
    from s3ta.evaluation.plots import run_learning_curve
    from s3ta.viz import write_video
    from s3ta.zoo.hub import train_command

    run_dir = Path(run_dir)
    source = load_checkpoint(checkpoint or run_dir)  # a run's newest checkpoint that loads
    for path, reason in source.skipped:
        log(f"skipped unreadable checkpoint {path.name}: {reason}")
    source = source.path
    target = root / name
    staging = root / f".{name}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        weights = export_weights(source, staging / WEIGHTS)
        agent, ckpt = load_agent(weights)
        config = ckpt.config
        log(f"evaluating {source} on {episodes} episodes of {config['env']}")
        summary, played = evaluate_checkpoint(weights, episodes, out=staging / "eval", progress=True)
        log("learning curve")
        run_learning_curve(run_dir, staging / CURVE, title=f"{name}: {config['agent']} on {config['env']}")
        log(f"attention GIF: recording up to {gif_steps} steps of one episode")
        env = envs.make(config["env"], 1, seed=config.get("seed", 0) + 1, protocol=config.get("protocol", "paper"))
        try:
            recording = record(agent, env, num_episodes=1, seed=config.get("seed", 0) + 1, max_steps=gif_steps,
                               source={"checkpoint": f"{PREFIX}{name}", "env": config["env"]}, progress=progress)
        finally:
            env.close()
        if agents.is_attention_agent(agent):
            write_video(recording, staging / GIF, max_steps=gif_steps, fps=15.0, progress=progress)
        shutil.rmtree(staging / "eval")
        ret = summary["return"]
        info = {
            "name": name,
            "env": config["env"],
            "agent": config["agent"],
            "preset": config.get("preset", ""),
            "precision": config.get("precision", "fp32"),
            "config": config,
            "agent_description": ckpt.agent,
            "frames": int(ckpt.counters["frames"]),
            "updates": int(ckpt.counters["updates"]),
            "wall_clock_hours": round(training_hours(run_dir), 3),
            "trained_on": [stretch._asdict() for stretch in trained_on(run_dir)],  # attempts.json: device, arithmetic
            "machine": machine or describe_machine(),
            "protocol": config.get("protocol", "paper"),
            "train_command": train_command(config, out=f"runs/{name}"),
            "evaluation": {
                "episodes": len(played), "policy": summary.get("policy", "sampled"), "seed": summary.get("seed"),
                "mean": ret["mean"], "ci_low": ret["ci_low"], "ci_high": ret["ci_high"],
                "confidence": ret["confidence"], "returns": [e.episode_return for e in played],
                "normalized": summary.get("normalized"),
                "command": f"s3ta eval {PREFIX}{name} --episodes {episodes}",
            },
            "sha256": sha256(weights),
            "weights_bytes": weights.stat().st_size,
            "source_checkpoint": str(source),
            "s3ta_commit": _git_commit(),
            "notes": notes,
        }
        (staging / CARD).write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=ZOO_DIR, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def table(root: Path = ZOO_DIR) -> list[dict[str, Any]]:
    """One row per zoo agent for ``s3ta zoo list``."""
    rows = []
    for name in names(root):
        info = card(name, root)
        evaluation = info["evaluation"]
        rows.append({"name": name, "env": info["env"], "agent": info["agent"], "frames": info["frames"],
                     "hours": info["wall_clock_hours"], "mean": evaluation["mean"], "ci_low": evaluation["ci_low"],
                     "ci_high": evaluation["ci_high"], "episodes": evaluation["episodes"]})
    return rows
