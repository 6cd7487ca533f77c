"""`vla-accel record --out BAG`: record the graph's topics to a rosbag2 bag (no ros2 CLI needed).

vla-accel record --out run1                      # every topic of the graph, until Ctrl-C
vla-accel record --out run1 --topics /camera/image_raw /joint_states /instruction --duration 30

Replay it with `vla-accel replay run1 --action-topic /vla/action_safe` (the graph's own actions as the
reference) or play it into the graph with `vla-accel up --replay run1`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "record the graph's topics into a rosbag2 bag (MCAP or sqlite3) until Ctrl-C, SIGTERM or --duration"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="bag directory to create (must not exist)")
    parser.add_argument(
        "--topics",
        nargs="+",
        default=None,
        metavar="TOPIC",
        help="record exactly these topics (default: every topic with a publisher, except --exclude)",
    )
    parser.add_argument(
        "--exclude",
        nargs="+",
        default=["/rosout", "/parameter_events"],
        metavar="PATTERN",
        help="topics (fnmatch patterns) left out when --topics is not given",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument(
        "--use-sim-time", action="store_true", help="stamp messages with /clock time instead of system time"
    )


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.ros.launcher import discovery_warning

    warning = discovery_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.out.exists():
        print(f"error: {args.out} exists already; rosbag2 bags are never overwritten", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("error: --duration must be > 0", file=sys.stderr)
        return 2
    from vla_accel_ros.ros.recorder import record

    def log(line: str) -> None:
        print(line, flush=True)

    record(args.out, args.topics, args.duration, args.storage, args.exclude, args.use_sim_time, log=log)
    return 0
