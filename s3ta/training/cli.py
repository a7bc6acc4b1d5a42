"""`s3ta train` and `s3ta demo`. Every TrainConfig field is a flag whose help is the field's
docstring; precedence is defaults < --config FILE < flags given on the command line.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import sys
from pathlib import Path
from typing import Any

from s3ta.training.config import TrainConfig


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body
    docs = {}
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and \
                isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag per TrainConfig field; unset flags stay out of the namespace (argparse.SUPPRESS)."""
    docs = field_docs(TrainConfig)
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name in skip or field.name == "agent_overrides":
            continue
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} (default: {default})"
        kind = type(default)
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=float if kind is float else kind,
                                default=argparse.SUPPRESS, help=help_text,
                                metavar=field.name.upper())
    parser.add_argument("--agent-config", dest="agent_overrides", action="append", type=_parse_override,
                        default=argparse.SUPPRESS, metavar="KEY=VALUE",
                        help="override a field of the agent's config, e.g. --agent-config num_heads=8 (repeatable)")


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(TrainConfig.load(args.config).to_dict())
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if name in vars(args):
            values[name] = getattr(args, name)
    if isinstance(values.get("agent_overrides"), list):
        values["agent_overrides"] = dict(values["agent_overrides"])
    return TrainConfig.from_dict(values)


def _run_train(args: argparse.Namespace) -> int:
    from s3ta.training.checkpoint import CheckpointError
    from s3ta.training.learner import NonFiniteLossError
    from s3ta.training.loop import train

    try:
        config = config_from_args(args)
        if args.resume:
            saved = Path(args.out) / "config.json"
            given = {k for k in vars(args) if k in {f.name for f in dataclasses.fields(TrainConfig)}}
            if saved.exists() and given - {"total_frames"}:
                print(f"note: --resume continues with the settings saved in {saved}; other flags are ignored",
                      file=sys.stderr)
        summary = train(config, args.out, resume=args.resume)
    except (CheckpointError, NonFiniteLossError, ValueError, ModuleNotFoundError) as error:  # e.g. Ray missing
        print(f"error: {error}", file=sys.stderr)
        return 1
    if summary["interrupted_by"]:
        print(f"stopped by {summary['interrupted_by']} at {summary['frames']:,} frames; checkpoint "
              f"{summary['checkpoint']}. Continue with: s3ta train --out {args.out} --resume")
        return 130
    print(f"done: {summary['frames']:,} frames, mean return of the last episodes {summary['mean_recent_return']:.3g}; "
          f"checkpoint {summary['checkpoint']}; TensorBoard: tensorboard --logdir {Path(args.out) / 'tensorboard'}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from s3ta.training.demo import run_demo

    return run_demo(args.out, total_frames=args.total_frames, mode=args.mode)


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train an agent with IMPALA (V-trace)",
        description="Train an agent with IMPALA/V-trace. Defaults are the paper's hyperparameters.")
    train.add_argument("--out", required=True, help="run directory (config, checkpoints, logs)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its newest checkpoint, with its saved config")
    train.add_argument("--config", help="a config.json (e.g. from an earlier run) to start from; flags override it")
    add_config_flags(train)
    train.set_defaults(func=_run_train)

    demo = subparsers.add_parser("demo", help="train s3ta-small on catch in minutes, evaluate it, show its attention")
    demo.add_argument("--out", default="runs/demo", help="where to write the run")
    demo.add_argument("--total-frames", type=int, default=None, help="override the demo's frame budget")
    demo.add_argument("--mode", choices=("parallel", "serial"), default="parallel", help="acting/learning mode")
    demo.set_defaults(func=_run_demo)
