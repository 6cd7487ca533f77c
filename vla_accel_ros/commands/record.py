"""`vla-accel record --out BAG`: record the graph's topics to a rosbag2 bag (no ros2 CLI needed).

vla-accel record --out run1                      # every topic of the graph, until Ctrl-C
vla-accel record --out run1 --topics /camera/image_raw /joint_states /instruction --duration 30
vla-accel record --out run1 -b 500M              # files of ~500 MiB: run1_0.mcap, run1_1.mcap, ...

A split bag is one bag directory whose metadata.yaml lists its files (as `ros2 bag record -b` makes):
replay, `up --replay` and `ros2 bag play` read it whole. On a write error (a full disk, a file size
limit) the bag is closed readable with what reached the disk, the error and what was lost are printed,
and the exit status is 1.

Replay it with `vla-accel replay run1 --action-topic /vla/action_safe` (the graph's own actions as the
reference) or play it into the graph with `vla-accel up --replay run1`.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HELP = "record the graph's topics into a rosbag2 bag (MCAP or sqlite3) until Ctrl-C, SIGTERM or --duration"
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def size_bytes(text: str) -> int:
    """'500000', '64K', '500M', '2G' (powers of 1024) -> bytes; argparse type of --max-bag-size."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)i?B?\s*", text, re.IGNORECASE)
    if match is None or int(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size > 0 (bytes, or with K, M, G)")
    return int(match[1]) * UNITS[match[2].upper()]


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
    parser.add_argument(
        "-b",
        "--max-bag-size",
        type=size_bytes,
        default=None,
        metavar="SIZE",
        help="split the bag into files of about SIZE (bytes, or 64K, 500M, 2G), as `ros2 bag record -b`",
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
    from vla_accel_ros.data.recording_writer import BagWriteError
    from vla_accel_ros.ros.recorder import record

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        record(
            args.out,
            args.topics,
            args.duration,
            args.storage,
            args.exclude,
            args.use_sim_time,
            log=log,
            max_bag_bytes=args.max_bag_size,
        )
    except BagWriteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
