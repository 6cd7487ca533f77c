"""`vla-accel bench-replay`: replay throughput of every method on one demonstration bag.

    vla-accel bench-replay --bag data/demos/reach-v3 --episodes 5 --max-steps 500 --threads 1

Runs `vla-accel replay` (evaluation/replay.run_replay, the same policies and loops) over the first
--episodes episodes of the bag, then writes the results block of docs/REPLAY.md, docs/results/replay.json
and copies the figures that carry information (latency, action error, the timelines whose precision or
threshold moves) into docs/img/replay/ (evaluation/replay_report.py). Nothing under docs/ is touched
unless the replay completed.

Exit status: 0 done, 1 no method could run, 2 usage error or an unusable bag.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
from pathlib import Path

HELP = "replay a demo bag through every method; writes docs/REPLAY.md (steps/s, error, acceptance, fill rate)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.evaluation.methods import ALL_METHODS
    from vla_accel_ros.evaluation.replay import WARMUP_STEPS

    parser.add_argument("--bag", type=Path, default=Path("data/demos/reach-v3"), help="rosbag2 bag to replay")
    parser.add_argument("--episodes", type=int, default=5, help="replay the first N episodes")
    parser.add_argument("--max-steps", type=int, default=500, help="step cap over all episodes")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="as for `vla-accel replay`")
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--draft", type=Path, default=None, help="draft folder (default: beside the checkpoint)"
    )
    parser.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="steps left out of the timings")
    parser.add_argument("--config", type=Path, default=None, help="config dir, as for `vla-accel replay`")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--work", type=Path, default=Path("runs/bench_replay"), help="replay output (bags, metrics, plots)"
    )
    parser.add_argument("--markdown", type=Path, default=Path("docs/REPLAY.md"))
    parser.add_argument("--json", type=Path, default=Path("docs/results/replay.json"))
    parser.add_argument("--img", type=Path, default=Path("docs/img/replay"), help="where the figures go")
    parser.add_argument("--no-progress", action="store_true")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run (from the parsed flags, not sys.argv: also under tests)."""
    parts = [
        "--bag", str(args.bag), "--episodes", str(args.episodes), "--max-steps", str(args.max_steps),
        "--methods", args.methods, "--checkpoint", str(args.checkpoint), "--warmup", str(args.warmup),
        "--threads", str(args.threads),
    ]  # fmt: skip
    if args.draft is not None:
        parts += ["--draft", str(args.draft)]
    if args.config is not None:
        parts += ["--config", str(args.config)]
    return "vla-accel bench-replay " + shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from vla_accel_ros.evaluation.replay import ReplayError, jsonable, run_replay
    from vla_accel_ros.evaluation.replay_report import markdown, publish_figures, without_timelines
    from vla_accel_ros.evaluation.reporting import machine_summary, write_block

    if args.episodes < 1 or args.max_steps < 1:
        print("error: --episodes and --max-steps must be at least 1", file=sys.stderr)
        return 2
    try:
        report = run_replay(
            args.bag,
            args.methods,
            args.work,
            checkpoint=args.checkpoint,
            draft=args.draft,
            threads=max(1, args.threads),
            config=args.config,
            overwrite=True,
            warmup=args.warmup,
            max_steps=args.max_steps,
            max_episodes=args.episodes,
            progress=not args.no_progress,
        )
    except ReplayError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_status
    summary = {
        "command": command_line(args),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_summary(),
        "threads": torch.get_num_threads(),
        "checkpoint": str(args.checkpoint),
        **without_timelines(report),
    }
    images = publish_figures(report, args.work, args.img, args.markdown.parent)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False) + "\n")
    block = markdown(summary, images)
    write_block(args.markdown, "bench-replay", block, "# Offline replay\n")
    print(block, end="")
    print(f"wrote {args.markdown}, {args.json}, {len(images)} figure(s) in {args.img}")
    return 0
