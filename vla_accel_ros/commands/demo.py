"""`vla-accel demo`: the closed loop on one machine, then a summary.

Brings up the simulated arm and the three nodes (lockstep, built-in model, dry_run off for the sim) as
`vla-accel up --sim` does, waits for the episodes to end (vla_accel_ros.ros.demo_monitor), and prints
per-task success, episode lengths, the achieved control rate, the per-hop latency (camera stamp ->
VlaAction publish -> arm command) and the precision/decoding modes used. It is a simulation-only
command: it keeps DDS discovery on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and picks a
random ROS_DOMAIN_ID unless they are set.

    vla-accel demo                          # one episode of each of the six tasks
    vla-accel demo --tasks push --episodes 5
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

from vla_accel_ros.params.flags import add_override_argument

HELP = "Closed-loop demo: simulated arm + the three nodes + the built-in model, then a summary table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    parser.add_argument("--tasks", default="all", help="task name, comma-separated names, or 'all' (default)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="fail if no action comes out within this many seconds of the start",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: sim.yaml)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder (default: builtin)")
    add_override_argument(parser)
    parser.add_argument("--verbose", action="store_true", help="stream the nodes' logs")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.demo_summary import summarize
    from vla_accel_ros.params import ParameterError
    from vla_accel_ros.policy.builtin import is_builtin
    from vla_accel_ros.ros.demo_monitor import demo_overrides, run_graph, sim_env
    from vla_accel_ros.ros.launcher import SIM_NODES, Graph, GraphConfig, default_params_files, parse_set
    from vla_accel_ros.sim.tasks import parse_task_list

    sim_env()
    if args.episodes < 1:
        print("error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        tasks = parse_task_list(args.tasks)
        overrides = parse_set(args.overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = args.episodes * len(tasks)
    model = None if is_builtin(args.checkpoint) else str(Path(args.checkpoint).resolve())
    overrides = demo_overrides(overrides, tasks, total, args.max_steps, model)
    log_tail: collections.deque[str] = collections.deque(maxlen=60)

    def output(line: str) -> None:
        log_tail.append(line)
        if args.verbose:
            print(line, flush=True)

    try:
        graph = Graph(
            GraphConfig(nodes=SIM_NODES, params_files=default_params_files(sim=True), overrides=overrides),
            output=output,
        )
    except (ParameterError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"demo: {total} episode(s) of {', '.join(tasks)} on ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"(discovery {os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']})",
        flush=True,
    )
    obs, status = run_graph(graph, total, args.timeout, args.startup_timeout)
    print()
    print(summarize(obs))
    if status != "done":
        print(f"\ndemo failed: {status}", file=sys.stderr)
        for name, (level, message) in sorted(obs.diagnostics.items()):
            print(f"  last status of {name}: level {level}: {message}", file=sys.stderr)
        if not args.verbose:
            print("last node output:\n" + "\n".join(log_tail), file=sys.stderr)
        return 1
    return 0
