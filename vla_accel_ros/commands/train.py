"""`vla-accel train`: behaviour-clone the built-in VLA from demonstration bags."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from vla_accel_ros.training.flags import json_object

HELP = (
    "train the token-domain VLA on demonstration bags, Meta-World or LIBERO: action size, statistics and "
    "vocabulary come from the data (resumable, deterministic seed)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("data/demos"), help="folder of rosbag2 demo bags")
    parser.add_argument("--out", type=Path, default=Path("runs/builtin"), help="checkpoint folder to write")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda (GPU)")
    parser.add_argument(
        "--stop-after", type=int, default=0, help="stop after N epochs (resume by re-running)"
    )
    parser.add_argument(
        "--init",
        default=None,
        help="fine-tune this checkpoint ('builtin' or a folder), keeping its statistics and vocabulary",
    )
    parser.add_argument(
        "--backbone",
        choices=["scratch", "smollm2"],
        default="scratch",
        help="decoder: trained from scratch, or the pretrained SmolLM2-135M (the realistic-size variant)",
    )
    parser.add_argument(
        "--vision-from",
        default=None,
        help="start the camera encoders from this checkpoint ('builtin' or a folder)",
    )
    parser.add_argument(
        "--frames-per-epoch",
        type=int,
        default=0,
        help="each epoch draws this many random training frames (0 = all)",
    )
    parser.add_argument(
        "--val-frames",
        type=int,
        default=0,
        help="score held-out episodes on this many evenly spaced frames (0 = all)",
    )
    parser.add_argument(
        "--model",
        type=json_object,
        default="{}",
        help="JSON VlaConfig overrides, e.g. '{\"hidden_size\": 192}'",
    )


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.training.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        stop_after=args.stop_after,
        model=args.model,
        init=args.init,
        backbone=args.backbone,
        vision_from=args.vision_from,
        frames_per_epoch=args.frames_per_epoch,
        val_frames=args.val_frames,
        command="vla-accel train " + shlex.join(sys.argv[2:]),
    )
    try:
        summary = train(cfg)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if "stopped_after_epoch" in summary:
        return 0
    print(f"wrote {args.out} ({summary['train_seconds'] / 60:.1f} min)")
    return 0
