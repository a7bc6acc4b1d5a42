"""The `s3ta` command line: the only place that parses argv. Each subsystem contributes its
subcommands through a ``register(subparsers)`` function in its own ``cli`` module.
"""

from __future__ import annotations

import argparse
import sys

from s3ta import __version__
from s3ta.runtime import wait_passively

# Modules that add subcommands, in the order `s3ta --help` lists them.
COMMAND_MODULES = ("s3ta.training.cli", "s3ta.analysis.cli", "s3ta.evaluation.cli")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="s3ta",
        description="Attention-augmented agents for interpretable RL (Mott et al. 2019): train, explain, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"s3ta {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    listing = subparsers.add_parser("list", help="list the built-in agents and environments")
    listing.set_defaults(func=_list)
    return parser


def _list(args: argparse.Namespace) -> int:
    from s3ta import agents, envs

    print("agents:", ", ".join(agents.names()))
    print("environments:", ", ".join(envs.list_envs()), "(and any Gymnasium id with image observations)")
    return 0


def main(argv: list[str] | None = None) -> int:
    wait_passively()  # before torch loads
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
