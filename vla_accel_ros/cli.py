"""The `vla-accel` command.

Each sub-command is a module in `vla_accel_ros.commands` exposing `HELP: str`,
`add_arguments(parser)` and `run(args) -> int`; they are found here by name and
imported only when used, so `vla-accel --help` stays fast and heavy dependencies
(torch, rclpy, mujoco) load only for the command that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import sys

from vla_accel_ros import commands


def command_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vla-accel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_names():
        sub.add_parser(name.replace("_", "-"), help=_help_of(name), add_help=False)
    return parser


def _help_of(name: str) -> str:
    # Read HELP without importing the module (keeps --help free of heavy imports).
    spec = importlib.util.find_spec(f"{commands.__name__}.{name}")
    if spec is None or spec.origin is None:
        return ""
    for line in open(spec.origin, encoding="utf-8"):
        if line.startswith("HELP = "):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = {n.replace("_", "-"): n for n in command_names()}
    if not argv or argv[0] not in names:
        build_parser().print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(f"{commands.__name__}.{names[argv[0]]}")
    parser = argparse.ArgumentParser(prog=f"vla-accel {argv[0]}", description=module.HELP)
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return int(module.run(args) or 0)


def console_main() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console_main()
