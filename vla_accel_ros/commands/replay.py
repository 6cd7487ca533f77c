"""`vla-accel replay BAG`: offline evaluation of the acceleration methods on a recorded bag.

vla-accel replay data/demos/reach-v3 --methods ar,kerv --out replay_reach --max-steps 200
vla-accel replay robot.mcap --camera-topic /cam/color/image_raw/compressed --compressed \
    --wrist-topic none --action-topic /arm/executed_action --instruction "open the drawer"

Exit status: 0 done, 1 no requested method can run, 2 usage error or an unusable bag (the message
names the problem; nothing is left at --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "offline evaluation of acceleration methods on a rosbag2 bag (output bags, metrics.json, plots)"

NONE = ("", "none", "-")


def add_topic_arguments(parser: argparse.ArgumentParser, actions: bool = True) -> None:
    """Topic mapping flags shared by replay, stats and the bag player (defaults: demonstration bags)."""
    from vla_accel_ros.data.bag_io import TopicMap

    d = TopicMap()
    g = parser.add_argument_group("topic mapping ('none' for a topic the bag lacks)")
    g.add_argument("--camera-topic", default=None, help=f"main camera (default {d.camera})")
    g.add_argument("--wrist-topic", default=None, help=f"wrist camera (default {d.wrist_camera})")
    g.add_argument("--joint-topic", default=d.joint_states, help="sensor_msgs/JointState topic")
    g.add_argument("--instruction-topic", default=d.instruction, help="std_msgs/String instruction topic")
    if actions:
        g.add_argument(
            "--action-topic",
            default=d.action,
            help="reference (executed) actions: VlaAction or Float32/64MultiArray",
        )
    g.add_argument("--episode-topic", default=d.episode, help="episode start/end markers (JSON String)")
    g.add_argument(
        "--compressed",
        action="store_true",
        help="cameras are sensor_msgs/CompressedImage (default topics get a /compressed suffix)",
    )
    g.add_argument("--instruction", default="", help="instruction to use when the bag has none")
    g.add_argument("--joint-names", default=None, help="comma-separated joints to select, in order")


def _opt(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in NONE else value


def topic_map(args: argparse.Namespace):
    """TopicMap from add_topic_arguments' flags."""
    from vla_accel_ros.data.bag_io import TopicMap

    d = TopicMap()
    suffix = "/compressed" if args.compressed else ""
    camera = args.camera_topic if args.camera_topic is not None else d.camera + suffix
    wrist = args.wrist_topic if args.wrist_topic is not None else (d.wrist_camera or "") + suffix
    if _opt(camera) is None:
        raise ValueError("--camera-topic cannot be 'none': the main camera defines the steps")
    return TopicMap(
        camera=camera,
        wrist_camera=_opt(wrist),
        joint_states=args.joint_topic,
        instruction=_opt(args.instruction_topic),
        action=_opt(getattr(args, "action_topic", None)),
        episode=_opt(args.episode_topic),
        image_format="compressed" if args.compressed else "auto",
        joint_names=[n.strip() for n in args.joint_names.split(",")] if args.joint_names else None,
        default_instruction=args.instruction,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.evaluation.replay import DEFAULT_METHODS, WARMUP_STEPS

    parser.add_argument("bag", type=Path, help="rosbag2 directory, .mcap or .db3")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated: ar, static:<mode>, dyq, spec, specvla, kerv, kerv+dyq, kerv-loosen",
    )
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default replay_<bag name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--config", type=Path, default=None, help="config dir (vla_accel.yaml, calibration.yaml)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument(
        "--warmup", type=int, default=WARMUP_STEPS, help="first steps left out of the latency statistics"
    )
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_topic_arguments(parser)


def _print_summary(report: dict, out: Path) -> None:
    print(f"replayed {report['steps']} steps ({report['episodes']} episodes) of {report['bag']} -> {out}")
    for name, m in report["methods"].items():
        if not m["available"]:
            print(f"  {name:10s} unavailable: {m['reason']}")
            continue
        lat = m["latency_ms"]
        mae = m["action_mae_mean"]
        rate = m["acceptance"]["rate"]
        print(
            f"  {name:10s} {m['steps_per_s'] or 0:7.1f} steps/s"
            f"  p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms"
            + (f"  MAE {mae:.4f}" if mae is not None else "")
            + (f"  accept {rate:.2f}" if rate is not None else "")
        )
        if m["fallback"]["steps"]:
            reasons = "; ".join(f"{r} ({c}x)" for r, c in m["fallback"]["reasons"].items())
            print(f"  {'':10s} warning: {m['fallback']['steps']} steps fell back: {reasons}")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.data.bag_io import BagError
    from vla_accel_ros.evaluation.methods import CONFIG_DIR, load_settings, method
    from vla_accel_ros.evaluation.replay import MethodsUnavailable, replay_to

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        for name in methods:
            method(name)
        tm = topic_map(args)
        params = load_settings(args.config or CONFIG_DIR)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path(f"replay_{args.bag.stem or args.bag.name}")
    try:
        policy = _load_policy(args.checkpoint, args.threads)
    except (ValueError, OSError) as err:  # CheckpointError is a ValueError
        print(f"error: cannot load checkpoint {args.checkpoint!r}: {err}", file=sys.stderr)
        return 2
    try:
        report = replay_to(
            args.bag,
            policy,
            methods,
            out,
            overwrite=args.overwrite,
            plots=not args.no_plots,
            topic_map=tm,
            params=params,
            warmup=args.warmup,
            max_steps=args.max_steps,
            progress=not args.quiet,
            storage=args.storage,
        )
    except BagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except MethodsUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except FileExistsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_summary(report, out)
    return 0


def _load_policy(checkpoint: str, threads: int):
    import torch

    from vla_accel_ros.policy.runtime import Policy

    if threads > 0:
        torch.set_num_threads(threads)
    return Policy.load(None if checkpoint in ("", "builtin") else Path(checkpoint))
