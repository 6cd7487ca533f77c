"""The `--set NODE.PARAM=VALUE` flag of the commands that start the graph (`vla-accel up`, `vla-accel demo`).

One definition so both commands accept the same spelling and collect it under the same name
(`args.overrides`, a list of strings that `vla_accel_ros.ros.launcher.parse_set` types against the
tables). argparse only: commands may not import each other, so the flag lives beside the tables.
"""

from __future__ import annotations

import argparse


def add_override_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable `--set NODE.PARAM=VALUE` flag, collected in `args.overrides` (default [])."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override one parameter, e.g. controller_node.dry_run=false (repeatable)",
    )
