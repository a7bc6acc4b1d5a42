"""`s3ta train` and `s3ta demo`. Every TrainConfig field is a flag whose help is the field's
docstring; precedence is defaults < --config FILE < flags given on the command line.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

from s3ta.cli import command, positive_int
from s3ta.training.config import MACHINE_SETTINGS, TrainConfig
from s3ta.training.demo import DEMO_SETTINGS, EVAL_EPISODES
from s3ta.training.errors import CheckpointError, NonFiniteLossError


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


# The values TrainConfig.__post_init__ accepts for these fields, listed by --help and checked by argparse.
FLAG_CHOICES = {"mode": ("parallel", "serial"), "protocol": ("paper", "machado"), "backend": ("local", "ray")}


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """A flag per TrainConfig field; unset flags stay out of the namespace (argparse.SUPPRESS)."""
    docs = field_docs(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in skip or field.name in ("agent_overrides", "preset"):
            continue
        # The declared default, not TrainConfig(): building one validates its agent, which loads torch.
        default = field.default_factory() if field.default is dataclasses.MISSING else field.default
        flag = "--" + field.name.replace("_", "-")
        help_text = f"{docs.get(field.name, '')} (default: {default})"
        kind = type(default)
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=help_text)
        elif field.name in FLAG_CHOICES:
            parser.add_argument(flag, dest=field.name, choices=FLAG_CHOICES[field.name],
                                default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, type=float if kind is float else kind,
                                default=argparse.SUPPRESS, help=help_text,
                                metavar=field.name.upper())
    parser.add_argument("--agent-config", dest="agent_overrides", action="append", type=_parse_override,
                        default=argparse.SUPPRESS, metavar="KEY=VALUE",
                        help="override a field of the agent's config, e.g. --agent-config num_heads=8 (repeatable)")


def config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    from s3ta.training.config import config_source

    values: dict[str, Any] = dict(base or {})
    if getattr(args, "config", None):
        values.update(config_source(args.config))
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in names:
        if name in vars(args):
            values[name] = getattr(args, name)
    if isinstance(values.get("agent_overrides"), list):
        values["agent_overrides"] = dict(values["agent_overrides"])
    try:
        return TrainConfig.from_dict(values)
    except ValueError as error:  # name the flags, not the fields: "--total-frames must be > 0, got 0"
        message = str(error)
        for name in names:
            message = re.sub(rf"\b{name} must be", f"--{name.replace('_', '-')} must be", message)
        raise ValueError(message) from None


TIME_LIMIT_EXIT = 75  # EX_TEMPFAIL: stopped by --time-limit with a checkpoint; run again with --resume
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "2h50m", "90m", "45s", "1h30m15s" or plain seconds ("3600")."""
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        match = _DURATION.fullmatch(text)
        if not text or not match:
            raise argparse.ArgumentTypeError(f"expected a duration like 2h50m, 90m or 3600, got {text!r}") from None
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"a time limit must be > 0, got {text!r}")
    return seconds


def _run_train(args: argparse.Namespace) -> int:
    """`s3ta train`; errors follow s3ta.cli's convention (registered with ``command``)."""
    from s3ta.training.loop import train

    given = {k for k in vars(args) if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    machine = None
    if args.resume and (Path(args.out) / "config.json").exists():
        # The saved config is the run's; the frame budget and this machine's settings may change. Name what is ignored.
        ignored = sorted(given - {"total_frames", *MACHINE_SETTINGS}) + (["config"] if args.config else [])
        if ignored:
            flags = ", ".join("--" + name.replace("_", "-") for name in ignored)
            print(f"note: --resume keeps the settings saved in {Path(args.out) / 'config.json'}; ignored: {flags}",
                  file=sys.stderr)
        config = TrainConfig()
        machine = {name: getattr(args, name) for name in MACHINE_SETTINGS if name in given}
    else:
        config = config_from_args(args)
    summary = train(config, args.out, resume=args.resume, time_limit=args.time_limit, machine=machine,
                    total_frames=getattr(args, "total_frames", None) if args.resume else None)
    if summary["interrupted_by"] == "time-limit":
        print(f"stopped by the time limit at {summary['frames']:,} frames; checkpoint {summary['checkpoint']}. "
              f"Continue with: s3ta train --out {args.out} --resume")
        return TIME_LIMIT_EXIT
    if summary["interrupted_by"]:
        print(f"stopped by {summary['interrupted_by']} at {summary['frames']:,} frames; checkpoint "
              f"{summary['checkpoint']}. Continue with: s3ta train --out {args.out} --resume")
        return 130
    recent = summary["mean_recent_return"]
    returns = "no episode ended in this call" if math.isnan(recent) else f"mean return of the last episodes {recent:.3g}"
    print(f"done: {summary['frames']:,} frames, {returns}; "
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
                       help="continue the run in --out from its newest readable checkpoint, with its saved config; "
                            "--total-frames N extends (or shortens) its budget, the learning-rate schedule following "
                            "the new total; --device, --num-learners, --num-actors, --envs-per-actor, --learner-threads "
                            "and --unroll-threads set this machine's (recorded in attempts.json); other flags are "
                            "ignored")
    train.add_argument("--config", metavar="FILE_OR_PRESET",
                       help="start from a config.json (e.g. of an earlier run) or a shipped preset "
                            "(`s3ta list` names them, e.g. atari-small); flags override it")
    train.add_argument("--time-limit", type=parse_duration, default=None, metavar="DURATION",
                       help="stop cleanly with a checkpoint after this much wall-clock time (e.g. 2h50m, 90m, "
                            f"3600); exit status {TIME_LIMIT_EXIT}, continue with --resume")
    add_config_flags(train)
    # A corrupt or mismatched checkpoint, a diverged loss or a missing optional package is a fault (exit 1).
    train.set_defaults(func=command("train", faults=(CheckpointError, NonFiniteLossError, ModuleNotFoundError))(
        _run_train))

    demo = subparsers.add_parser(
        "demo", help="train s3ta-small on catch in minutes, evaluate it, show its attention",
        description=f"Train s3ta-small on the built-in catch task ({DEMO_SETTINGS['total_frames']:,} frames; the whole "
                    f"demo takes about 4 minutes on 2 CPU cores), evaluate it on {EVAL_EPISODES} greedy episodes, and "
                    "write into --out the checkpoint, a learning curve, attention pictures, a video and the "
                    "interactive viewer. Run it again to continue a stopped demo; a finished one is re-evaluated and its pictures, "
                    "video and viewer remade.")
    demo.add_argument("--out", default="runs/demo", help="where to write the run (default runs/demo)")
    demo.add_argument("--total-frames", type=positive_int, default=None,
                      help=f"the demo's frame budget (default {DEMO_SETTINGS['total_frames']:,}); the time estimate "
                           "printed before training scales with it")
    demo.add_argument("--mode", choices=("parallel", "serial"), default="parallel",
                      help="parallel = actor processes beside the learner; serial = one process, slower "
                           "(default parallel)")
    demo.set_defaults(func=command("demo")(_run_demo))
