"""`vla-accel train-draft`: train the EAGLE draft head of a checkpoint for speculative decoding."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from vla_accel_ros.training.flags import json_object

HELP = "train the speculative-decoding draft head against a frozen checkpoint (writes <checkpoint>/draft)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/builtin"), help="frozen target")
    parser.add_argument("--data", type=Path, default=Path("data/demos"), help="folder of rosbag2 demo bags")
    parser.add_argument("--out", type=Path, default=None, help="draft folder (default <checkpoint>/draft)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the traced frames")
    parser.add_argument("--steps", type=int, default=0, help="exact optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds of optimization (0 = none)")
    parser.add_argument("--max-frames", type=int, default=0, help="subsample training frames (0 = all)")
    parser.add_argument("--eval-frames", type=int, default=300, help="held-out frames for acceptance rates")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument(
        "--draft",
        type=json_object,
        default="{}",
        help="JSON DraftConfig overrides, e.g. '{\"intermediate_size\": 256}'",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.training.train_draft import DraftTrainConfig, train_draft

    if not (args.checkpoint / "model.safetensors").is_file():
        print(f"{args.checkpoint} has no model.safetensors: train the target first", file=sys.stderr)
        return 2
    out = args.out or args.checkpoint / "draft"
    cfg = DraftTrainConfig(
        checkpoint=args.checkpoint,
        data=args.data,
        out=out,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        time_budget_s=args.time_budget,
        max_frames=args.max_frames,
        eval_frames=args.eval_frames,
        threads=args.threads,
        draft=args.draft,
        progress=not args.no_progress,
        command="vla-accel train-draft " + shlex.join(sys.argv[2:]),
    )
    summary = train_draft(cfg)
    print(
        json.dumps(
            {k: summary[k] for k in ("held_out_top1", "held_out_acceptance") if k in summary}, indent=1
        )
    )
    print(f"wrote {out} ({summary['train_seconds'] / 60:.1f} min of draft training)")
    return 0
