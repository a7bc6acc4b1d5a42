"""`s3ta demo`: the main job on a built-in default. Trains s3ta-small on catch for a few minutes on
a laptop CPU, evaluates it, and saves a learning curve, attention pictures, a video and the
interactive viewer of the trained agent in one run directory. Heavy imports stay inside the
functions: `s3ta demo --help` reads DEMO_SETTINGS without loading torch or numpy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from s3ta.training.config import TrainConfig

# The TrainConfig fields the demo sets, tuned for catch on 2 CPU cores; see docs/benchmarks.md for the
# learning curve and timings. Plain values: building the TrainConfig validates its agent, which loads torch.
DEMO_SETTINGS = dict(
    env="catch",
    agent="s3ta-small",
    total_frames=250_000,
    unroll_length=20,
    batch_size=8,
    learning_rate=2e-3,
    learner_threads=1,  # at B = 8 a second learner thread gains this small model little; the actor gets that core
    log_interval=10.0,
    checkpoint_interval=60.0,
)
EVAL_EPISODES = 200
# Training speed of the demo config in parallel mode on 2 CPU cores (docs/benchmarks.md: 250,000
# frames in about 200 s), for the time estimate printed before training.
DEMO_FRAMES_PER_SECOND = 1250.0


def estimate(total_frames: int, frames_per_second: float = DEMO_FRAMES_PER_SECOND) -> str:
    """The expected training time of ``total_frames`` frames, in words ("about 3 minutes")."""
    seconds = total_frames / frames_per_second
    if seconds < 90:
        return f"about {max(1, round(seconds))} seconds"
    return f"about {round(seconds / 60)} minutes"


def learning_curve(run_dir: Path, path: Path) -> Path:
    """Training returns against frames (mean per bin) as a PNG."""
    import numpy as np

    from s3ta.evaluation.metrics import binned_mean
    from s3ta.evaluation.plots import learning_curves
    from s3ta.evaluation.reference import reference_for
    from s3ta.evaluation.report import read_training_episodes

    frames, returns = read_training_episodes(run_dir)
    edges = np.linspace(0, max(frames.max(), 1), 41)
    means = binned_mean(frames, returns, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    return learning_curves({"s3ta-small": (centres, means[None])}, path, "catch", reference=reference_for("catch"))


def run_demo(out: str | Path = "runs/demo", total_frames: int | None = None, mode: str = "parallel") -> int:
    from s3ta import envs
    from s3ta.analysis.recording import record
    from s3ta.evaluation.evaluate import evaluate_checkpoint, format_results
    from s3ta.outputs import writable_dir
    from s3ta.training.checkpoint import latest_checkpoint, load_agent
    from s3ta.training.loop import DONE_MARKER, train
    from s3ta.viz import save_attention_figure, write_video, write_viewer

    out = writable_dir(out)  # before minutes of training
    config = TrainConfig.from_dict({**DEMO_SETTINGS, "mode": mode,
                                    **({"total_frames": total_frames} if total_frames else {})})
    started = time.monotonic()
    if (out / DONE_MARKER).exists():
        print(f"{out} already holds a finished demo run; delete it to train again. Re-evaluating it.")
    else:
        latest = latest_checkpoint(out)
        resume = latest is not None
        frames_part = latest.stem.rpartition("-")[2] if resume else ""  # ckpt-<frames>.pt
        done = int(frames_part) if frames_part.isdigit() else 0
        print(f"training {config.agent} on {config.env} for {config.total_frames:,} frames "
              f"({'resuming at ' + format(done, ',') + ' frames, ' if resume else ''}"
              f"{estimate(max(config.total_frames - done, 0))} on 2 CPU cores) -> {out}", flush=True)
        summary = train(config, out, resume=resume)
        if not summary["finished"]:
            print(f"stopped at {summary['frames']:,} frames; run `s3ta demo` again to continue")
            return 130
    train_seconds = time.monotonic() - started

    print(f"evaluating on {EVAL_EPISODES} episodes (greedy)")
    results, episodes = evaluate_checkpoint(out, EVAL_EPISODES, greedy=True, progress=False)
    print(format_results(results, []))

    agent, checkpoint = load_agent(out)
    env = envs.make(config.env, 1, seed=config.seed + 1)
    recording = record(agent, env, num_episodes=4, seed=config.seed + 1, greedy=True,
                       source={"checkpoint": str(checkpoint.path), "env": config.env})
    env.close()
    recording_dir = recording.save(out / "recording", replace=True)  # the demo's own, remade with its videos
    files = {
        "checkpoint": checkpoint.path,
        "learning curve": learning_curve(out, out / "learning_curve.png"),
        "attention picture": save_attention_figure(recording, out / "attention.png", num_frames=6),
        "attention video": write_video(recording, out / "attention.mp4"),
        "attention GIF": write_video(recording, out / "attention.gif", episodes=[0]),
        "interactive viewer": write_viewer(recording, out / "viewer.html"),
        "evaluation": Path(results["output_dir"]) / "summary.json",
        "TensorBoard logs": out / "tensorboard",
    }
    (out / "demo.json").write_text(json.dumps({
        "train_seconds": train_seconds, "frames": checkpoint.counters["frames"],
        "eval_mean_return": results["return"]["mean"], "eval_episodes": EVAL_EPISODES,
        "recording": str(recording_dir), **{k: str(v) for k, v in files.items()}}, indent=2) + "\n")
    print(f"\nmean greedy return {results['return']['mean']:.3f} over {EVAL_EPISODES} episodes "
          f"(optimal 1.0, random about -0.75). Where to look:")
    for name, path in files.items():
        print(f"  {name:20s} {path}")
    print(f"  {'explain further':20s} s3ta explain whatwhere {recording_dir}  (also saliency, intervene, inject, grounding)")
    print(f"  {'audit (under 1 min)':20s} s3ta explain audit {out} --out {out / 'audit'}  (docs/interpretability.md)")
    return 0
