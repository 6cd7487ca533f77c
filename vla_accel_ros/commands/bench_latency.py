"""`vla-accel bench-latency`: per-stage p50/p95 of full control steps, both model sizes, fp32 and bf16."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from pathlib import Path

HELP = "per-stage latency (p50/p95, cold start apart) of the built-in and realistic-size models"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="builtin")
    parser.add_argument(
        "--bag",
        type=Path,
        default=Path("data/demos/push-v3"),
        help="demonstration bag whose first episode gives real observations",
    )
    parser.add_argument("--steps", type=int, default=40, help="observations per run")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--methods", default="ar", help="comma-separated method names")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--models", default="builtin,realistic")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("docs/results/latency.json"))
    parser.add_argument("--markdown", type=Path, default=Path("docs/LATENCY.md"))


def _policy(model: str, checkpoint: str):
    from vla_accel_ros.policy.loading import policy_from_checkpoint
    from vla_accel_ros.policy.runtime import Policy

    if model == "builtin":
        return policy_from_checkpoint(checkpoint)
    from vla_accel_ros.policy.realistic import build_realistic_model

    return Policy(build_realistic_model(pretrained=True))


def run(args: argparse.Namespace) -> int:
    import torch

    from vla_accel_ros.evaluation.latency import inputs_from_bag, markdown, measure, synthetic_inputs

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    rows = []
    for model in args.models.split(","):
        policy = _policy(model, args.checkpoint)
        if args.bag.exists():
            inputs = inputs_from_bag(args.bag, args.steps)
        else:
            inputs = synthetic_inputs(policy, args.steps, "push the puck to the green goal")
        for dtype in args.dtypes.split(","):
            policy.model.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
            for method in args.methods.split(","):
                r = measure(policy, inputs, method, warmup=args.warmup)
                r.update(model=model, dtype=dtype)
                rows.append(r)
                p50 = r["total_ms"]["p50"]
                print(f"{model} {dtype} {method}: {p50:.1f} ms p50, {r['control_rate_hz']:.1f} Hz")
    cmd = "vla-accel bench-latency " + shlex.join(sys.argv[2:])
    machine = (
        f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}; "
        f"1-min load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
        f"(on {os.cpu_count()} cores: above that, other processes competed for the CPU)"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"command": cmd, "machine": machine, "rows": rows}, indent=1))
    note = (
        "'realistic' = SmolLM2-135M decoder with untrained vision encoders: latency only, not a policy. "
        "Stages in ms, p50 / p95 over steady steps; the first warm-up steps are listed as cold start."
    )
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(
        f"# Control-step latency\n\nCommand: `{cmd}`\n\nMachine: {machine}\n\n{note}\n\n" + markdown(rows)
    )
    print(f"wrote {args.json} and {args.markdown}")
    return 0
