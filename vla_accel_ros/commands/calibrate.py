"""`vla-accel calibrate`: kinematic normalizers, Kalman noise and KERV threshold range from demos."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "calibrate the kinematic proxies, Kalman filter and threshold range from demonstration bags"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data/demos"), help="folder of demonstration bags")
    parser.add_argument("--out", type=Path, default=Path("config/calibration.yaml"), help="params file")
    parser.add_argument("--report", type=Path, default=Path("docs/results/calibration.json"))
    parser.add_argument(
        "--from-report",
        type=Path,
        metavar="JSON",
        help="rewrite --out from a stored report of an earlier run (no bags read, the report kept)",
    )


def _r(values: list[float]) -> list[float]:
    return [round(v, 4) for v in values]


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.data.bag_io import read_episodes
    from vla_accel_ros.kinematics.calibration import calibrate
    from vla_accel_ros.kinematics.config_io import calibration_to_params
    from vla_accel_ros.params import write_params_file
    from vla_accel_ros.training.dataset import bag_dirs

    from_report = args.from_report is not None
    if from_report:
        cal = json.loads(args.from_report.read_text())
    else:
        dirs = bag_dirs(args.data)
        if not dirs:
            print(f"no rosbag2 bags under {args.data}")
            return 2
        actions = [e.actions for d in dirs for e in read_episodes(d)]
        cal = calibrate(actions, source=str(args.data))
    prov = cal["provenance"]
    kal = cal["kalman"]
    header = [
        "Written by `vla-accel calibrate`; do not edit by hand (re-run the command).",
        f"source: {prov['source']} ({prov['episodes']} episodes, {prov['steps']} steps, {prov['date']})",
        f"Kalman one-step MAE per dim {_r(kal['one_step_mae'])} vs repeat-last {_r(kal['repeat_last_mae'])} "
        f"vs constant velocity {_r(kal['const_velocity_mae'])} (damping {_r(kal['damping'])})",
    ]
    if from_report:
        header.append(f"rewritten from the report {args.from_report}")
    write_params_file(args.out, calibration_to_params(cal), header)
    if not from_report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(cal, indent=1))
    print("\n".join(header))
    print(f"wrote {args.out}" + ("" if from_report else f" and {args.report}"))
    return 0
