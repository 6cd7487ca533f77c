"""`vla-accel bench-latency`: per-stage p50/p95 of full control steps, both model sizes, fp32 and bf16."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

HELP = "per-stage latency (p50/p95, cold start apart) of the built-in and realistic-size models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--bag",
        type=Path,
        default=Path("data/demos/push-v3"),
        help="demonstration bag whose first episode gives real observations",
    )
    parser.add_argument("--steps", type=int, default=40, help="observations per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--methods", default="ar", help="comma-separated method names")
    parser.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16, int4 (the ladder: dyq, ar@w4a16)")
    parser.add_argument("--models", default="builtin,realistic")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: every available core)")
    parser.add_argument("--json", type=Path, default=Path("docs/results/latency.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/LATENCY.md"))


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation import latency as L
    from vla_accel_ros.evaluation.methods import load_settings
    from vla_accel_ros.evaluation.reporting import (
        command_line,
        machine_info,
        section_name,
        write_machine_section,
    )
    from vla_accel_ros.policy.threads import use_threads

    use_threads(args.threads)
    load_before = os.getloadavg()[0]
    settings = load_settings()
    rows = []
    for model in args.models.split(","):
        for dtype, policy in L.latency_policies(model, args.dtypes.split(","), settings, args.checkpoint):
            if args.bag.exists():
                inputs = L.inputs_from_bag(args.bag, args.steps)
            else:
                inputs = L.synthetic_inputs(policy, args.steps, "push the puck to the green goal")
            for method in args.methods.split(","):
                if not L.runs_on(method, dtype):
                    continue
                try:
                    r = L.measure(policy, inputs, method, warmup=args.warmup, settings=settings)
                except ValueError as err:  # e.g. dyq on a policy without the ladder
                    print(f"{model} {dtype} {method}: skipped ({err})")
                    continue
                r.update(model=model, dtype=dtype)
                rows.append(r)
                p50, hz = r["total_ms"]["p50"], r["control_rate_hz"]
                print(f"{model} {dtype} {method}: {p50:.1f} ms p50, {hz:.1f} Hz")
    cmd = command_line("bench-latency")
    info = machine_info()
    machine = L.machine_line(info, load_before, os.getloadavg()[0])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": cmd, "machine": machine, "machine_info": info, "rows": rows}
    args.json.write_text(json.dumps(report, indent=1))
    name = section_name("bench-latency", args.threads)
    write_machine_section(args.markdown, name, L.page(cmd, machine, rows), L.LATENCY_TITLE, info)
    print(f"wrote {args.json} and {args.markdown}")
    return 0
