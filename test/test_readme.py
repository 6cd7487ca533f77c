"""The README's commands exist and its examples parse: a newcomer copies them as they are.

Each `vla-accel ...` invocation in a README code block (or inline code) is parsed by the sub-command's
own argparse parser, so a renamed or missing flag (as `up --params-file` once was) fails here; the
commands table lists every sub-command, and every sub-command is in it.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest

from vla_accel_ros import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _invocations() -> list[str]:
    """Every `vla-accel ...` command line in the README (code blocks and inline code)."""
    found: list[str] = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("vla-accel "):
                found.append(line)
    for inline in re.findall(r"`(vla-accel [^`]+)`", README):
        found.append(inline.strip())
    return list(dict.fromkeys(found))


def _parser(command: str) -> argparse.ArgumentParser:
    names = {n.replace("_", "-"): n for n in cli.command_names()}
    assert command in names, f"README names `vla-accel {command}`, which does not exist"
    module = importlib.import_module(f"vla_accel_ros.commands.{names[command]}")
    parser = argparse.ArgumentParser(prog=f"vla-accel {command}", exit_on_error=False)
    module.add_arguments(parser)
    return parser


def test_the_readme_has_examples():
    assert len(_invocations()) >= 10


@pytest.mark.parametrize("line", _invocations())
def test_every_readme_example_parses(line):
    argv = shlex.split(line)[1:]
    if argv[0].startswith("-"):
        assert cli.main(argv) == 0, f"`{line}` fails"
        return
    command, rest = argv[0], argv[1:]
    parser = _parser(command)
    if rest in ([], ["--help"]) or any(a in ("...", "<...>") for a in rest):
        return  # a bare command (its parser was built above) or an elided example
    try:
        parser.parse_args(rest)
    except (argparse.ArgumentError, SystemExit) as err:
        pytest.fail(f"README example `{line}` does not parse: {err}")


def test_the_commands_table_lists_every_sub_command():
    table = set(re.findall(r"^\| `vla-accel ([a-z0-9-]+)[ `]", README, flags=re.M))
    commands = {n.replace("_", "-") for n in cli.command_names()}
    assert table == commands, f"missing from the README: {commands - table}; not commands: {table - commands}"
