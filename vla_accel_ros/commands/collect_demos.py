"""`vla-accel collect-demos`: record scripted-expert demonstrations into rosbag2 bags."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "record scripted-expert Meta-World or LIBERO demonstrations into rosbag2 bags (one per task)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--out", type=Path, required=True, help="output directory (one bag per task inside)")
    add(
        "--tasks",
        default="all",
        help="'all' (Meta-World), comma-separated Meta-World names (reach,push) or LIBERO tasks "
        "(libero_object:3, libero_object:all, libero_spatial:0,1); one simulator per run",
    )
    add("--episodes-per-task", type=int, default=100, help="successful episodes kept per task")
    add("--seed-start", type=int, default=0, help="first layout seed (must stay below 1000000)")
    add("--image-size", type=int, default=64, help="square camera image size in pixels")
    add(
        "--max-steps",
        type=int,
        default=None,
        help="step limit of an episode (default: Meta-World 200, LIBERO the protocol's per suite)",
    )
    add("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage plugin")
    add("--workers", type=int, default=2, help="tasks recorded in parallel (one process each)")
    add("--overwrite", action="store_true", help="replace existing bags of the same tasks")
    add(
        "--driver",
        default=None,
        help="DAgger: this checkpoint ('builtin' or a folder) moves the arm, the expert labels each state, "
        "and every episode is kept",
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from vla_accel_ros.sim.arms import check_tasks
    from vla_accel_ros.sim.demos import DemoConfig, generate, write_manifest
    from vla_accel_ros.sim.tasks import parse_task_list, task_dirname

    try:
        tasks = parse_task_list(args.tasks)
        check_tasks(tasks)
        cfg = DemoConfig(
            episodes_per_task=args.episodes_per_task,
            seed_start=args.seed_start,
            image_size=args.image_size,
            max_steps=args.max_steps,
            storage=args.storage,
            driver=args.driver,
        )
        cfg.check()
    except (ValueError, ModuleNotFoundError) as exc:  # a LIBERO suite named without the extra installed
        print(f"error: {exc}")
        return 2
    existing = [task_dirname(t) for t in tasks if (args.out / task_dirname(t)).exists()]
    if existing and not args.overwrite:
        print(f"error: bags exist already in {args.out}: {', '.join(existing)} (--overwrite replaces them)")
        return 2

    counts = {"failed": 0, "steps": 0}
    bar = tqdm(total=len(tasks) * cfg.episodes_per_task, unit="ep", desc="demos", dynamic_ncols=True)

    def on_event(task: str, event: str, steps: int) -> None:
        counts["steps"] += steps
        if event == "kept":
            bar.update(1)
        else:
            counts["failed"] += 1
        bar.set_postfix(failed=counts["failed"], steps=counts["steps"])

    t0 = time.monotonic()
    try:
        results = generate(args.out, tasks, cfg, workers=args.workers, on_event=on_event)
    finally:
        bar.close()
    seconds = time.monotonic() - t0
    manifest = write_manifest(args.out, results, cfg, seconds)

    print(f"{'task':<26}{'episodes':>9}{'failed':>8}{'expert':>8}{'frames':>8}{'seconds':>9}")
    for r in results:
        print(
            f"{r.task:<26}{len(r.seeds):>9}{len(r.failed_seeds):>8}{r.expert_success_rate:>8.0%}"
            f"{r.frames:>8}{r.seconds:>9.1f}" + (f"  ERROR: {r.error}" if r.error else "")
        )
    kept = sum(len(r.seeds) for r in results)
    failed = sum(len(r.failed_seeds) for r in results)
    frames = sum(r.frames for r in results)
    sim_steps = sum(r.sim_steps for r in results)
    rate = kept / (kept + failed) if kept + failed else 0.0
    if cfg.driver:
        won = sum(r.driver_successes for r in results)
        print(
            f"DAgger round: {cfg.driver} drove every episode and succeeded in {won} of {kept}; "
            "the expert labelled every state (the 'expert' column counts kept episodes, here all)"
        )
    print(
        f"total: {kept} episodes kept, {failed} failed (expert success {rate:.1%}), {frames} frames, "
        f"{seconds:.1f} s ({sim_steps / max(seconds, 1e-9):.1f} sim steps/s); manifest {manifest}"
    )
    return 1 if any(r.error for r in results) else 0
