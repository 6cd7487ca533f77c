"""`vla-accel stats BAG`: per-dimension action and proprioception statistics of a bag (JSON).

vla-accel stats robot_bag --action-topic /arm/executed_action --state-topic /joint_states --out stats.json
vla-accel stats robot_bag --check builtin        # does the built-in checkpoint's normalization fit?

With --check the exit status is 0 for 'ok' and 'warn', 1 for 'mismatch' (thresholds: module doc of
vla_accel_ros.evaluation.norm_stats), 2 for an unusable bag or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "action/proprio normalization statistics of a bag; --check compares them with a checkpoint's"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", type=Path, help="rosbag2 directory, .mcap or .db3")
    parser.add_argument(
        "--action-topic", default="/expert_action", help="VlaAction or Float32/64MultiArray ('none': skip)"
    )
    parser.add_argument(
        "--state-topic", default="/joint_states", help="sensor_msgs/JointState ('none': skip)"
    )
    parser.add_argument("--joint-names", default=None, help="comma-separated joints to select, in order")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: JSON on stdout)")
    parser.add_argument("--check", default=None, metavar="CHECKPOINT", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG of --check (default <out>_check.png or norm_stats_check.png)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _opt(topic: str) -> str | None:
    return None if topic.strip().lower() in ("", "none", "-") else topic


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.data.bag_io import BagError
    from vla_accel_ros.evaluation.norm_stats import bag_stats, check, check_plots, load_checkpoint_stats

    joints = [n.strip() for n in args.joint_names.split(",")] if args.joint_names else None
    ck = None
    try:
        if args.check is not None:
            ck = load_checkpoint_stats(args.check)
        stats, series = bag_stats(
            args.bag, _opt(args.action_topic), _opt(args.state_topic), joints, progress=not args.quiet
        )
    except (BagError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = sys.stdout if args.out is not None else sys.stderr
    status = 0
    if ck is not None:
        result = check(stats, series, ck)
        stats["check"] = result
        plot = args.plot or (
            args.out.with_name(args.out.stem + "_check.png") if args.out else Path("norm_stats_check.png")
        )
        result["plots"] = [str(p) for p in check_plots(series, stats, ck, plot)]
        print(f"check against {ck['checkpoint']}: {result['verdict']}", file=report)
        for problem in result["problems"]:
            print(f"  {problem}", file=report)
        status = 1 if result["verdict"] == "mismatch" else 0
    text = json.dumps(stats, indent=1) + "\n"
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        counts = ", ".join(f"{t} {n}" for t, n in stats["provenance"]["message_counts"].items())
        print(f"wrote {args.out} ({counts})", file=report)
    else:
        sys.stdout.write(text)
    return status
