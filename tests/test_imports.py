"""The house: no import cycles between s3ta's modules, a low module for checkpoints and the zoo that
imports nothing above it, commands that list and explain themselves without torch, and `import s3ta`
behaving like the CLI (OpenMP threads that sleep, torch loaded only when an agent is)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "s3ta"


def module_files() -> dict[str, Path]:
    """s3ta's modules by dotted name (a package by its __init__.py)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The s3ta modules that ``name`` imports, counting every ``import`` and ``from ... import`` statement
    in the file: at module level, inside functions (the lazy imports that keep torch out of `--help`) and
    under ``if TYPE_CHECKING``. ``from s3ta.x import y`` counts s3ta.x.y where y is a module, else s3ta.x.
    Not counted: modules named to ``importlib.import_module`` at run time (s3ta.cli's list of command
    modules, s3ta.analysis's lazy attributes), which ast cannot read as imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from .y import z
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return (found & known) - {name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None: depth-first search with a path stack."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_counts_imports_inside_functions_and_from_package_imports():
    graph = import_graph()
    assert "s3ta.checkpoints" in graph["s3ta.training.checkpoint"]  # module level
    assert "s3ta.evaluation.evaluate" in graph["s3ta.zoo"]  # inside zoo.add
    assert "s3ta.policy" in graph["s3ta"]  # inside s3ta.__getattr__
    assert "s3ta.analysis.closed_loop" in graph["s3ta.analysis.audit"]  # from s3ta.analysis import closed_loop


def test_no_import_cycles_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_checkpoints_and_the_zoo_are_read_in_one_low_module():
    """s3ta.checkpoints turns files, run directories and zoo:NAME into agents for training, evaluation,
    analysis and the zoo, so it imports none of them (CheckpointError comes from the torch-free
    training.errors, whose class the training CLI catches)."""
    graph = import_graph()
    low = graph["s3ta.checkpoints"]
    assert low <= {"s3ta.agents", "s3ta.training.errors"}, low
    for user in ("s3ta.training.checkpoint", "s3ta.evaluation.evaluate", "s3ta.analysis.common", "s3ta.zoo",
                 "s3ta.policy"):
        assert "s3ta.checkpoints" in graph[user], user
    assert not any(name.startswith("s3ta.zoo") for name in graph["s3ta.training.checkpoint"])


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**environ, **env})


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["zoo", "list"], ["explain", "--help"],
                                  ["zoo", "export", "-h"]])
def test_listing_and_help_commands_do_not_import_torch(argv):
    code = ("import sys\nfrom s3ta.cli import main\n"
            f"try:\n    status = main({argv!r})\nexcept SystemExit as stop:\n    status = stop.code\n"
            "assert status == 0, status\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('s3ta'))\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]


def test_list_names_every_agent_of_the_registry():
    """`s3ta list` prints s3ta.cli.AGENT_NAMES so that it runs without torch; they must be the registry's."""
    from s3ta import agents
    from s3ta.cli import AGENT_NAMES

    assert list(AGENT_NAMES) == agents.names()


def test_import_s3ta_lets_openmp_threads_sleep_as_the_cli_does():
    code = ("import os, sys\nimport s3ta\nprint(os.environ.get('OMP_WAIT_POLICY'))\n"
            "print('torch' in sys.modules)\nprint(callable(s3ta.load))\n")
    assert run_python(code).stdout.split() == ["PASSIVE", "False", "True"]
    assert run_python(code, OMP_WAIT_POLICY="ACTIVE").stdout.split()[0] == "ACTIVE"  # the user's choice stays
