"""`vla-accel bench-decoding`: autoregressive, strict speculative, Spec-VLA and KERV decoding side by side.

Open loop on the held-out demonstration frames, optionally the realistic size (--realistic-frames) and
the closed loop (--closed-loop); the measurements live in evaluation.decoding_bench / decoding_realistic,
the run in evaluation.decoding_run, the markdown in evaluation.decoding_report. Method names follow the
grammar of evaluation.methods (ar, ar@bf16, ar@w4a16, kerv+dyq, ...). Writes docs/results/decoding.json
and the results block of docs/DECODING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "benchmark AR / strict SD / Spec-VLA / KERV (+DyQ) decoding side by side (docs/DECODING.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.evaluation.decoding_bench import DEFAULT_METHODS

    add = parser.add_argument
    add("--checkpoint", default="builtin", help="checkpoint with a draft/ folder, or 'builtin'")
    add("--data", type=Path, default=Path("data/demos"), help="demonstration bags")
    add(
        "--methods",
        default=DEFAULT_METHODS,
        help="comma-separated rows (ar, ar@bf16, ar@w4a16, kerv+dyq, ...)",
    )
    add("--frames", type=int, default=600, help="held-out frames replayed (open loop)")
    add("--warmup", type=int, default=5, help="untimed frames first")
    add("--threads", type=int, default=0, help="torch threads (0: every core this process may use)")
    add("--closed-loop", action="store_true", help="also closed-loop success on held-out seeds")
    add("--episodes", type=int, default=10, help="closed-loop episodes per task")
    add("--closed-loop-methods", default="", help="rows run in closed loop (default: all)")
    add("--workers", type=int, default=1, help="closed-loop processes (1 torch thread each)")
    add("--tasks", default="all")
    add("--max-steps", type=int, default=200)
    add(
        "--realistic-frames",
        type=int,
        default=0,
        help="also decode this many open-loop frames at the realistic size, acceptance replayed",
    )
    add("--realistic-layers", type=int, default=0, help="decoder layers there (0: all 30; else random)")
    add("--compile", action="store_true", help="torch.compile every realistic-size format (own doc section)")
    add("--json", type=Path, default=Path("docs/results/decoding.json"))
    add("--markdown", type=Path, default=Path("docs/DECODING.md"))
    add("--no-progress", action="store_true")


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.decoding_bench import ClosedLoopSetup, NoDraftError
    from vla_accel_ros.evaluation.decoding_report import markdown
    from vla_accel_ros.evaluation.decoding_run import DecodingBenchOptions, NoRowsError, run_decoding_bench
    from vla_accel_ros.evaluation.reporting import command_line, section_name, write_machine_section
    from vla_accel_ros.sim.tasks import parse_task_list

    closed = None
    if args.closed_loop:
        closed = ClosedLoopSetup(parse_task_list(args.tasks), args.episodes, args.max_steps, args.workers)
    opts = DecodingBenchOptions(
        checkpoint=args.checkpoint,
        data=args.data,
        methods=_names(args.methods),
        frames=args.frames,
        warmup=args.warmup,
        threads=args.threads,
        closed_loop=closed,
        closed_loop_methods=tuple(_names(args.closed_loop_methods)),
        realistic_frames=args.realistic_frames,
        realistic_layers=args.realistic_layers,
        compile=args.compile,
    )
    try:
        report = run_decoding_bench(opts, command_line("bench-decoding"), progress=not args.no_progress)
    except (NoDraftError, NoRowsError, ValueError) as err:
        print(f"bench-decoding: {err}", file=sys.stderr)
        return 2
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    block = markdown(report)
    name = section_name("bench-decoding-compiled" if args.compile else "bench-decoding", args.threads)
    write_machine_section(args.markdown, name, block, "# Speculative decoding\n\n", report["machine_info"])
    print(block)
    print(f"wrote {args.json} and {args.markdown}")
    return 0
