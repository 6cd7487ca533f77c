"""`vla-accel replay BAG`: offline evaluation of the acceleration methods on a recorded bag.

vla-accel replay data/demos/reach-v3 --methods ar,static,dyq,kerv,kerv+dyq --max-episodes 2
vla-accel replay robot.mcap --camera-topic /cam/color/image_raw/compressed --compressed \
    --wrist-topic none --action-topic /arm/executed_action --instruction "open the drawer"

Precision methods (static:<mode>, dyq, kerv+dyq) run on an int4-ladder copy of the checkpoint, the
others on the checkpoint as loaded; the speculative ones need its draft (beside the checkpoint, as the
built-in one ships it, or --draft). A method that cannot run is listed with the reason.

Exit status: 0 done, 1 no requested method can run, 2 usage error or an unusable bag (the message
names the problem; nothing is left at --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
        help="comma-separated: ar, static (every int4 mode), static:<mode> or a mode name "
        "(w4a16, w4a8-emu, w4a4-emu, fp32), dyq, spec, specvla, kerv, kerv+dyq, kerv-loosen",
    )
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--draft", type=Path, default=None, help="draft folder (default: the checkpoint's draft/)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default replay_<bag name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--config", type=Path, default=None, help="config dir (vla_accel.yaml, calibration.yaml)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--max-episodes", type=int, default=None, help="stop after this many episodes")
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
            print(f"  {name:16s} skipped: {m['reason']}")
            continue
        lat = m["latency_ms"]
        mae = m["action_mae_mean"]
        rate = m["acceptance"]["rate"]
        print(
            f"  {name:16s} {m['steps_per_s'] or 0:7.1f} steps/s"
            f"  p50 {lat['p50']:.1f} ms  p95 {lat['p95']:.1f} ms"
            + (f"  MAE {mae:.4f}" if mae is not None else "")
            + (f"  accept {rate:.2f}" if rate is not None else "")
        )
        if m["fallback"]["steps"]:
            reasons = "; ".join(f"{r} ({c}x)" for r, c in m["fallback"]["reasons"].items())
            print(f"  {'':16s} warning: {m['fallback']['steps']} steps fell back: {reasons}")
    for note in report.get("notes", []):
        print(f"  note: {note}")


def run(args: argparse.Namespace) -> int:
    try:
        tm = topic_map(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out or Path(f"replay_{args.bag.stem or args.bag.name}")
    rc, report = execute(
        args.bag,
        args.methods,
        out,
        checkpoint=args.checkpoint,
        draft=args.draft,
        threads=args.threads,
        config=args.config,
        overwrite=args.overwrite,
        plots=not args.no_plots,
        topic_map=tm,
        warmup=args.warmup,
        max_steps=args.max_steps,
        max_episodes=args.max_episodes,
        progress=not args.quiet,
        storage=args.storage,
    )
    if report is not None:
        _print_summary(report, out)
    return rc


def execute(
    bag: Path,
    methods: str,
    out: Path,
    checkpoint: str = "builtin",
    draft: Path | None = None,
    threads: int = 0,
    config: Path | None = None,
    **kwargs: Any,
) -> tuple[int, dict | None]:
    """`vla-accel replay` without its flags, shared with bench-replay: comma-separated `methods`,
    policies loaded for them, replay_to(**kwargs). Returns (exit status, report or None); an error is
    printed as one 'error: ...' line."""
    import torch

    from vla_accel_ros.data.bag_io import BagError
    from vla_accel_ros.evaluation.methods import CONFIG_DIR, expand, load_policies, load_settings
    from vla_accel_ros.evaluation.replay import MethodsUnavailable, replay_to

    try:
        names = expand([m.strip() for m in methods.split(",") if m.strip()])
        for flag in ("max_steps", "max_episodes"):
            if kwargs.get(flag) is not None and kwargs[flag] < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be at least 1")
        params = load_settings(config or CONFIG_DIR)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2, None
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        policies = load_policies(checkpoint, names, draft)
    except (ValueError, OSError) as err:  # CheckpointError is a ValueError
        print(f"error: cannot load checkpoint {checkpoint!r}: {err}", file=sys.stderr)
        return 2, None
    try:
        return 0, replay_to(bag, policies, names, out, params=params, **kwargs)
    except MethodsUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 1, None
    except (BagError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2, None
