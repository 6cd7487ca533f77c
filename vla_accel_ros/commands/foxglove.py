"""`vla-accel foxglove`: watch the running graph in a browser (Foxglove WebSocket server).

vla-accel foxglove                       # ws://127.0.0.1:8765: /vla/*, /diagnostics, cameras, joints
vla-accel foxglove --topics /camera/image_raw /vla/action_safe
ssh -L 8765:127.0.0.1:8765 robot         # from a laptop, instead of --host 0.0.0.0
"""

from __future__ import annotations

import argparse
import sys

HELP = "serve the graph's topics (/vla/*, /diagnostics, cameras) to Foxglove in a browser over WebSocket"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.ros.foxglove_bridge import DEFAULT_PATTERNS

    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default loopback; anything else exposes the robot)",
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port (0: any free port)")
    parser.add_argument(
        "--topics", nargs="+", default=None, metavar="TOPIC", help="forward exactly these topics"
    )
    parser.add_argument(
        "--include",
        nargs="+",
        default=list(DEFAULT_PATTERNS),
        metavar="PATTERN",
        help="fnmatch patterns of topics to forward when --topics is not given",
    )
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.ros.foxglove_bridge import exposure_warning, serve
    from vla_accel_ros.ros.launcher import discovery_warning

    for warning in (discovery_warning(), exposure_warning(args.host)):
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    if not 0 <= args.port <= 65535:
        print(f"error: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        serve(args.host, args.port, args.include, args.topics, args.duration, log=log)
    except (RuntimeError, OSError) as err:  # e.g. the port is in use
        print(f"error: cannot serve on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0
