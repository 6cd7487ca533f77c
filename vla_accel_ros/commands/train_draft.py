"""`vla-accel train-draft`: train the EAGLE draft head of a checkpoint for speculative decoding.

vla-accel train-draft --checkpoint runs/builtin --data data/demos
vla-accel train-draft --checkpoint /models/openvla-7b --data robot.mcap --unnorm-key bridge_orig \\
    --camera-topic /cam/image_raw/compressed --compressed --instruction "put the carrot on the plate"

The package's own checkpoints train on a folder of demonstration bags; an OpenVLA directory trains on any
bag (or folder of bags), read through the topic flags as `vla-accel replay` reads it. Interrupted runs
continue with --resume.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from vla_accel_ros.data.topic_flags import add_topic_arguments, topic_map
from vla_accel_ros.training.flags import json_object

HELP = "train the speculative-decoding draft head against a frozen checkpoint (writes <checkpoint>/draft)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/builtin"), help="frozen target")
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("data/demos"),
        help="folder of demonstration bags; for an OpenVLA checkpoint any bag or folder of bags, read "
        "through the topic flags below",
    )
    parser.add_argument("--out", type=Path, default=None, help="draft folder (default <checkpoint>/draft)")
    parser.add_argument("--epochs", type=int, default=30, help="passes over the traced frames")
    parser.add_argument("--steps", type=int, default=0, help="exact optimizer steps (overrides --epochs)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget", type=float, default=0.0, help="seconds of optimization (0 = none)")
    parser.add_argument("--max-frames", type=int, default=0, help="subsample training frames (0 = all)")
    parser.add_argument("--eval-frames", type=int, default=300, help="held-out frames for acceptance rates")
    parser.add_argument("--val-episodes", type=int, default=2, help="held-out episodes (per task)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument(
        "--draft",
        type=json_object,
        default="{}",
        help="JSON DraftConfig overrides, e.g. '{\"intermediate_size\": 256}'",
    )
    parser.add_argument("--resume", action="store_true", help="continue from <out>/resume.pt if present")
    parser.add_argument("--save-every", type=int, default=100, help="steps between resume points (0 = none)")
    parser.add_argument("--no-progress", action="store_true")
    g = parser.add_argument_group("OpenVLA checkpoints")
    g.add_argument("--unnorm-key", default=None, help="dataset statistics to use (needed with several)")
    g.add_argument("--dtype", default="bfloat16", help="dtype the target runs in (bfloat16, float32, ...)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    add_topic_arguments(parser, actions=False)


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.data.bag_io import BagError
    from vla_accel_ros.policy.checkpoint import CheckpointError
    from vla_accel_ros.policy.formats import is_openvla_checkpoint
    from vla_accel_ros.training.train_draft import DraftTrainConfig, train_draft

    openvla = is_openvla_checkpoint(args.checkpoint)
    if not openvla and not (args.checkpoint / "model.safetensors").is_file():
        print(f"{args.checkpoint} has no model.safetensors: train the target first", file=sys.stderr)
        return 2
    try:
        topics = topic_map(args) if openvla else None
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
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
        val_episodes_per_task=args.val_episodes,
        eval_frames=args.eval_frames,
        threads=args.threads,
        draft=args.draft,
        progress=not args.no_progress,
        command="vla-accel train-draft " + shlex.join(sys.argv[2:]),
        unnorm_key=args.unnorm_key,
        dtype=args.dtype,
        device=args.device,
        topic_map=topics,
        resume=args.resume,
        save_every=args.save_every,
    )
    try:
        summary = train_draft(cfg)
    except (CheckpointError, BagError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {k: summary[k] for k in ("held_out_top1", "held_out_acceptance") if k in summary}, indent=1
        )
    )
    print(f"wrote {out} ({summary['train_seconds'] / 60:.1f} min of draft training)")
    return 0
