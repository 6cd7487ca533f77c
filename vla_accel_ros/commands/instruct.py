"""`vla-accel instruct "TEXT"`: give the running graph its task (the `instruction` topic, latched).

vla-accel instruct "pick up the red block"
vla-accel instruct --namespace /arm1 "open the drawer"
ros2 topic pub --once /instruction std_msgs/msg/String "{data: 'open the drawer'}"   # works too
"""

from __future__ import annotations

import argparse
import sys

HELP = "send the graph an instruction (latched; waits until the inference node acknowledged it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", help="the instruction, as the policy was trained to read it")
    parser.add_argument("--namespace", default="", help="the graph's namespace (as for `vla-accel up`)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the graph")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.ros.instruct import send_instruction
    from vla_accel_ros.ros.launcher import discovery_warning

    if not args.text.strip():
        print("error: the instruction is empty", file=sys.stderr)
        return 2
    warning = discovery_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    result = send_instruction(args.text, args.namespace, args.timeout)
    if result.subscribers == 0:
        print(f"error: nothing subscribed to instruction within {args.timeout:g} s", file=sys.stderr)
        return 1
    state = "acknowledged" if result.acknowledged else "sent, not acknowledged in time"
    print(f"instruction {state} by {result.subscribers} subscription(s) in {result.waited_s:.2f} s")
    return 0 if result.acknowledged else 1
