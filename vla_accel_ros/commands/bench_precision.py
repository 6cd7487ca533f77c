"""`vla-accel bench-precision`: the DyQ precision ladder against the fp32 and bf16 models, one run.

The measurements are evaluation.precision_bench (over quant.benchmark); the page is quant.report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HELP = "precision ladder vs fp32/bf16: memory, switch cost, latency, action error (JSON + docs/PRECISION.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.params.tables import QUANT_GROUP_SIZE

    add = parser.add_argument
    add("--json", type=Path, default=Path("docs/results/precision.json"))
    add("--markdown", type=Path, default=Path("docs/PRECISION.md"))
    add(
        "--group",
        type=int,
        default=QUANT_GROUP_SIZE,
        help=f"int4 group: 32, 64, 128 or 256 (default: the graph's quant_group_size, {QUANT_GROUP_SIZE})",
    )
    add("--warmup", type=int, default=2)
    add("--repeats", type=int, default=10, help="timed runs per format")
    add("--observations", type=int, default=16, help="inputs for the action-error comparison")
    add(
        "--strategies",
        default="",
        help="storage strategies to compare (default: all of "
        "int4-master, int4-whole, int8-master, pre-packed)",
    )
    add("--random-weights", action="store_true", help="skip the SmolLM2 GGUF (smoke runs)")
    add("--layers", type=int, default=0, help="decoder layers (0: all 30; implies random)")
    add("--checkpoint", default="builtin", help="checkpoint folder, 'builtin' (the packaged one) or 'none'")
    add("--data", type=Path, default=Path("data/demos"), help="demo bags: real inputs")
    add("--threads", type=int, default=0, help="torch threads (0: every core this process may use)")
    add(
        "--compile",
        action="store_true",
        help="torch.compile the realistic model's decoder in every timed format (its own doc section)",
    )


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.precision_bench import PrecisionBenchOptions, run_precision_bench
    from vla_accel_ros.evaluation.reporting import command_line, section_name, write_machine_section
    from vla_accel_ros.policy.threads import use_threads
    from vla_accel_ros.quant.report import PRECISION_TITLE, render
    from vla_accel_ros.quant.strategies import STRATEGIES

    strategies = tuple(s.strip() for s in args.strategies.split(",") if s.strip()) or tuple(STRATEGIES)
    if "int4-master" not in strategies or set(strategies) - set(STRATEGIES):
        print(f"--strategies must include int4-master and be among {list(STRATEGIES)}", file=sys.stderr)
        return 2
    use_threads(args.threads)
    opts = PrecisionBenchOptions(
        args.group,
        args.warmup,
        args.repeats,
        args.observations,
        strategies,
        args.random_weights,
        args.layers,
        args.checkpoint,
        args.data,
        args.compile,
    )
    date = time.strftime("%Y-%m-%d %H:%M %Z")
    report = run_precision_bench(opts, command_line("bench-precision"), date)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    text = render(report)
    name = section_name("bench-precision-compiled" if args.compile else "bench-precision", args.threads)
    write_machine_section(args.markdown, name, text, PRECISION_TITLE, report["machine"])
    print(text)
    print(f"wrote {args.json} and {args.markdown}")
    return 0
