"""The `s3ta` command line: the only place that parses argv. Each subsystem contributes its
subcommands through a ``register(subparsers)`` function in its own ``cli`` module.

Errors follow one convention for every command: one line on stderr, ``s3ta <command>: error: ...``;
argparse's own errors (an unknown flag, a bad value) are that line too, ending in "see s3ta <command>
--help" instead of usage lines (``Parser``). Bad input (``UsageError``, and the library's
``ValueError``s: a bad value, a checkpoint or recording that is not one, an output that would replace
a user's file without ``--force``) and a named path that does not exist exit with 2; other filesystem faults
(``--out`` is a file, a read-only directory, a full disk) exit with 1. Handlers get the convention
from ``command(name)``; ``main`` applies it too, to any handler that is not decorated.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Callable, NoReturn

from s3ta import __version__
from s3ta.runtime import wait_passively

# Modules that add subcommands, in the order `s3ta --help` lists them.
COMMAND_MODULES = ("s3ta.training.cli", "s3ta.analysis.cli", "s3ta.evaluation.cli", "s3ta.zoo.cli",
                   "s3ta.analysis.claims_cli")
BAD_INPUT, FAILED = 2, 1  # exit statuses: argparse's for bad input; 1 for a fault met while working

Handler = Callable[[argparse.Namespace], int]
# The names of s3ta.agents.PRESETS, listed here so that `s3ta list` runs without importing torch
# (tests/test_imports.py checks that they agree).
AGENT_NAMES = ("s3ta", "s3ta-small", "lstm-small", "fixed-query-small", "l2-keys-small", "fixed-query", "l2-keys",
               "feedforward", "lstm")


class Parser(argparse.ArgumentParser):
    """argparse's parser with a one-line error: ``s3ta CMD: error: MESSAGE; see s3ta CMD --help`` and exit
    status 2, without the usage lines argparse prints first. Subcommands' parsers get this class too
    (``add_subparsers`` builds them with the class of the parser it is called on)."""

    _EXTRAS_OF = "_s3ta_parser_with_extras"  # the prog of the innermost (sub)command given flags it lacks

    def error(self, message: str, prog: str | None = None) -> NoReturn:
        prog = prog or self.prog
        self.exit(BAD_INPUT, f"{prog}: error: {message}; see {prog} --help\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and not hasattr(namespace, self._EXTRAS_OF):  # subcommands parse first: the innermost is named
            setattr(namespace, self._EXTRAS_OF, self.prog)
        return namespace, extras

    def parse_args(self, args=None, namespace=None):
        namespace, extras = self.parse_known_args(args, namespace)
        prog = vars(namespace).pop(self._EXTRAS_OF, None)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}", prog)
        return namespace


class UsageError(Exception):
    """Bad input that argparse could not catch (flags that contradict, a path of the wrong kind).
    The message is one line saying what is wrong and what is valid; the exit status is 2."""


def error_line(error: BaseException) -> str:
    """One line for an expected error: an OSError as "path: strerror", anything else its first line."""
    if isinstance(error, OSError) and error.strerror:
        paths = [str(p) for p in (error.filename, error.filename2) if p is not None]
        return (f"{' -> '.join(paths)}: " if paths else "") + error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def exit_status(error: BaseException) -> int | None:
    """The exit status of an expected error (module docstring), None for anything else (a bug: traceback)."""
    if isinstance(error, (UsageError, ValueError, FileNotFoundError)):
        return BAD_INPUT
    if isinstance(error, OSError):
        return FAILED
    return None


def report_error(name: str, error: BaseException, faults: tuple[type[BaseException], ...] = ()) -> int | None:
    """Print ``s3ta <name>: error: <line>`` and return the exit status (1 for one of ``faults``), or
    None (and print nothing) when ``error`` is not an expected one."""
    status = FAILED if isinstance(error, faults) else exit_status(error)
    if status is not None:
        print(f"s3ta {name}: error: {error_line(error)}", file=sys.stderr)
    return status


def command(name: str, faults: tuple[type[BaseException], ...] = ()) -> Callable[[Handler], Handler]:
    """Decorate the handler of ``s3ta <name>`` with the error convention of the module docstring.

    ``faults``: further exception types that end the command with one line and exit status 1 (a
    fault met while working, e.g. a diverged loss), checked before the convention's types.
    """

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def run(args: argparse.Namespace) -> int:
            try:
                return int(handler(args) or 0)
            except (UsageError, OSError, ValueError, *faults) as error:
                status = report_error(name, error, faults)
                if status is None:
                    raise
                return status

        run.command_name = name  # type: ignore[attr-defined]
        return run

    return decorate


# --- argument types: a bad value is an argparse error naming the flag and the valid range --------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def percent_float(text: str) -> float:
    value = float(text)
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"must be in (0, 100], got {value:g}")
    return value


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = Parser(
        prog="s3ta",
        description="Attention-augmented agents for interpretable RL (Mott et al. 2019): train, explain, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"s3ta {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    listing = subparsers.add_parser("list", help="list the built-in agents and environments",
                                    description="List the agent names and the built-in and Atari environment ids.")
    listing.set_defaults(func=_list)
    return parser


def _list(args: argparse.Namespace) -> int:
    from s3ta import envs
    from s3ta.checkpoints import zoo_names
    from s3ta.training.config import preset_names, preset_versions

    print("agents:", ", ".join(AGENT_NAMES))
    print("environments:", ", ".join(envs.list_envs()), "(and any Gymnasium id with image observations)")
    presets = []
    for name in preset_names():
        *earlier, current = preset_versions(name)
        presets.append(f"{name} (version {current}" + (f"; earlier: {', '.join(f'@{v}' for v in earlier)})" if earlier else ")"))
    print("training presets (s3ta train --config NAME, or NAME@VERSION for an earlier version):", ", ".join(presets))
    print("zoo agents (zoo:NAME wherever a checkpoint is taken):", ", ".join(zoo_names()) or "none")
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
    except (UsageError, OSError, ValueError) as error:  # a handler without @command
        status = report_error(getattr(args.func, "command_name", args.command), error)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
