"""`vla-accel fuzz`: malformed and extreme messages into every subscription callback of every node.

The four nodes (the inference node twice: raw and compressed images; the controller four times: VlaAction,
Twist and JointTrajectory output (its joint_states input too), and VlaAction with a workspace box (its
ee_pose input); the simulated arm twice, with a stand-in arm) run in this process, each in a namespace of
its own (vla_accel_ros.ros.fuzz_driver). The generator of vla_accel_ros.evaluation.fuzzing makes the
messages; each is serialized and deserialized (what a subscription gets over DDS) and handed to the
subscription's callback directly, in the executor's thread, as rclpy would. Recording spies sit on the
publishers that lead to an arm: the inference node's actions (forwarded to the controller, as over DDS),
the controllers' arm commands and the stand-in arm's steps.

Order: good data first (each node acts once); then only bad data for 75 % of `--messages` (any action, arm
command or arm step then comes from bad data, except watchdog holds); then, for 20 %, one bad camera frame
or joint state among fresh good inputs, each followed by an inference step that must publish nothing; for
5 %, one bad joint_states or ee_pose after a good one at the edge of its limit, then an action that the
good input makes the controller refuse (vla_accel_ros.ros.fuzz_controller_inputs); then good data again:
each node must act on it (responsive). The result goes to docs/RELIABILITY.md and
docs/results/reliability_fuzz.json.

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random ROS_DOMAIN_ID are set.

    vla-accel fuzz                       # 10,000 messages, written to docs/
    vla-accel fuzz --messages 300 --no-write
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_accel_ros.evaluation.reliability import add_checkpoint_argument

HELP = "Feed >= 10,000 malformed messages into every node's callbacks: crashes, commands from bad data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000, help="bad messages in all (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    add_checkpoint_argument(parser)
    parser.add_argument("--json", type=Path, default=Path("docs/results/reliability_fuzz.json"))
    parser.add_argument("--doc", type=Path, default=Path("docs/RELIABILITY.md"))
    parser.add_argument("--no-write", action="store_true", help="print the report only")


def run(args: argparse.Namespace) -> int:
    if args.messages < 1:
        print("error: --messages must be >= 1", file=sys.stderr)
        return 2
    from vla_accel_ros.evaluation.fuzz_report import write_fuzz_results
    from vla_accel_ros.ros.fuzz_driver import run_fuzz

    report = run_fuzz(args.messages, args.seed, args.checkpoint, log=lambda s: print(s, flush=True))
    text = report.markdown()
    print(text)
    if not args.no_write:
        write_fuzz_results(report, text, args.messages, args.seed, args.json, args.doc)
        print(f"wrote {args.json} and {args.doc}")
    return 0 if report.ok else 1
