"""One `vla-accel bench-decoding` run, start to report: the graph's settings, the rows, the open loop,
the draft's cost, then (asked for) the realistic size and the closed loop. The command only parses the
options into `DecodingBenchOptions`, calls `run_decoding_bench` and writes what it returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from vla_accel_ros.evaluation.decoding_bench import (
    ClosedLoopSetup,
    build_rows,
    closed_loop,
    draft_cost,
    graph_settings,
    held_out_episodes,
    replay,
    speedups,
    summarize_rows,
)
from vla_accel_ros.evaluation.reporting import machine_info, machine_summary, utc_now
from vla_accel_ros.policy.builtin import resolve_checkpoint


@dataclass
class DecodingBenchOptions:
    """What one run measures (the command's flags of the same names)."""

    checkpoint: str
    data: Path
    methods: list[str]
    frames: int = 600
    warmup: int = 5
    threads: int = 0  # 0: every core this process may use
    closed_loop: ClosedLoopSetup | None = None
    closed_loop_methods: tuple[str, ...] = ()  # () = every row
    realistic_frames: int = 0
    realistic_layers: int = 0
    compile: bool = False  # torch.compile every realistic-size format's decoder


class NoRowsError(RuntimeError):
    """Not one method could be built."""


def _draft_training(checkpoint: str) -> dict | None:
    training = resolve_checkpoint(checkpoint) / "draft" / "training.json"
    if not training.is_file():
        return None
    info = json.loads(training.read_text())
    keys = ("training_frames", "steps", "train_seconds", "held_out_top1", "held_out_acceptance")
    return {k: info.get(k) for k in keys}


def run_decoding_bench(opts: DecodingBenchOptions, command: str, progress: bool = True) -> dict:
    """The whole report (JSON-ready); NoRowsError / decoding_bench.NoDraftError when nothing can run."""
    import torch

    from vla_accel_ros.policy.threads import use_threads

    threads = use_threads(opts.threads)
    notes: list[str] = []
    settings = graph_settings(opts.data, notes)
    rows, policies = build_rows(opts.methods, opts.checkpoint, settings, notes)
    if not rows:
        raise NoRowsError("no method could be built: " + "; ".join(notes))
    main = policies.full
    episodes = held_out_episodes(main, opts.data, opts.frames)
    recs = replay(rows, episodes, opts.warmup, progress)
    open_loop = {name: summarize_rows(r, main.action_dim) for name, r in recs.items()}
    baseline = speedups(open_loop)
    info = machine_info()
    report: dict = {
        "command": command,
        "date": utc_now(),
        "machine": machine_summary(info),
        "machine_info": info,
        "torch": torch.__version__,
        "threads": threads,
        "checkpoint": str(opts.checkpoint),
        "settings": settings.describe(),
        "draft": {"config": main.draft.config.to_dict()},
        "open_loop_frames": len(next(iter(recs.values()))),
        "open_loop_episodes": len(episodes),
        "open_loop": open_loop,
        "open_loop_baseline": baseline,
        "draft_cost": draft_cost(main, episodes),
        "notes": notes,
    }
    training = _draft_training(opts.checkpoint)
    if training:
        report["draft"]["training"] = training
    if opts.realistic_frames > 0:
        from vla_accel_ros.evaluation.decoding_realistic import realistic_section

        report["realistic"] = realistic_section(
            list(recs),
            episodes,
            recs,
            opts.realistic_frames,
            opts.realistic_layers,
            opts.warmup,
            progress,
            settings.inference.quant_group_size,
            opts.compile,
        )
    if opts.closed_loop is not None:
        setup = opts.closed_loop
        chosen = [r for r in rows if not opts.closed_loop_methods or r.name in opts.closed_loop_methods]
        image_size = main.config.image_size
        report["closed_loop"] = closed_loop(chosen, opts.checkpoint, settings, setup, image_size, progress)
        report["closed_loop_setup"] = setup.describe()
        if setup.workers > 1:
            notes.append(
                f"closed loop ran in {setup.workers} processes at once: its latencies are not the "
                "reference (the open-loop table is)"
            )
    return report
