"""`s3ta zoo`: list the shipped reference agents, show one's card, export one as a folder for a model
hub, and (for maintainers) add one from a finished training run."""

from __future__ import annotations

import argparse
import json
import sys

from s3ta.cli import command, positive_int


def register(subparsers) -> None:
    zoo = subparsers.add_parser("zoo", help="trained reference agents shipped with s3ta (use them as zoo:NAME)",
                                description="Trained reference agents shipped inside the package. Every command "
                                            "that takes a checkpoint also takes zoo:NAME, e.g. "
                                            "`s3ta eval zoo:NAME --episodes 10`.")
    commands = zoo.add_subparsers(dest="zoo_command", metavar="SUBCOMMAND", required=True)
    p = commands.add_parser("list", help="one line per zoo agent: env, agent, frames, hours, score")
    p.set_defaults(func=_list)
    p = commands.add_parser("show", help="print an agent's card (card.json) and where its files are")
    p.add_argument("name", help="zoo agent name (with or without zoo:)")
    p.set_defaults(func=_show)
    p = commands.add_parser(
        "export", help="write a folder to upload to a model hub: weights, card, curve, GIF and a README model card",
        description="Write DIR for a model hub: the agent's weights (hash-checked), card.json, learning curve and "
                    "attention GIF, and README.md, a model card whose YAML front matter holds library_name, tags and "
                    "model-index results (mean_reward as 'mean +/- std'), followed by the evaluation protocol "
                    "(sticky actions, no-op starts, action set, frames, episodes) and the commands that train and "
                    "evaluate it again. Nothing is uploaded: the network is not used.")
    p.add_argument("name", help="zoo agent name (with or without zoo:)")
    p.add_argument("dir", help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier export in DIR")
    p.set_defaults(func=_export)
    p = commands.add_parser("add", help="make a zoo agent from a training run (evaluates it, writes its card)")
    p.add_argument("run", help="the training run directory")
    p.add_argument("--name", required=True, help="the zoo name, e.g. pong-s3ta-small")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of the run (default: its newest that loads)")
    p.add_argument("--episodes", type=positive_int, default=30, help="evaluation episodes for the card (default 30)")
    p.add_argument("--gif-steps", type=positive_int, default=240,
                   help="agent steps in the attention GIF (default 240)")
    p.add_argument("--notes", default="", help="free text for the card")
    p.set_defaults(func=_add)


@command("zoo list")
def _list(args: argparse.Namespace) -> int:
    from s3ta import zoo

    rows = zoo.table()
    if not rows:
        print("the zoo is empty")
        return 0
    print(f"{'name':<26} {'env':<16} {'agent':<12} {'frames':>12} {'hours':>6}  score (mean [95% CI], episodes)")
    for row in rows:
        print(f"{row['name']:<26} {row['env']:<16} {row['agent']:<12} {row['frames']:>12,} {row['hours']:>6.1f}  "
              f"{row['mean']:.3g} [{row['ci_low']:.3g}, {row['ci_high']:.3g}], {row['episodes']}")
    return 0


@command("zoo show")
def _show(args: argparse.Namespace) -> int:
    from s3ta import zoo

    info = zoo.card(args.name)
    print(json.dumps({k: v for k, v in info.items() if k not in ("config", "agent_description")}, indent=2))
    print(f"files: {zoo.folder(args.name)}")
    return 0


@command("zoo export")
def _export(args: argparse.Namespace) -> int:
    from s3ta.zoo.hub import export

    for path in export(args.name, args.dir, replace=args.force):
        print(f"wrote {path}")
    return 0


@command("zoo add")
def _add(args: argparse.Namespace) -> int:
    from s3ta import zoo

    path = zoo.add(args.run, args.name, checkpoint=args.checkpoint, episodes=args.episodes,
                   gif_steps=args.gif_steps, notes=args.notes, progress=sys.stderr.isatty())
    print(f"added {path}")
    return 0
