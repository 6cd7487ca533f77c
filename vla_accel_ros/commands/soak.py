"""`vla-accel soak`: the robot graph under sensor load, and an accelerated soak in sim time.

The three nodes (inference with the built-in model or a random stand-in, kinematics, controller with
dry_run off) run as separate processes, started as `vla-accel up` starts them (vla_accel_ros.ros.soak_run).
This process is the robot:
it publishes both cameras and the joint states, plays the arm (each command comes back as an executed
action for the kinematics node) and listens to /diagnostics, where the nodes count what they received.

- load: real time, cameras at 60 Hz and joint states at 500 Hz: messages dropped per subscriber
  (published - received), the control rate, the QoS history and depth of every endpoint, RSS.
- soak: use_sim_time on the nodes and /clock from here, running faster than wall time; >= 60 minutes of
  simulated operation: RSS of each node over time (slope in MB per simulated hour) and the camera ->
  arm command latency per window (wall clock, so the speed-up does not inflate it).

DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random ROS_DOMAIN_ID). Results go to
docs/RELIABILITY.md and docs/results/reliability_{load,soak}.json.

    vla-accel soak                                 # load 60 s, then soak 60 simulated minutes
    vla-accel soak --mode load --load-seconds 10 --no-write
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from vla_accel_ros.evaluation.reliability import add_checkpoint_argument

HELP = "Sensor load (60 Hz cameras, 500 Hz joints) and an accelerated soak: drops, rate, memory, latency"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("load", "soak", "both"), default="both")
    parser.add_argument("--load-seconds", type=float, default=60.0, help="measured load time (wall)")
    parser.add_argument("--camera-hz", type=float, default=60.0, help="load: camera rate")
    parser.add_argument("--joint-hz", type=float, default=500.0, help="load: joint-state rate")
    parser.add_argument("--soak-minutes", type=float, default=60.0, help="soak: simulated minutes")
    parser.add_argument("--speedup", type=float, default=2.0, help="soak: simulated seconds per wall second")
    parser.add_argument("--soak-camera-hz", type=float, default=10.0, help="soak: camera rate (sim time)")
    parser.add_argument("--soak-joint-hz", type=float, default=50.0, help="soak: joint-state rate (sim time)")
    parser.add_argument("--control-hz", type=float, default=10.0, help="inference rate (timer trigger)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--min-rate-share", type=float, default=0.9, help="required share of the configured control rate"
    )
    add_checkpoint_argument(parser)
    parser.add_argument("--nice", type=int, default=10, help="niceness of this process and the nodes")
    parser.add_argument("--json-dir", type=Path, default=Path("docs/results"))
    parser.add_argument("--doc", type=Path, default=Path("docs/RELIABILITY.md"))
    parser.add_argument("--no-write", action="store_true")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.reliability import machine_note, resolve_model
    from vla_accel_ros.evaluation.soak import Plan, write_run_results
    from vla_accel_ros.ros.soak_run import run_plan

    if args.nice:
        os.nice(args.nice)  # the nodes inherit it: a soak must not starve the machine's other work
    plans = []
    if args.mode in ("load", "both"):
        plans.append(
            Plan(
                "load",
                args.load_seconds,
                args.camera_hz,
                args.joint_hz,
                args.control_hz,
                1.0,
                args.image_size,
            )
        )
    if args.mode in ("soak", "both"):
        plans.append(
            Plan(
                "soak",
                args.soak_minutes * 60.0,
                args.soak_camera_hz,
                args.soak_joint_hz,
                args.control_hz,
                args.speedup,
                args.image_size,
            )
        )
    ok = True
    with tempfile.TemporaryDirectory(prefix="vla-soak-") as tmp:
        model, note = resolve_model(args.checkpoint, Path(tmp))
        for plan in plans:
            report = run_plan(plan, model, log=lambda s: print(s, flush=True))
            report.min_rate_share = args.min_rate_share
            if note:
                report.notes.append(note)
            report.notes.append(f"ran at niceness {args.nice} on a machine with {machine_note()}")
            text = report.markdown()
            print(text)
            ok = ok and report.passed()
            if not args.no_write:
                path = write_run_results(report, plan, text, sys.argv[1:], args.json_dir, args.doc)
                print(f"wrote {path} and {args.doc}")
    return 0 if ok else 1
