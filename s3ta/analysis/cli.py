"""`s3ta explain`: record an agent, render videos and the HTML viewer, and run the analyses of
spec section 6 (what/where, saliency, interventions, sprite injection, grounding). Each analysis
reads a recording directory and writes JSON + PNG into ``<recording>/analysis`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys
from pathlib import Path
from typing import Any

from s3ta.cli import (Parser, UsageError, command, non_negative_int, percent_float, positive_float, positive_int,
                      unit_float)

SUBCOMMANDS = ("record", "video", "view", "whatwhere", "saliency", "intervene", "inject", "grounding")


def register(subparsers: argparse._SubParsersAction) -> None:
    explain = subparsers.add_parser(
        "explain", help="record an agent and explain what it attends to (videos, viewer, analyses)",
        description="Record an agent's episodes, render them, and test what its attention means. "
                    "Typical use: `s3ta explain record RUN_DIR --out rec/` then `s3ta explain view rec/`.")
    commands = explain.add_subparsers(dest="explain_command", metavar="SUBCOMMAND")
    explain.set_defaults(func=lambda args: (explain.print_help(), 0)[1])

    p = commands.add_parser("record", help="roll an agent out and store every step (frames, outputs, attention)")
    p.add_argument("checkpoint", nargs="?", help="checkpoint file or run directory (or use --agent for an untrained agent)")
    p.add_argument("--agent", help="build an untrained agent of this name instead of loading a checkpoint")
    p.add_argument("--env", help="environment id (default: the checkpoint's training env)")
    p.add_argument("--episodes", type=positive_int, default=1, help="episodes to record (default 1)")
    p.add_argument("--seed", type=int, help="seed of the env, the action sampling and an untrained agent's init "
                                         "(default: the checkpoint's training seed, as in `s3ta eval`; else 0)")
    p.add_argument("--protocol", choices=("paper", "machado"),
                   help="Atari protocol (default: the checkpoint's, else paper)")
    p.add_argument("--greedy", action="store_true", help="take the most likely action instead of sampling")
    p.add_argument("--max-steps", type=positive_int, help="stop after this many steps even if episodes are unfinished")
    p.add_argument("--no-ram", action="store_true", help="Atari: use the vector env (no RAM, no ground-truth boxes)")
    p.add_argument("--out", required=True, help="recording directory to write (new or empty)")
    p.add_argument("--force", action="store_true",
                   help="replace a recording already in --out, and with it everything in that directory made from "
                        "it (videos, viewer, analyses); default: refuse, exit 2")
    p.set_defaults(func=command("explain record")(_record))

    p = commands.add_parser("video", help="MP4 or GIF with per-head overlays and timelines")
    _recording_arg(p)
    p.add_argument("--out", help="output .mp4 or .gif (default: RECORDING/video.mp4)")
    p.add_argument("--fps", type=positive_float, default=15.0,
                   help="frames per second of the video, one recorded step per frame (default 15)")
    p.add_argument("--upsample", choices=("nearest", "bilinear"), default="nearest",
                   help="how attention maps are enlarged to the frame: blocks or smooth (default nearest)")
    p.add_argument("--opacity", type=unit_float, default=0.7,
                   help="opacity of the attention overlay on the frame, 0 (frame only) to 1 (default 0.7)")
    p.add_argument("--mode", choices=("attention", "whatwhere"), default="attention",
                   help="overlay each head's attention, or its what/where split (default attention)")
    _episode_args(p)
    p.set_defaults(func=command("explain video")(_video))

    p = commands.add_parser("view", help="write the self-contained interactive HTML viewer")
    _recording_arg(p)
    p.add_argument("--out", help="output .html (default: RECORDING/viewer.html)")
    _episode_args(p)
    p.set_defaults(func=command("explain view")(_view))

    p = commands.add_parser("whatwhere", help="content ('what') vs spatial ('where') logits per head over time")
    _recording_arg(p)
    _out_arg(p)
    p.add_argument("--frames", type=positive_int, default=3, help="frames to draw in the PNG (default 3)")
    p.set_defaults(func=command("explain whatwhere")(_whatwhere))

    p = commands.add_parser("saliency", help="Greydanus perturbation saliency of policy and value (any agent)")
    _recording_arg(p)
    _model_arg(p)
    _out_arg(p)
    p.add_argument("--steps", type=non_negative_int, nargs="+",
                   help="recorded steps (default: --num-steps spread over the recording)")
    p.add_argument("--num-steps", type=positive_int, default=3, help="how many steps when --steps is not given (default 3)")
    p.add_argument("--stride", type=positive_int, default=5, help="pixels between perturbation centres (default 5)")
    p.add_argument("--sigma", type=positive_float, default=5.0, help="std of the perturbation mask in pixels (default 5)")
    p.set_defaults(func=command("explain saliency")(_saliency))

    p = commands.add_parser("intervene", help="replace a head's attention or mask attended pixels; policy KL, flips, value change")
    _recording_arg(p)
    _model_arg(p)
    _out_arg(p)
    p.add_argument("--mode", default="all", choices=("all", "uniform", "shift", "freeze", "swap", "mask-topk", "mask-random"),
                   help="one intervention, or all of them on every head (default)")
    p.add_argument("--head", type=int, help="head to intervene on (mask modes: mask by this head's map, default all heads)")
    p.add_argument("--other-head", type=int, help="swap: the head to swap with")
    p.add_argument("--shift", type=int, nargs=2, default=(3, 3), metavar=("DY", "DX"), help="shift in cells (default 3 3)")
    p.add_argument("--from-step", type=int, help="freeze: the recorded step whose map is used (default: the middle)")
    p.add_argument("--percent", type=percent_float, default=10.0,
                   help="mask modes: percent of pixels masked, in (0, 100] (default 10)")
    p.add_argument("--random-repeats", type=positive_int, default=3, help="random masks averaged in the panel (default 3)")
    p.add_argument("--seed", type=int, default=0, help="mask-random: seed")
    p.add_argument("--persistent", action="store_true", help="intervene at every step and carry the state (default: each step alone)")
    p.set_defaults(func=command("explain intervene")(_intervene))

    p = commands.add_parser("inject", help="paste a sprite into the frames; attention on it and policy change vs a control")
    _recording_arg(p)
    _model_arg(p)
    _out_arg(p)
    p.add_argument("--sprite", default="shark", help="built-in sprite (shark, invader, square) or a .png file")
    p.add_argument("--scale", type=positive_int, default=1, help="integer enlargement of the sprite (default 1)")
    p.add_argument("--colour", type=int, nargs=3, metavar=("R", "G", "B"), help="recolour the sprite")
    p.add_argument("--at", type=float, nargs=2, metavar=("X", "Y"), help="top-left pixel at onset (default: frame centre)")
    p.add_argument("--velocity", type=float, nargs=2, default=(0.0, 0.0), metavar=("VX", "VY"), help="pixels per step")
    p.add_argument("--path", help="waypoints 'x,y;x,y;...' visited evenly after --at (instead of --velocity)")
    p.add_argument("--onset", type=int, help="first recorded step with the sprite (default: a third of the way in)")
    p.add_argument("--duration", type=int, help="steps the sprite stays (default: to the end)")
    p.set_defaults(func=command("explain inject")(_inject))

    p = commands.add_parser("grounding", help="attention mass on ground-truth objects vs area-matched chance")
    _recording_arg(p)
    _out_arg(p)
    p.set_defaults(func=command("explain grounding")(_grounding))

    # --- spec section 7 (issue 14): faithfulness, sanity, closed-loop, audit; see audit_cli.py ---
    from s3ta.analysis.audit_cli import register_audit_commands

    register_audit_commands(commands)


# --- argument helpers ------------------------------------------------------------------------
def _recording_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="recording directory (from `s3ta explain record`)")


def _out_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help="output directory (default: RECORDING/analysis)")


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", help="checkpoint or run directory (default: the weights stored in the recording)")


def _episode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=non_negative_int, nargs="+",
                   help="episode indices to show, from 0 as the video and viewer number them (default: all)")
    p.add_argument("--max-steps", type=positive_int, help="show at most this many steps")


def _load(path: str):
    from s3ta.analysis.recording import load_recording

    return load_recording(path)


def _model(args: argparse.Namespace, recording):
    from s3ta.analysis.common import analysed_agent

    return analysed_agent(recording, args.checkpoint)


def _written(*paths: Any) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


# --- commands --------------------------------------------------------------------------------
def _record(args: argparse.Namespace) -> int:
    import torch

    from s3ta import agents
    from s3ta.analysis.recording import check_save_target, record

    if bool(args.checkpoint) == bool(args.agent):
        raise UsageError("give either a CHECKPOINT or --agent NAME (an untrained agent), not both or neither")
    source: dict[str, Any] = {}
    if args.checkpoint:
        from s3ta.checkpoints import load_agent, skipped_note

        agent, checkpoint = load_agent(args.checkpoint)
        if checkpoint.skipped:
            print(skipped_note(checkpoint), file=sys.stderr)
        config = checkpoint.config
        env_id = args.env or config.get("env")
        protocol = args.protocol or config.get("protocol", "paper")
        seed = config.get("seed", 0) if args.seed is None else args.seed
        source.update(checkpoint=str(checkpoint.path), counters=checkpoint.counters, train_seed=config.get("seed"))
    else:
        if not args.env:
            raise UsageError("--agent needs --env")
        env_id, protocol = args.env, args.protocol or "paper"
        seed = 0 if args.seed is None else args.seed
        agent = None
    if not env_id:
        raise ValueError("the checkpoint names no env; pass --env")
    env = _make_env(env_id, seed, protocol, ram=not args.no_ram)
    if agent is None:
        torch.manual_seed(seed)
        agent = agents.build(args.agent, env.observation_shape, env.num_actions).eval()
        source["untrained"] = True
    if tuple(agent.observation_shape) != tuple(env.observation_shape) or agent.num_actions != env.num_actions:
        raise ValueError(f"the agent expects observations {tuple(agent.observation_shape)} and {agent.num_actions} "
                         f"actions; env {env_id!r} has observations {tuple(env.observation_shape)} and "
                         f"{env.num_actions} actions")
    check_save_target(args.out, replace=args.force)  # before playing: a refusal or fault here costs nothing
    source.update(env=env_id, protocol=protocol, env_class=type(env).__name__)
    recording = record(agent, env, args.episodes, seed=seed, greedy=args.greedy, max_steps=args.max_steps,
                       source=source, progress=sys.stderr.isatty())
    env.close()
    path = recording.save(args.out, replace=args.force)
    episodes = recording.meta["episodes"]
    returns = ", ".join(f"{e['return']:g}" + ("" if e["complete"] else " (cut)") for e in episodes)
    print(f"recorded {recording.num_steps} steps, {len(episodes)} episode(s), returns: {returns}")
    return _written(path)


def _make_env(env_id: str, seed: int, protocol: str, ram: bool):
    from s3ta import envs
    from s3ta.analysis.atari_objects import RamAtariEnv
    from s3ta.envs.atari import game_from_id

    game = None if env_id in envs.BUILTIN_TASKS else game_from_id(env_id)
    if game is not None and ram:
        return RamAtariEnv(game, seed=seed, protocol=protocol)
    return envs.make(env_id, 1, seed=seed, protocol=protocol)


def _video(args: argparse.Namespace) -> int:
    from s3ta.viz.video import write_video

    recording = _load(args.recording)
    out = Path(args.out) if args.out else recording.path / "video.mp4"
    path = write_video(recording, out, episodes=args.episodes, max_steps=args.max_steps, fps=args.fps,
                       upsample=args.upsample, opacity=args.opacity, mode=args.mode, progress=sys.stderr.isatty())
    return _written(path)


def _view(args: argparse.Namespace) -> int:
    from s3ta.viz.viewer import write_viewer

    recording = _load(args.recording)
    return _written(write_viewer(recording, args.out, episodes=args.episodes, max_steps=args.max_steps))


def _whatwhere(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, select_steps, write_json
    from s3ta.analysis.whatwhere import CLIP, what_where
    from s3ta.viz.plots import plot_whatwhere

    recording = _load(args.recording)
    recording.require_attention("whatwhere")
    arrays = recording.arrays
    if "content_logits" not in arrays:
        raise ValueError("the recording has no content/spatial logits")
    result = what_where(arrays["attention"], arrays["content_logits"], arrays["spatial_logits"])
    out = analysis_dir(recording, args.out)
    data = {
        "method": "d = clip(content - spatial, -log 10, log 10) weighted by attention (spec 6.5); "
                  "score = sum over positions, > 0 'what', < 0 'where'",
        "clip": CLIP,
        "mean_score_per_head": result.score.mean(0).tolist(),
        "share_of_steps_what_per_head": (result.score > 0).mean(0).tolist(),
        "score": result.score.tolist(),
        "episode": arrays["episode"].tolist(),
    }
    steps = select_steps(recording, None, args.frames)
    return _written(write_json(data, out / "whatwhere.json"),
                    plot_whatwhere(recording, result.weighted, result.score, steps, out / "whatwhere.png"))


def _saliency(args: argparse.Namespace) -> int:
    import numpy as np

    from s3ta.analysis.common import analysis_dir, select_steps, write_json
    from s3ta.analysis.saliency import saliency, summary
    from s3ta.viz.plots import plot_saliency

    recording = _load(args.recording)
    agent = _model(args, recording)
    steps = select_steps(recording, args.steps, args.num_steps)
    out = analysis_dir(recording, args.out)  # checked before the work
    result = saliency(agent, recording, steps, stride=args.stride, mask_sigma=args.sigma, progress=sys.stderr.isatty())
    data = summary(recording, result)
    data.update(stride=args.stride, mask_sigma=args.sigma, blur_sigma=3.0)
    maps = out / "saliency_maps.npz"
    maps.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(maps, steps=result.steps, policy=result.policy, value=result.value)
    return _written(write_json(data, out / "saliency.json"), plot_saliency(recording, result, data, out / "saliency.png"),
                    maps)


def _intervene(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, write_json
    from s3ta.analysis.intervene import Intervention, panel
    from s3ta.viz.plots import plot_intervene

    recording = _load(args.recording)
    recording.require_attention("intervene")
    agent = _model(args, recording)
    intervention = Intervention(agent, recording)
    out = analysis_dir(recording, args.out)
    if args.mode == "all":
        result = panel(intervention, percent=args.percent, offset=tuple(args.shift), from_step=args.from_step,
                       random_repeats=args.random_repeats, persistent=args.persistent, progress=sys.stderr.isatty())
        _print_panel(result)
        return _written(write_json(result, out / "intervene.json"), plot_intervene(result, out / "intervene.png"))
    from_step = recording.num_steps // 2 if args.from_step is None else args.from_step
    result = intervention.run(args.mode, args.head, other_head=args.other_head, offset=tuple(args.shift),
                              from_step=from_step, percent=args.percent, seed=args.seed, persistent=args.persistent)
    print(" ".join(f"{k}={v:.4g}" for k, v in result["summary"].items()))
    return _written(write_json(result, out / f"intervene-{args.mode}.json"))


def _print_panel(result: dict[str, Any]) -> None:
    for mode, heads in result["table"].items():
        cells = "  ".join(f"{head}: KL {s['mean_kl']:.3g} flips {s['flip_rate']:.2f}" for head, s in heads.items())
        print(f"{mode:8s} {cells}")
    mask = result["mask"]
    print(f"mask top {mask['percent']:g}%: KL {mask['topk']['mean_kl']:.3g} flips {mask['topk']['flip_rate']:.2f}   "
          f"random: KL {mask['random']['mean_kl']:.3g} flips {mask['random']['flip_rate']:.2f}")


def _inject(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, write_json
    from s3ta.analysis.inject import Sprite, inject, injected_recording, positions
    from s3ta.viz.plots import plot_inject

    recording = _load(args.recording)
    agent = _model(args, recording)
    sprite = Sprite.load(args.sprite, scale=args.scale, colour=tuple(args.colour) if args.colour else None)
    height, width = recording.arrays["obs"].shape[-2:]
    total = recording.num_steps
    onset = total // 3 if args.onset is None else args.onset
    if not 0 <= onset < total:
        raise ValueError(f"--onset {onset} is outside the recording (0..{total - 1})")
    start = tuple(args.at) if args.at else ((width - sprite.mask.shape[1]) / 2, (height - sprite.mask.shape[0]) / 2)
    waypoints = None
    if args.path:
        try:
            waypoints = [tuple(float(v) for v in point.split(",")) for point in args.path.split(";") if point.strip()]
        except ValueError:
            raise ValueError(f"--path must look like 'x,y;x,y', got {args.path!r}") from None
        if any(len(p) != 2 for p in waypoints):
            raise ValueError(f"--path must look like 'x,y;x,y', got {args.path!r}")
    where = positions(total, onset, start, tuple(args.velocity), waypoints, args.duration)
    out = analysis_dir(recording, args.out)  # checked before the work
    result = inject(agent, recording, sprite, where)
    injected = injected_recording(recording, result)
    injected_path = injected.save(out / "inject_recording", replace=True)  # this analysis's own output
    data = {k: v for k, v in result.items() if not k.startswith("_")}
    data["settings"] = {"sprite": args.sprite, "scale": args.scale, "onset": onset, "start": list(start),
                        "velocity": list(args.velocity), "path": waypoints, "duration": args.duration}
    print(" ".join(f"{k}={_number(v)}" for k, v in data["summary"].items()))
    return _written(write_json(data, out / "inject.json"), plot_inject(recording, data, injected, out / "inject.png"),
                    injected_path)


def _number(value: Any) -> str:
    """A printed value: floats to 4 significant digits (in lists too), everything else as it is."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_number(v) for v in value) + "]"
    return f"{value:.4g}" if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) else str(value)


def _grounding(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, write_json
    from s3ta.analysis.grounding import grounding
    from s3ta.viz.plots import plot_grounding

    recording = _load(args.recording)
    result = grounding(recording)
    out = analysis_dir(recording, args.out)
    for head in result["heads"]:
        places = ", ".join(f"({p['row']}, {p['col']}) {p['share']:.0%}" for p in head["frequent_peaks"])
        print(f"head {head['head']}: mass on objects {head['mass_on_objects']:.3f} (chance {head['chance']:.3f}), "
              f"peak on object {head['peak_on_object_rate']:.2f} (chance {head['peak_chance']:.2f}); "
              f"peak most often at cell (row, col) {places}")
        for label, entry in head["classes"].items():
            follows = entry["peak_tracking"]
            line = f"    {label}: lift {entry['lift']:.2f}" if entry["lift"] is not None else f"    {label}:"
            if follows is not None:
                x, y = ("- (never moves)" if math.isnan(c) else f"{c:+.2f}" for c in (follows["corr_x"], follows["corr_y"]))
                line += (f", peak follows it: corr x {x}, y {y}, "
                         f"median {follows['median_distance']:.1f} cells away")
            print(line)
    return _written(write_json(result, out / "grounding.json"), plot_grounding(result, out / "grounding.png"))


def main(argv: list[str] | None = None) -> int:
    """Run `s3ta explain ...` on its own (``python -m s3ta.analysis.cli explain ...``)."""
    parser = Parser(prog="s3ta")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
