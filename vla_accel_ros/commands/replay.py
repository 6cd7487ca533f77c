"""`vla-accel replay BAG`: offline evaluation of the acceleration methods on a recorded bag.

vla-accel replay data/demos/reach-v3 --methods ar,static,dyq,kerv,kerv+dyq --max-episodes 2
vla-accel replay robot.mcap --camera-topic /cam/color/image_raw/compressed --compressed \
    --wrist-topic none --action-topic /arm/executed_action --instruction "open the drawer"

Method names follow the one grammar of vla_accel_ros.evaluation.methods (ar, ar@bf16, ar@w4a16, dyq,
spec, specvla, kerv, kerv+dyq, ...). Precision methods (ar@<mode>, dyq, kerv+dyq) run on an int4-ladder
copy of the checkpoint, at the graph's group size, the others on the checkpoint as loaded; the
speculative ones need its draft (beside the checkpoint, as the built-in one ships it, or --draft). The
decisions come from the params files the graph loads (config/, or --config DIR). A method that cannot
run is listed with the reason.

Exit status: 0 done, 1 no requested method can run, 2 usage error or an unusable bag (the message
names the problem; nothing is left at --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vla_accel_ros.data.topic_flags import add_topic_arguments, topic_map

HELP = "offline evaluation of acceleration methods on a rosbag2 bag (output bags, metrics.json, plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vla_accel_ros.evaluation.replay import DEFAULT_METHODS, WARMUP_STEPS

    parser.add_argument("bag", type=Path, help="rosbag2 directory, .mcap or .db3")
    parser.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated: ar, ar@<mode> or a bare mode name (w4a16, w4a8-emu, w4a4-emu, fp32, bf16), "
        "static (ar@ every int4 mode), dyq, spec, specvla, kerv, kerv+dyq, kerv-loosen",
    )
    parser.add_argument("--checkpoint", default="builtin", help="checkpoint folder or 'builtin'")
    parser.add_argument(
        "--draft", type=Path, default=None, help="draft folder (default: the checkpoint's draft/)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default replay_<bag name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config dir the graph's params come from (vla_accel.yaml, calibration.yaml, dyq.yaml)",
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
    from vla_accel_ros.evaluation.replay import ReplayError, run_replay

    out = args.out or Path(f"replay_{args.bag.stem or args.bag.name}")
    try:
        report = run_replay(
            args.bag,
            args.methods,
            out,
            checkpoint=args.checkpoint,
            draft=args.draft,
            threads=args.threads,
            config=args.config,
            overwrite=args.overwrite,
            plots=not args.no_plots,
            topic_map=topic_map(args),
            warmup=args.warmup,
            max_steps=args.max_steps,
            max_episodes=args.max_episodes,
            progress=not args.quiet,
            storage=args.storage,
        )
    except ReplayError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_status
    except ValueError as err:  # a topic flag (topic_map)
        print(f"error: {err}", file=sys.stderr)
        return 2
    _print_summary(report, out)
    return 0
