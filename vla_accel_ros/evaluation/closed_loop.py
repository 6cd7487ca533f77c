"""Closed-loop evaluation of a policy on held-out Meta-World layouts.

Seeds are EVAL_SEED_BASE + i: never used for demonstrations, re-randomized per seed, and
the same for every method compared in one run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vla_accel_ros.evaluation.reporting import fan_out, split_jobs
from vla_accel_ros.evaluation.stats import percentiles, wilson_interval
from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT
from vla_accel_ros.policy.builder import PolicySpec, build_policy
from vla_accel_ros.policy.runtime import ActionResult, Policy, PolicyInput
from vla_accel_ros.sim.tasks import EVAL_SEED_BASE, TASKS


@dataclass
class EpisodeResult:
    """One closed-loop episode's outcome and per-step costs, the row the evaluation report sums."""

    task: str
    seed: int
    success: bool
    steps: int
    latency_ms: list[float] = field(default_factory=list)  # policy time per step
    target_passes: list[int] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)


# A step controller turns the history of executed actions into the act() keywords of the
# next step (precision, decoding, threshold, kalman_action); the default asks for nothing.
StepController = Callable[[list[np.ndarray]], dict]


def run_episode(
    policy: Policy,
    task: str,
    seed: int,
    max_steps: int,
    image_size: int,
    controller: StepController | None = None,
    warmup: int = 0,
) -> EpisodeResult:
    from vla_accel_ros.sim.metaworld_arm import SimArm

    arm = SimArm(task, image_size=image_size, cameras=policy.cameras, max_steps=max_steps)
    try:
        obs = arm.reset(seed)
        result = EpisodeResult(task, seed, False, 0)
        executed: list[np.ndarray] = []
        while not arm.done:
            kwargs = controller(executed) if controller else {}
            inp = PolicyInput(obs.images, obs.joint_positions, arm.instruction)
            t0 = time.perf_counter()
            out: ActionResult = policy.act(inp, **kwargs)
            result.latency_ms.append((time.perf_counter() - t0) * 1e3)
            result.target_passes.append(out.target_passes)
            result.precisions.append(out.precision)
            obs = arm.step(out.action)
            executed.append(np.clip(out.action, -1, 1))
        result.success, result.steps = arm.success, arm.steps
        result.latency_ms = result.latency_ms[warmup:]
        return result
    finally:
        arm.close()


def _worker(args: tuple) -> list[dict]:
    checkpoint, jobs, max_steps, image_size, threads = args
    import torch

    torch.set_num_threads(threads)
    policy = build_policy(PolicySpec(checkpoint=checkpoint))
    return [asdict(run_episode(policy, task, seed, max_steps, image_size)) for task, seed in jobs]


def evaluate(
    checkpoint: str | Path | None,
    tasks: list[str],
    episodes: int,
    max_steps: int = 200,
    workers: int = 1,
    seed_offset: int = 0,
    progress: bool = True,
) -> dict:
    """Run `episodes` held-out episodes per task; returns the report dict (see summarize)."""
    checkpoint = str(checkpoint or BUILTIN_CHECKPOINT)
    policy = build_policy(PolicySpec(checkpoint=checkpoint))
    image_size = policy.config.image_size
    jobs = [(t, EVAL_SEED_BASE + seed_offset + i) for t in tasks for i in range(episodes)]
    t0 = time.perf_counter()
    if workers <= 1:
        from tqdm import tqdm

        results = [
            asdict(run_episode(policy, t, s, max_steps, image_size))
            for t, s in tqdm(jobs, desc="episodes", disable=not progress)
        ]
    else:
        chunks = split_jobs(jobs, workers)
        parts = fan_out(_worker, [(checkpoint, c, max_steps, image_size, 1) for c in chunks], workers)
        results = [r for part in parts for r in part]
    report = summarize(results)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    report["max_steps"] = max_steps
    report["checkpoint"] = checkpoint
    return report


def summarize(results: list[dict]) -> dict:
    per_task = {}
    for task in sorted(
        {r["task"] for r in results}, key=lambda t: list(TASKS).index(t) if t in TASKS else 99
    ):
        rs = [r for r in results if r["task"] == task]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, len(rs))
        lat = [x for r in rs for x in r["latency_ms"]]
        per_task[task] = {
            "episodes": len(rs),
            "successes": k,
            "success_rate": k / len(rs),
            "ci95": [lo, hi],
            "mean_steps": float(np.mean([r["steps"] for r in rs])),
            "mean_steps_success": float(np.mean([r["steps"] for r in rs if r["success"]])) if k else None,
            "latency_ms": percentiles(lat),
        }
    n = len(results)
    k = sum(r["success"] for r in results)
    lo, hi = wilson_interval(k, n)
    lat = [x for r in results for x in r["latency_ms"]]
    return {
        "tasks": per_task,
        "overall": {
            "episodes": n,
            "successes": k,
            "success_rate": k / n if n else 0.0,
            "ci95": [lo, hi],
            "task_mean_success": float(np.mean([v["success_rate"] for v in per_task.values()])),
            "latency_ms": percentiles(lat),
        },
        "seeds": sorted({r["seed"] for r in results}),
    }


def markdown_table(report: dict, title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| task | success | 95 % CI | episodes | mean length | policy ms/step p50 / p95 |",
        "|---|---|---|---|---|---|",
    ]
    rows = list(report["tasks"].items()) + [("**mean over tasks**", report["overall"])]
    for name, v in rows:
        rate = v.get("task_mean_success", v["success_rate"])
        lat = v["latency_ms"]
        steps = f"{v['mean_steps']:.0f}" if "mean_steps" in v else "-"
        lines.append(
            f"| {name} | {rate * 100:.1f} % | {v['ci95'][0] * 100:.1f}-{v['ci95'][1] * 100:.1f} % | "
            f"{v['episodes']} | {steps} | {lat['p50']:.1f} / {lat['p95']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(report: dict, json_path: Path) -> None:
    import json

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
