"""The `s3ta explain` subcommands that measure whether the attention explains the agent (spec
section 7): ``faithfulness``, ``sanity``, ``closed-loop`` and ``audit``; added to `s3ta explain` by
``s3ta.analysis.cli.register`` through ``register_audit_commands``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s3ta.cli import UsageError, command, non_negative_int, positive_int

if TYPE_CHECKING:
    from s3ta.analysis.audit import AuditSizes

AUDIT_SUBCOMMANDS = ("faithfulness", "sanity", "closed-loop", "audit", "ram-check")


def register_audit_commands(commands: argparse._SubParsersAction) -> None:
    from s3ta.analysis.audit import AuditSizes
    from s3ta.analysis.choices import SUBSTRATES, TOPK_SUBSTRATES

    defaults = AuditSizes()

    p = commands.add_parser(
        "faithfulness", help="insertion/deletion curves of each head, the heads' mean, saliency and random rankings",
        description="Delete the pixels a map ranks first (or insert them into a blurred frame) and follow the "
                    "probability of the chosen action, re-running the agent from the recorded state "
                    "(Petsiuk et al. 2018; Huber et al. 2021). Writes faithfulness.json and faithfulness.png.")
    _map_test_args(p, defaults, states=defaults.states, states_help="how many steps when --steps is not given",
                   seed_help="seed of the random rankings and tie-breaking")
    p.add_argument("--steps", type=non_negative_int, nargs="+",
                   help="recorded steps (default: --states spread over the episodes)")
    p.add_argument("--substrate", choices=TOPK_SUBSTRATES, nargs="+",
                   help="what deleted pixels become: the frame blurred (sigma 5 px) and/or its mean colour (default "
                        "blur); with --top-k also the recording's median frame (plate) or each cell's most frequent "
                        "colour (cell-mode) (default plate mean)")
    p.add_argument("--random-draws", type=positive_int, default=defaults.random_draws,
                   help=f"random rankings per state, the chance level (default {defaults.random_draws})")
    p.add_argument("--top-k", type=positive_int, nargs="+", metavar="K",
                   help="instead of the curves, delete each map's top K attention cells (and for K = 1 its top cell "
                        "holding an object) and score the change of the policy (KL, greedy flips, p(a*)) and of the "
                        "value against K random cells at the same steps, paired, with 95%% block-bootstrap CIs "
                        "(s3ta.analysis.faithfulness_topk; docs/interpretability.md). Writes faithfulness_topk.json "
                        "and faithfulness_topk.md")
    p.set_defaults(func=command("explain faithfulness")(_faithfulness))

    p = commands.add_parser(
        "sanity", help="randomise the layers from the top down; rank correlation of each map with the trained one",
        description="Cumulative model randomisation (Adebayo et al. 2018): per stage, the Spearman correlation of "
                    "each head's map, the heads' mean and the saliency map with the trained agent's. "
                    "Writes sanity.json and sanity.png.")
    _map_test_args(p, defaults, states=defaults.sanity_states,
                   states_help="recorded steps compared, spread over the episodes",
                   seed_help="seed of the re-initialisation")
    p.set_defaults(func=command("explain sanity")(_sanity))

    p = commands.add_parser(
        "closed-loop", help="play live episodes with a head's attention replaced or attended objects erased",
        description="Play whole episodes with an intervention at every step (uniform, frozen or shifted head; "
                    "attended objects erased, with a random-object control; a sprite injected) and report the "
                    "change in mean return against the clean agent, paired by seed, with a 95% CI. "
                    "Writes closed_loop.json.")
    p.add_argument("checkpoint", help="checkpoint file, run directory or zoo:NAME")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--episodes", type=positive_int, default=defaults.closed_loop_episodes,
                   help=f"episodes per intervention (default {defaults.closed_loop_episodes})")
    p.add_argument("--seed", type=int, default=0, help="env and action seed, the same for every intervention (default 0)")
    p.add_argument("--sample", action="store_true", help="sample actions from the policy (default: greedy)")
    p.add_argument("--max-steps", type=positive_int, help="cap on agent steps per episode")
    p.add_argument("--shift", type=int, nargs=2, default=(3, 3), metavar=("DY", "DX"), help="shift in cells (default 3 3)")
    p.add_argument("--sprite", default="shark", help="sprite of the inject run (built-in name or .png; default shark)")
    p.set_defaults(func=command("explain closed-loop")(_closed_loop))

    p = commands.add_parser(
        "audit", help="record + grounding + faithfulness + sanity + closed loop: audit.md and audit.json",
        description="Run every measurement of spec section 7 on one agent on a fixed seed and write DIR/audit.md "
                    "(the tables), DIR/audit.json, DIR/faithfulness.png, DIR/sanity.png and DIR/recording. "
                    "Defaults take about a minute for s3ta-small on catch on 2 CPU cores; Atari agents get "
                    "smaller samples unless the size flags say otherwise.")
    p.add_argument("checkpoint", help="checkpoint file, run directory or zoo:NAME")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the recording, the rankings and the live episodes (default 0)")
    p.add_argument("--episodes", type=positive_int, help=f"episodes recorded (default {defaults.episodes}; Atari 1)")
    p.add_argument("--states", type=positive_int, help=f"states for insertion/deletion (default {defaults.states}; Atari 20)")
    p.add_argument("--random-draws", type=positive_int, help=f"random rankings per state (default {defaults.random_draws})")
    p.add_argument("--sanity-states", type=positive_int, help=f"states for sanity (default {defaults.sanity_states})")
    p.add_argument("--closed-loop-episodes", type=positive_int,
                   help=f"live episodes per intervention (default {defaults.closed_loop_episodes}; Atari 3)")
    p.add_argument("--max-steps", type=positive_int, help="cap on agent steps per episode (default: none; Atari 1000)")
    p.add_argument("--substrate", choices=SUBSTRATES, nargs="+", help="insertion/deletion substrates (default both)")
    p.add_argument("--force", action="store_true", help="replace an audit already in --out (default: refuse, exit 2)")
    p.set_defaults(func=command("explain audit")(_audit))

    p = commands.add_parser(
        "ram-check", help="check the Atari RAM decoders against the sprites on the screen (IoU per class)",
        description="Play random actions and compare every box decoded from the RAM with the box of its sprite "
                    "found by colour on the same frame; print per game and class the share with IoU >= 0.5.")
    p.add_argument("games", nargs="*", help="games to check (default: every game with a decoder)")
    p.add_argument("--frames", type=positive_int, default=300, help="agent steps of random play per game (default 300)")
    p.add_argument("--seed", type=int, default=1, help="emulator and action seed (default 1)")
    p.add_argument("--out", help="also write the result as this JSON file")
    p.set_defaults(func=command("explain ram-check")(_ram_check))


def _recording_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recording", help="recording directory (from `s3ta explain record`)")
    p.add_argument("--checkpoint", help="checkpoint or run directory (default: the weights stored in the recording)")
    p.add_argument("--out", help="output directory (default: RECORDING/analysis)")


def _map_test_args(p: argparse.ArgumentParser, defaults: AuditSizes, *, states: int, states_help: str, seed_help: str) -> None:
    """What faithfulness and sanity share: the recording (and agent and output), how many recorded
    steps they test, the saliency map's stride (default the audit's) and a seed."""
    _recording_args(p)
    p.add_argument("--states", type=positive_int, default=states, help=f"{states_help} (default {states})")
    p.add_argument("--stride", type=positive_int, default=defaults.saliency_stride,
                   help=f"pixels between the saliency map's perturbations (default {defaults.saliency_stride})")
    p.add_argument("--seed", type=int, default=0, help=f"{seed_help} (default 0)")


def _recording_and_agent(args: argparse.Namespace):
    from s3ta.analysis.common import analysed_agent
    from s3ta.analysis.recording import load_recording

    recording = load_recording(args.recording)
    return recording, analysed_agent(recording, args.checkpoint)


def _written(*paths: Any) -> int:
    for path in paths:
        print(f"wrote {path}")
    return 0


def _faithfulness(args: argparse.Namespace) -> int:
    from s3ta.analysis.choices import SUBSTRATES
    from s3ta.analysis.common import analysis_dir, select_steps, write_json
    from s3ta.analysis.faithfulness import faithfulness
    from s3ta.viz.plots import plot_faithfulness

    if args.top_k:
        return _faithfulness_topk(args)
    substrates = args.substrate or ["blur"]
    unsupported = sorted(set(substrates) - set(SUBSTRATES))
    if unsupported:
        raise UsageError(f"substrate(s) {', '.join(unsupported)} need --top-k; the curves take {', '.join(SUBSTRATES)}")
    recording, agent = _recording_and_agent(args)
    steps = select_steps(recording, args.steps, args.states)
    result = faithfulness(agent, recording, steps, substrates=substrates, random_draws=args.random_draws,
                          saliency_stride=args.stride, seed=args.seed, progress=sys.stderr.isatty())
    for kind, maps in result["summary"].items():
        for name, entry in maps.items():
            paired = "".join(f"  {mode} - random {entry[mode]['vs_random']['difference']:+.3f} "
                             f"[{entry[mode]['vs_random']['low']:+.3f}, {entry[mode]['vs_random']['high']:+.3f}]"
                             for mode in ("deletion", "insertion") if "vs_random" in entry[mode])
            print(f"{kind:5s} {name:12s} deletion AUC {entry['deletion']['auc']['mean']:.3f}  "
                  f"insertion AUC {entry['insertion']['auc']['mean']:.3f}{paired}")
    out = analysis_dir(recording, args.out)
    return _written(write_json(result, out / "faithfulness.json"), plot_faithfulness(result, out / "faithfulness.png"))


def _faithfulness_topk(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, select_steps, write_json
    from s3ta.analysis.faithfulness_topk import topk_faithfulness, topk_table

    recording, agent = _recording_and_agent(args)
    steps = select_steps(recording, args.steps, args.states)
    result = topk_faithfulness(agent, recording, steps, ks=args.top_k, substrates=args.substrate or ["plate", "mean"],
                               random_draws=args.random_draws, saliency_stride=args.stride, seed=args.seed,
                               progress=sys.stderr.isatty())
    for kind, by_k in result["summary"].items():
        for k, entry in by_k.items():
            for name, row in entry.items():
                if not name.startswith("random"):
                    x = row["kl"]
                    print(f"{kind:9s} k={k:3s} {name:22s} KL {x['map']:.4f} random {x['random']:.4f} "
                          f"difference {x['difference']:+.4f} [{x['low']:+.4f}, {x['high']:+.4f}]")
    out = analysis_dir(recording, args.out)
    settings = result["settings"]
    which = f"--steps {' '.join(map(str, args.steps))}" if args.steps else f"--states {args.states}"
    command_line = (f"s3ta explain faithfulness {args.recording} --top-k {' '.join(map(str, settings['ks']))} "
                    f"--substrate {' '.join(settings['substrates'])} {which} "
                    f"--random-draws {settings['random_draws']} --stride {settings['saliency_stride']} "
                    f"--seed {args.seed}")
    table = "\n".join([f"# Top-k cell deletion: {result['agent']}, {len(steps)} steps", "", f"`{command_line}`", "",
                        *topk_table(result, "kl"), *topk_table(result, "value")[2:]])
    markdown = out / "faithfulness_topk.md"
    markdown.write_text(table + "\n")
    return _written(write_json(result, out / "faithfulness_topk.json"), markdown)


def _sanity(args: argparse.Namespace) -> int:
    from s3ta.analysis.common import analysis_dir, select_steps, write_json
    from s3ta.analysis.sanity import sanity
    from s3ta.viz.plots import plot_sanity

    recording, agent = _recording_and_agent(args)
    result = sanity(agent, recording, select_steps(recording, None, args.states), saliency_stride=args.stride,
                    seed=args.seed, progress=sys.stderr.isatty())
    for row in result["stages"]:
        print(f"{row['randomised_down_to']:24s} " + "  ".join(f"{k} {v:.2f}" for k, v in row["spearman"].items()))
    out = analysis_dir(recording, args.out)
    return _written(write_json(result, out / "sanity.json"), plot_sanity(result, out / "sanity.png"))


def _closed_loop(args: argparse.Namespace) -> int:
    from s3ta import agents
    from s3ta.analysis import closed_loop
    from s3ta.analysis.audit import env_factory
    from s3ta.analysis.common import write_json
    from s3ta.checkpoints import load_agent

    agent, ckpt = load_agent(args.checkpoint)
    env_id = ckpt.config.get("env")
    if not env_id:
        raise ValueError(f"checkpoint {ckpt.path} names no env")
    make_env, batched = env_factory(env_id, ckpt.config.get("protocol", "paper"))
    probe = make_env(1, args.seed)
    has_boxes = "boxes" in probe.reset(seed=args.seed).info
    probe.close()
    heads = agent.config.num_heads if agents.is_attention_agent(agent) else 0
    jobs = closed_loop.default_interventions(heads, erase_objects=has_boxes, offset=tuple(args.shift), sprite=args.sprite)
    result = closed_loop.closed_loop(agent, make_env, args.episodes, jobs, seed=args.seed,
                                     greedy=not args.sample, parallel=batched, max_steps=args.max_steps,
                                     progress=sys.stderr.isatty())
    print(f"clean: mean return {result['clean']['mean_return']:.3f} over {args.episodes} episodes")
    for row in result["interventions"]:
        low, high = row["change"]["ci95"]
        ci = "" if low is None else f" [{low:+.3f}, {high:+.3f}]"
        print(f"{row['name']:24s} {row['mean_return']:.3f}  change {row['change']['mean']:+.3f}{ci}")
    return _written(write_json(result, Path(args.out) / "closed_loop.json"))


def _audit(args: argparse.Namespace) -> int:
    import dataclasses

    from s3ta.analysis.audit import ATARI_SIZES, AuditSizes, command_line, env_factory, run_audit
    from s3ta.checkpoints import load_checkpoint

    env_id = load_checkpoint(args.checkpoint).config.get("env") or ""
    base = AuditSizes() if env_factory(env_id, "paper")[1] else ATARI_SIZES
    overrides = {name: getattr(args, name) for name in ("episodes", "states", "random_draws", "sanity_states",
                                                        "closed_loop_episodes", "max_steps")
                 if getattr(args, name) is not None}
    if args.substrate:
        overrides["substrate"] = tuple(args.substrate)
    sizes = dataclasses.replace(base, **{("substrates" if k == "substrate" else k): v for k, v in overrides.items()})
    argv = ["s3ta", "explain", "audit", args.checkpoint, "--out", args.out]
    if args.seed:
        argv += ["--seed", str(args.seed)]
    for name, value in overrides.items():
        argv += [f"--{name.replace('_', '-')}", *([str(v) for v in value] if isinstance(value, tuple) else [str(value)])]
    report = run_audit(args.checkpoint, args.out, seed=args.seed, sizes=sizes, replace=args.force,
                       command=command_line(argv), progress=sys.stderr.isatty())
    print(f"audit of {report['agent']} on {report['env']} took {report['timings_s']['total']:.0f} s")
    return _written(*report["_paths"])


def _ram_check(args: argparse.Namespace) -> int:
    from s3ta.analysis.atari_objects import DECODERS
    from s3ta.analysis.atari_validation import validate_game
    from s3ta.analysis.common import write_json

    unknown = [g for g in args.games if g not in DECODERS]
    if unknown:
        raise ValueError(f"no RAM decoder for {', '.join(unknown)}; games with one: {', '.join(DECODERS)}")
    results = {}
    left_out = ("not_drawn", "not_drawn_seen", "flicker_off", "merged")
    print("| game | class | objects | IoU >= 0.5 | mean IoU | not checked: " + " | ".join(left_out) + " |\n"
          "|---|---|---|---|---|" + "---|" * len(left_out))
    for game in args.games or list(DECODERS):
        results[game] = validate_game(game, frames=args.frames, seed=args.seed)
        for name, entry in results[game]["classes"].items():
            counts = " | ".join(str(entry.get(key, 0)) for key in left_out)
            print(f"| {game} | {name} | {entry['objects']} | {entry['match_rate']:.1%} | {entry['mean_iou']:.2f} | "
                  f"{counts} |")
    return _written(write_json(results, args.out)) if args.out else 0
