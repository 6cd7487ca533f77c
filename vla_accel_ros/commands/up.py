"""`vla-accel up`: the node graph as separate processes (what the launch files do, without ros2 launch).

vla-accel up                                   # robot: inference, kinematics, controller (dry run)
vla-accel up --sim                             # + the simulated arm, with config/sim.yaml
vla-accel up --params-file my.yaml --set controller_node.dry_run=false
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_accel_ros.params.flags import add_override_argument

HELP = "Bring up the node graph (add --sim for the simulated arm) as separate processes from one params YAML"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sim", action="store_true", help="also start the simulated arm (adds config/sim.yaml)"
    )
    parser.add_argument(
        "--params-file",
        "--params",
        dest="params",
        type=Path,
        nargs="+",
        action="extend",
        default=None,
        metavar="FILE",
        help="params file(s), later ones win; one flag may name several, as for rcl (default: "
        "config/vla_accel.yaml, + config/sim.yaml with --sim)",
    )
    add_override_argument(parser)
    parser.add_argument("--namespace", default="", help="namespace of every node (and their relative topics)")
    parser.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="topic remap applied to every node, e.g. arm/command:=/servo/delta (repeatable)",
    )
    parser.add_argument(
        "--restart-on-failure",
        action="store_true",
        help="restart a node that dies (at most 3 times) instead of stopping the graph",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="BAG",
        help="play a recorded bag into the three nodes with use_sim_time (bag player hook)",
    )
    parser.add_argument("--replay-rate", type=float, default=1.0, help="--replay speed x bag time")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.params import ParameterError
    from vla_accel_ros.ros.launcher import (
        ROBOT_NODES,
        SIM_NODES,
        Graph,
        GraphConfig,
        default_params_files,
        discovery_warning,
        parse_set,
        replay_process,
        with_replay_overrides,
    )

    warning = discovery_warning()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if args.sim and args.replay:
        print("error: --sim and --replay exclude each other", file=sys.stderr)
        return 2
    extra = []
    if args.replay is not None:
        try:
            extra.append(replay_process(args.replay, args.replay_rate))
        except NotImplementedError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        overrides = parse_set(args.overrides)
        if args.replay is not None:
            overrides = with_replay_overrides(overrides)
        cfg = GraphConfig(
            nodes=SIM_NODES if args.sim else ROBOT_NODES,
            params_files=args.params or default_params_files(args.sim),
            overrides=overrides,
            namespace=args.namespace,
            remaps=args.remap,
            use_sim_time=args.replay is not None,
            extra=extra,
        )
        graph = Graph(cfg, restart_on_failure=args.restart_on_failure, finished_ok=[s.name for s in extra])
    except (ParameterError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        return graph.launcher.run()
    finally:
        graph.close()
