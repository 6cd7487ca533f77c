"""`vla-accel calibrate-dyq`: the DyQ perturbation study, which places the precision table.

Runs on demonstration layouts (seeds below the held-out range), writes config/dyq.yaml (the overlay that
turns DyQ on, with the table the study placed and its provenance) and docs/results/perturbation.json
(every probe, the correlation of each proxy with the measured sensitivity). See
vla_accel_ros/evaluation/perturbation.py for the method.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from pathlib import Path

HELP = "DyQ perturbation study: proxy/sensitivity correlations and the precision table (config/dyq.yaml)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    add("--tasks", default="all", help="'all' or comma-separated task names")
    add("--seeds", type=int, default=3, help="demonstration layouts per task (seeds 0..N-1)")
    add("--probe-every", type=int, default=5, help="steps between probes")
    add("--horizon", type=int, default=10, help="steps after the perturbed one before measuring")
    add("--max-steps", type=int, default=120)
    add("--low", default="w4a4-emu", help="mode of the perturbed step")
    add("--tolerance", type=float, default=0.001, help="mean hand deviation (m) one low step may cause")
    add("--group", type=int, default=None, help="int4 group size of the ladder (default: the graph's)")
    add("--config", type=Path, default=None, help="config dir of the graph's params (default: config/)")
    add("--workers", type=int, default=2)
    add("--out", type=Path, default=Path("config/dyq.yaml"))
    add("--report", type=Path, default=Path("docs/results/perturbation.json"))


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.methods import ladder_modes, load_settings
    from vla_accel_ros.evaluation.perturbation import Study, dyq_overlay, run_study, summarize
    from vla_accel_ros.params import write_params_file
    from vla_accel_ros.policy.builder import PolicySpec
    from vla_accel_ros.sim.tasks import parse_task_list

    modes = ladder_modes()
    if args.low not in modes[:-1]:
        print(f"--low must be one of {modes[:-1]}")
        return 2
    graph = load_settings(args.config)
    group = graph.inference.quant_group_size if args.group is None else args.group
    spec = PolicySpec.from_params(
        graph.inference, checkpoint=args.checkpoint, precision_ladder="int4", quant_group_size=group
    )
    study = Study(
        spec, graph.kinematics.proxy_calibration(), args.low, args.probe_every, args.horizon, args.max_steps
    )
    settings = study.settings()
    tasks = parse_task_list(args.tasks)
    jobs = [(t, s) for t in tasks for s in range(args.seeds)]
    t0 = time.monotonic()
    probes = run_study(study, jobs, args.workers)
    summary = summarize(probes, modes, args.tolerance)
    command = "vla-accel calibrate-dyq " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "func"
    )
    report = {
        "command": command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "checkpoint": args.checkpoint,
        "settings": settings,
        "tasks": tasks,
        **summary,
        "probe_list": [p.__dict__ for p in probes],
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1))
    corr = summary["correlation"]
    table = summary["table"]
    header = [
        "DyQ overlay, written by `vla-accel calibrate-dyq`; do not edit by hand (re-run the command).",
        "Serves the int4 precision ladder (one stored int4 copy of the decoder) and lets the controller pick",
        "each step's mode from the kinematic sensitivity S:",
        "  vla-accel up --sim --params-file config/vla_accel.yaml config/calibration.yaml \\",
        "    config/sim.yaml config/dyq.yaml",
        f"Perturbation study ({report['date']}, {args.checkpoint}): {len(probes)} probes on {len(jobs)} "
        f"demonstration layouts; one {args.low} step, hand moved {summary['sensitivity_m']['median']:.4f} m "
        f"(median) after {args.horizon} steps; tolerance {summary['tolerance_m']:.4f} m.",
        "Pearson r with the sensitivity: "
        + ", ".join(f"{k} {v['pearson']:.2f}" for k, v in corr.items())
        + f" (details: {args.report}).",
    ]
    write_params_file(args.out, dyq_overlay(summary, group), header)
    print("\n".join(header))
    print(json.dumps({"table": table, "score_bins": summary["score_bins"]}, indent=1))
    print(f"wrote {args.out} and {args.report} in {report['seconds']:.0f} s")
    return 0
