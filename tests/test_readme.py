"""README.md is the front door, and every command in it must work from a clean clone. These checks read
the README and the commands' own --help; they train nothing and play no episodes (except the Python
example, 100 steps of a zoo agent):

- each `s3ta ...` command, in a shell block or an inline code span, names subcommands that exist and
  uses only flags that its subcommand's --help lists; in a shell block it also gives the options that
  subcommand requires (an inline `s3ta train` may name the command rather than run it);
- each `make` target exists in the Makefile, and no other command is in a shell block unchecked;
- each `zoo:NAME` is an agent that `s3ta zoo list` shows;
- each relative link or image points to a file in the repository;
- the Python example runs as written and prints the shape its comment says.
"""

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
S3TA = [sys.executable, "-m", "s3ta"]
SHELL_LANGUAGES = {"", "sh", "bash", "shell", "console"}
UNCHECKED = {".", "source"}  # activating the venv: nothing to parse


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block."""
    return [(m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S)]


def shell_commands(text: str) -> list[list[str]]:
    """The commands of the shell blocks (continuation lines joined, comments dropped), each split as the
    shell would."""
    commands = []
    for language, body in code_blocks(text):
        if language not in SHELL_LANGUAGES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def inline_s3ta_commands(text: str) -> list[list[str]]:
    """The inline code spans of the prose that are s3ta commands (not `s3ta <command>: error: ...`)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return [shlex.split(span) for span in re.findall(r"`(s3ta(?: [^`<]*)?)`", prose)]


@functools.lru_cache(maxsize=None)
def help_text(path: tuple[str, ...]) -> str:
    result = subprocess.run([*S3TA, *path, "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, f"`s3ta {' '.join(path)} --help` failed:\n{result.stderr}"
    return result.stdout


def usage(help_: str) -> str:
    """The usage paragraph of a --help text."""
    return help_.split("\n\n", 1)[0]


def takes_subcommand(help_: str) -> bool:
    return re.search(r"\b(?:SUB)?COMMAND \.\.\.", usage(help_)) is not None


def lists_subcommand(help_: str, name: str) -> bool:
    """argparse lists a parser's subcommands indented by four spaces under its COMMAND metavar."""
    return re.search(rf"^    {re.escape(name)}(?:\s|$)", help_, re.M) is not None


def required_options(help_: str) -> set[str]:
    """The options of the usage line that are not in brackets."""
    text = usage(help_)
    while True:
        stripped = re.sub(r"\[[^\[\]]*\]", "", text)
        if stripped == text:
            break
        text = stripped
    return set(re.findall(r"(?<![\w-])(--[\w-]+)", text))


def check_s3ta(words: list[str], complete: bool = True) -> None:
    """Walk down the subcommands named, then check the flags against the deepest one's --help, and if
    the command is meant to run as it stands (`complete`), that it gives the required options."""
    path: list[str] = []
    rest = words[1:]
    while rest and not rest[0].startswith("-") and takes_subcommand(help_text(tuple(path))):
        name = rest[0]
        assert lists_subcommand(help_text(tuple(path)), name), (
            f"README runs `{' '.join(words)}`, but `s3ta {' '.join(path)} --help` lists no subcommand {name!r}")
        path.append(name)
        rest = rest[1:]
    help_ = help_text(tuple(path))
    command = " ".join(words)
    flags = {word.split("=", 1)[0] for word in rest if word.startswith("-") and word != "-"}
    for flag in sorted(flags):
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_), (
            f"README runs `{command}`, but `s3ta {' '.join(path)} --help` has no {flag}")
    if complete and not flags & {"-h", "--help"}:
        missing = required_options(help_) - flags
        assert not missing, f"README runs `{command}` without the required {sorted(missing)}"


def readme_text() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_s3ta_commands_parse():
    commands = shell_commands(readme_text())
    s3ta_commands = [words for words in commands if words[0] == "s3ta"]
    assert len(s3ta_commands) >= 5, "the README's commands were not found: has its format changed?"
    for words in s3ta_commands:
        check_s3ta(words)
    inline = inline_s3ta_commands(readme_text())
    assert inline, "the README's inline s3ta commands were not found"
    for words in inline:
        check_s3ta(words, complete=False)


def test_readme_commands_are_all_checked_and_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for words in shell_commands(readme_text()):
        if words[0] == "make":
            for target in words[1:]:
                assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"Makefile has no target {target!r}"
        else:
            assert words[0] in {"s3ta"} | UNCHECKED, (
                f"README runs `{' '.join(words)}`, which this test does not know how to check: check it here")


def test_readme_zoo_names_exist():
    names = set(re.findall(r"zoo:([a-z0-9][a-z0-9_.-]*[a-z0-9])", readme_text()))
    assert names, "README names no zoo agent"
    result = subprocess.run([*S3TA, "zoo", "list"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines()[1:] if line.strip()}
    assert names <= listed, f"README names zoo agents that `s3ta zoo list` does not show: {sorted(names - listed)}"
    # the results table's zoo column too (names there are in backticks, without the zoo: prefix)
    table_names = set(re.findall(r"\| `([a-z0-9-]+)` \|\s*$", readme_text(), re.M))
    assert table_names, "README's results table has no zoo names"
    assert table_names <= listed, f"README's table names unknown zoo agents: {sorted(table_names - listed)}"


def test_readme_links_point_to_files():
    text = readme_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    assert targets
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (README.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"README links to {target}, which does not exist"


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path):
    examples = [body for language, body in code_blocks(readme_text()) if language == "python"]
    assert len(examples) == 1, "README should hold one Python example"
    script = tmp_path / "example.py"
    script.write_text(examples[0])
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    promised = re.search(r"^print\(.*#\s*(\([\d, ]+\))", examples[0], re.M)
    if promised:
        assert promised.group(1) in result.stdout, f"the example printed {result.stdout!r}, not {promised.group(1)}"
