"""Closed-loop evaluation of a policy on held-out Meta-World layouts or with the LIBERO protocol.

Meta-World: seeds are EVAL_SEED_BASE + i, never used for demonstrations, re-randomized per seed, and
the same for every method compared in one run. LIBERO: episode i of a task starts from the suite's
official init state i (demonstrations start from seeded layouts instead); success is reported per task,
per suite and as the mean over suites, as the LIBERO papers do.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_accel_ros.evaluation.reporting import fan_out, split_jobs
from vla_accel_ros.evaluation.stats import percentiles, wilson_interval
from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT
from vla_accel_ros.policy.builder import PolicySpec, build_policy
from vla_accel_ros.policy.runtime import ActionResult, Policy, PolicyInput
from vla_accel_ros.sim.arms import arm_facts, check_tasks, is_libero_task, make_arm
from vla_accel_ros.sim.libero_suites import LIBERO_SUITES
from vla_accel_ros.sim.tasks import EVAL_SEED_BASE, TASKS

# LIBERO episodes per pool job: an arm takes seconds to build, an episode tens of seconds to run, so a
# job of a few episodes amortizes the build and still moves the progress bar often.
LIBERO_EPISODES_PER_JOB = 5


@dataclass
class EpisodeResult:
    """One closed-loop episode's outcome and per-step costs, the row the evaluation report sums."""

    task: str
    seed: int | None  # Meta-World layout seed; None for a LIBERO episode
    success: bool
    steps: int
    latency_ms: list[float] = field(default_factory=list)  # policy time per step
    target_passes: list[int] = field(default_factory=list)
    precisions: list[str] = field(default_factory=list)
    init_state: int | None = None  # LIBERO: the official init state the episode started from


# A step controller turns the history of executed actions into the act() keywords of the
# next step (precision, decoding, threshold, kalman_action); the default asks for nothing.
StepController = Callable[[list[np.ndarray]], dict]


def run_episode(
    policy: Policy,
    task: str,
    seed: int | None,
    max_steps: int | None,
    image_size: int,
    controller: StepController | None = None,
    warmup: int = 0,
    init_state: int | None = None,
    arm: Any = None,
) -> EpisodeResult:
    """One closed-loop episode from layout `seed`, or from official init state `init_state` (LIBERO).

    `arm`: an arm of `task` to reuse (kept open); else one is built for the episode and closed after.
    `max_steps=None`: the task's default limit.
    """
    own = arm is None
    if own:
        arm = make_arm(task, image_size, policy.cameras, max_steps)
    try:
        obs = arm.reset(seed) if init_state is None else arm.reset_to_init_state(init_state)
        result = EpisodeResult(task, seed if init_state is None else None, False, 0, init_state=init_state)
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
        if own:
            arm.close()


def _worker(args: tuple) -> list[dict]:
    checkpoint, jobs, max_steps, image_size, threads = args
    import torch

    torch.set_num_threads(threads)
    policy = build_policy(PolicySpec(checkpoint=checkpoint))
    return [asdict(run_episode(policy, task, seed, max_steps, image_size)) for task, seed in jobs]


def run_init_states(
    policy: Policy,
    task: str,
    init_states: list[int],
    max_steps: int | None,
    image_size: int,
    on_episode: Callable[[], None] | None = None,
) -> list[dict]:
    """A LIBERO task's episodes from the given official init states, on one arm built once."""
    with make_arm(task, image_size, policy.cameras, max_steps) as arm:
        out = []
        for i in init_states:
            out.append(asdict(run_episode(policy, task, None, max_steps, image_size, init_state=i, arm=arm)))
            if on_episode:
                on_episode()
        return out


def _libero_worker(args: tuple) -> list[dict]:
    checkpoint, task, init_states, max_steps, image_size = args
    import torch

    torch.set_num_threads(1)  # one simulator and one policy per core
    policy = build_policy(PolicySpec(checkpoint=checkpoint))
    return run_init_states(policy, task, init_states, max_steps, image_size)


def _evaluate_libero(
    checkpoint: str,
    policy: Policy,
    tasks: list[str],
    episodes: int,
    max_steps: int | None,
    workers: int,
    bar: Any,
) -> list[dict]:
    """The LIBERO protocol: init states 0..episodes-1 of every task, in jobs of a few episodes."""
    image_size = policy.config.image_size
    if workers <= 1:
        return [
            r
            for t in tasks
            for r in run_init_states(policy, t, list(range(episodes)), max_steps, image_size, bar.update)
        ]
    step = LIBERO_EPISODES_PER_JOB
    jobs = [
        (checkpoint, t, list(range(s, min(s + step, episodes))), max_steps, image_size)
        for t in tasks
        for s in range(0, episodes, step)
    ]
    results: list[dict] = []
    with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:  # torch and MuJoCo: no fork
        for part in pool.imap_unordered(_libero_worker, jobs):
            results += part
            bar.update(len(part))
    return results


def _evaluate_metaworld(
    checkpoint: str,
    policy: Policy,
    jobs: list[tuple[str, int]],
    max_steps: int,
    workers: int,
    bar: Any,
) -> list[dict]:
    """Meta-World: every (task, held-out seed) job, one fresh arm per episode."""
    image_size = policy.config.image_size
    if workers <= 1:
        results = []
        for t, s in jobs:
            results.append(asdict(run_episode(policy, t, s, max_steps, image_size)))
            bar.update(1)
        return results
    chunks = split_jobs(jobs, workers)
    parts = fan_out(_worker, [(checkpoint, c, max_steps, image_size, 1) for c in chunks], workers)
    bar.update(len(jobs))
    return [r for part in parts for r in part]


def check_action_size(policy: Policy, tasks: list[str]) -> None:
    """ValueError unless the policy's actions fit every task's arm (4 values Meta-World, 7 LIBERO)."""
    for task in tasks:
        want = arm_facts(task).action_dim
        if policy.action_dim != want:
            raise ValueError(f"the policy emits {policy.action_dim} action values; {task} takes {want}")


def evaluate(
    checkpoint: str | Path | None,
    tasks: list[str],
    episodes: int,
    max_steps: int | None = None,
    workers: int = 1,
    seed_offset: int = 0,
    progress: bool = True,
) -> dict:
    """Run `episodes` held-out episodes per task; returns the report dict (see summarize).

    LIBERO tasks follow the LIBERO protocol (official init states 0..episodes-1, `seed_offset` unused;
    report["max_steps"] is then per task). `max_steps=None`: each task's default limit (Meta-World 200,
    LIBERO the protocol's per suite). Meta-World and LIBERO tasks are evaluated in separate runs.
    """
    from tqdm import tqdm

    libero = check_tasks(tasks) == "libero"
    checkpoint = str(checkpoint or BUILTIN_CHECKPOINT)
    policy = build_policy(PolicySpec(checkpoint=checkpoint))
    check_action_size(policy, tasks)
    limits = {t: max_steps or arm_facts(t).max_steps for t in tasks}
    t0 = time.perf_counter()
    with tqdm(total=len(tasks) * episodes, desc="episodes", disable=not progress) as bar:
        if libero:
            results = _evaluate_libero(checkpoint, policy, tasks, episodes, max_steps, workers, bar)
        else:
            jobs = [(t, EVAL_SEED_BASE + seed_offset + i) for t in tasks for i in range(episodes)]
            results = _evaluate_metaworld(checkpoint, policy, jobs, limits[tasks[0]], workers, bar)
    report = summarize(results)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    if libero:
        report["protocol"] = "LIBERO: episode i of a task starts from the suite's official init state i"
    report["max_steps"] = limits if libero else limits[tasks[0]]
    report["checkpoint"] = checkpoint
    return report


def _task_order(task: str) -> tuple:
    """Meta-World tasks in TASKS order, then LIBERO suites in their standard order, tasks by index."""
    if task in TASKS:
        return (0, list(TASKS).index(task))
    suite, _, which = task.partition(":")
    if is_libero_task(task):
        return (1, LIBERO_SUITES.index(suite), int(which) if which.isdigit() else 0, which)
    return (2, task)


def _pooled(rs: list[dict]) -> dict:
    """Pooled success with its Wilson 95 % CI, mean episode length and policy latency of episodes."""
    k = sum(r["success"] for r in rs)
    lo, hi = wilson_interval(k, len(rs))
    return {
        "episodes": len(rs),
        "successes": k,
        "success_rate": k / len(rs) if rs else 0.0,
        "ci95": [lo, hi],
        "mean_steps": float(np.mean([r["steps"] for r in rs])) if rs else 0.0,
        "latency_ms": percentiles([x for r in rs for x in r["latency_ms"]]),
    }


def _suites(per_task: dict) -> dict:
    """LIBERO suites of the report's tasks: pooled success (Wilson CI), mean over their tasks."""
    out = {}
    for suite in LIBERO_SUITES:
        rates = [v["success_rate"] for v in per_task.values() if v.get("suite") == suite]
        if rates:
            out[suite] = {"tasks": len(rates), "task_mean_success": float(np.mean(rates))}
    return out


def summarize(results: list[dict]) -> dict:
    per_task = {}
    for task in sorted({r["task"] for r in results}, key=_task_order):
        rs = [r for r in results if r["task"] == task]
        k = sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, len(rs))
        lat = [x for r in rs for x in r["latency_ms"]]
        per_task[task] = {
            **({"suite": task.partition(":")[0]} if is_libero_task(task) else {}),
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
    report: dict[str, Any] = {
        "tasks": per_task,
        "overall": {
            "episodes": n,
            "successes": k,
            "success_rate": k / n if n else 0.0,
            "ci95": [lo, hi],
            "task_mean_success": float(np.mean([v["success_rate"] for v in per_task.values()])),
            "latency_ms": percentiles(lat),
        },
        "seeds": sorted({r["seed"] for r in results if r.get("seed") is not None}),
    }
    suites = _suites(per_task)
    if suites:
        for suite, info in suites.items():
            info.update(_pooled([r for r in results if per_task[r["task"]].get("suite") == suite]))
        report["suites"] = suites
        report["overall"]["suite_mean_success"] = float(np.mean([v["success_rate"] for v in suites.values()]))
        report["overall"]["mean_steps"] = float(np.mean([r["steps"] for r in results]))
        report["init_states"] = sorted({r["init_state"] for r in results if r.get("init_state") is not None})
    return report


def markdown_table(report: dict, title: str) -> str:
    lines = [
        f"### {title}",
        "",
        "| task | success | 95 % CI | episodes | mean length | policy ms/step p50 / p95 |",
        "|---|---|---|---|---|---|",
    ]
    overall = report["overall"]
    suites = report.get("suites", {})
    # (row name, success shown, entry): a task's own rate, a suite's and the overall mean over tasks,
    # the mean over suites (LIBERO's headline number) when there are several; CIs are pooled ones.
    rows = [(name, v["success_rate"], v) for name, v in report["tasks"].items()]
    rows += [
        (f"**{s}** ({_count(v['tasks'], 'task')})", v["task_mean_success"], v) for s, v in suites.items()
    ]
    rows += [("**mean over tasks**", overall["task_mean_success"], overall)]
    if len(suites) > 1:
        rows += [("**mean over suites**", overall["suite_mean_success"], overall)]
    for name, rate, v in rows:
        lat = v["latency_ms"]
        steps = f"{v['mean_steps']:.0f}" if "mean_steps" in v else "-"
        lines.append(
            f"| {name} | {rate * 100:.1f} % | {v['ci95'][0] * 100:.1f}-{v['ci95'][1] * 100:.1f} % | "
            f"{v['episodes']} | {steps} | {lat['p50']:.1f} / {lat['p95']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def report_note(report: dict, command: str, workers: int) -> str:
    """The paragraph above a markdown table: the command, what was held out, the limits, wall time."""
    if "suites" in report:
        limits = sorted(set(report["max_steps"].values()))
        held_out = (
            f"LIBERO protocol: episode i of a task starts from the suite's official init state i "
            f"({report['init_states'][0]}-{report['init_states'][-1]}; demonstrations start from seeded "
            f"layouts, never from these); an episode fails when it has not succeeded after "
            f"{'/'.join(map(str, limits))} steps. Suite rows: mean over the suite's "
            "tasks, CI pooled over its episodes."
        )
    else:
        seeds = report["seeds"]
        held_out = (
            f"Held-out layouts: seeds {seeds[0]}-{seeds[-1]} (demonstrations used seeds below "
            f"{EVAL_SEED_BASE}), the same seeds for every task; an episode fails when it has not succeeded "
            f"after {report['max_steps']} steps."
        )
    return (
        f"Command: `{command}`\n\n"
        f"Plain greedy decoding at full precision (fp32). {held_out} 95 % Wilson intervals. "
        f"Wall time {report['wall_seconds'] / 60:.1f} min with {workers} workers; the policy "
        "latency column was measured beside the simulator, on a shared 2-core machine.\n\n"
    )


def write_report(report: dict, json_path: Path) -> None:
    import json

    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
