"""`vla-accel bench-replay`: replay throughput of every method on one demonstration bag.

    vla-accel bench-replay --bag data/demos/reach-v3 --episodes 5 --max-steps 500 --threads 1

Runs `vla-accel replay` (evaluation/replay.replay_to, the same policies and loops) over the first
--episodes episodes of the bag, then writes the results block of docs/REPLAY.md, docs/results/replay.json
and copies the figures that carry information (latency, action error, the timelines whose precision or
threshold moves) into docs/img/replay/. Nothing under docs/ is touched unless the replay completed.

Exit status: 0 done, 1 no method could run, 2 usage error or an unusable bag.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
from pathlib import Path

HELP = "replay a demo bag through every method; writes docs/REPLAY.md (steps/s, error, acceptance, fill rate)"

SUMMARY_PLOTS = ("latency_hist.png", "action_error.png")


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
    return "vla-accel bench-replay " + shlex.join(parts)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _shares(m: dict, order: list[str]) -> str:
    share = m.get("precision_share", {})
    return ", ".join(f"{p} {share[p]:.0%}" for p in order if p in share) or "-"


def interesting_plots(report: dict) -> list[str]:
    """Figures worth publishing: the summaries, and timelines where precision or threshold moves."""
    names = [p for p in report.get("plots", []) if Path(p).name in SUMMARY_PLOTS]
    for name, m in report["methods"].items():
        if not m.get("available"):
            continue
        tl = m["timeline"]
        if len(set(tl["precision"])) > 1 or len(set(tl["threshold"])) > 1:
            names += [p for p in report.get("plots", []) if Path(p).name == f"timeline_{_file(name)}.png"]
    return names


def _file(name: str) -> str:
    from vla_accel_ros.evaluation.replay import bag_dir_name

    return bag_dir_name(name)


def markdown(summary: dict, images: list[str]) -> str:
    """The results block of docs/REPLAY.md: one row per method, skipped ones with their reason."""
    order = summary["precisions"]
    lines = [
        f"Command: `{summary['command']}`  ",
        f"Date: {summary['date']}; machine: {summary['machine']}; torch threads {summary['threads']}; "
        f"checkpoint `{summary['checkpoint']}`.  ",
        f"Bag: `{summary['bag']}`, {summary['episodes']} episode(s), {summary['steps']} steps, every method "
        f"on every step in lockstep; timings leave out the first {summary['warmup_steps']} steps.",
        "",
        "| method | policy | steps/s | p50 ms | p95 ms | action MAE | token bin error | acceptance "
        "| Kalman fill rate | precision shares | fallbacks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    skipped = []
    for name, m in summary["methods"].items():
        if not m["available"]:
            skipped.append(f"- `{name}` skipped: {m['reason']}")
            continue
        lat = m["latency_ms"]
        lines.append(
            f"| `{name}` | {m['policy']} | {_fmt(m['steps_per_s'], '.1f')} | {_fmt(lat['p50'], '.1f')} "
            f"| {_fmt(lat['p95'], '.1f')} | {_fmt(m['action_mae_mean'], '.4f')} "
            f"| {_fmt(m['token_bin_error_mean'], '.2f')} | {_fmt(m['acceptance']['rate'], '.2f')} "
            f"| {_fmt(m['kalman_fill_rate'], '.2f')} | {_shares(m, order)} | {m['fallback']['steps']} |"
        )
    lines += [""] + skipped if skipped else []
    if summary["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in summary["notes"]]
    if images:
        lines += [""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def _without_timelines(report: dict) -> dict:
    """The metrics minus per-step timelines (those stay in the work folder's metrics.json)."""
    out = dict(report)
    out["methods"] = {
        n: {k: v for k, v in m.items() if k != "timeline"} for n, m in report["methods"].items()
    }
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from vla_accel_ros.commands.bench import machine, write_block
    from vla_accel_ros.commands.replay import execute
    from vla_accel_ros.evaluation.replay import jsonable

    if args.episodes < 1 or args.max_steps < 1:
        print("error: --episodes and --max-steps must be at least 1", file=sys.stderr)
        return 2
    rc, report = execute(
        args.bag,
        args.methods,
        args.work,
        checkpoint=args.checkpoint,
        draft=args.draft,
        threads=max(1, args.threads),
        overwrite=True,
        warmup=args.warmup,
        max_steps=args.max_steps,
        max_episodes=args.episodes,
        progress=not args.no_progress,
    )
    if report is None:
        return rc
    summary = {
        "command": command_line(args),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "threads": torch.get_num_threads(),
        "checkpoint": str(args.checkpoint),
        **_without_timelines(report),
    }
    images = []
    for old in args.img.glob("*.png"):
        old.unlink()  # figures of an earlier run must not pass for this one's
    for rel in interesting_plots(report):
        args.img.mkdir(parents=True, exist_ok=True)
        shutil.copy2(args.work / rel, args.img / Path(rel).name)
        images.append(Path(os.path.relpath(args.img / Path(rel).name, args.markdown.parent)).as_posix())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(jsonable(summary), indent=1, allow_nan=False) + "\n")
    block = markdown(summary, images)
    write_block(args.markdown, "bench-replay", block, "# Offline replay\n")
    print(block, end="")
    print(f"wrote {args.markdown}, {args.json}, {len(images)} figure(s) in {args.img}")
    return 0
