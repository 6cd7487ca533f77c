"""`vla-accel eval`: closed-loop success on held-out Meta-World layouts or LIBERO's official init states."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = "closed-loop success of a checkpoint on held-out seeds / LIBERO init states (JSON + markdown table)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--tasks",
        default="all",
        help="'all' (Meta-World), comma-separated Meta-World names, or LIBERO tasks (libero_object:all, "
        "libero_spatial:0,1): these follow the LIBERO protocol (official init states 0..n-1)",
    )
    parser.add_argument(
        "--episodes", "--episodes-per-task", dest="episodes", type=int, default=50, help="episodes per task"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="episode limit (default: Meta-World 200, LIBERO the protocol's per suite)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=Path("docs/results/eval_builtin.json"))
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table here (text around it is kept)"
    )


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.closed_loop import evaluate, markdown_table, report_note, write_report
    from vla_accel_ros.evaluation.reporting import write_block
    from vla_accel_ros.sim.tasks import parse_task_list

    try:
        tasks = parse_task_list(args.tasks)
        report = evaluate(args.checkpoint, tasks, args.episodes, args.max_steps, args.workers)
    except (ValueError, ModuleNotFoundError) as err:  # a wrong task, action size, or LIBERO not installed
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_report(report, args.json)
    where = "official init states" if "suites" in report else "held-out episodes"
    table = markdown_table(report, f"Closed loop, {args.episodes} {where} per task ({args.checkpoint})")
    print(table)
    if args.markdown:
        note = report_note(report, f"vla-accel {shlex.join(sys.argv[1:])}", args.workers)
        write_block(args.markdown, "eval", note + table, "# Closed-loop success\n")
    return 0
