"""Scripted-expert demonstrations recorded into one rosbag2 bag per task (Meta-World or LIBERO).

Each task runs in its own process (rendering is CPU-bound and single-threaded per process); only
successful episodes are kept, with seeds S, S+1, ... tried until enough have succeeded.

With a driver checkpoint the recording is a DAgger round instead: the policy moves the arm and the
expert labels every state it visits, so the data covers the policy's own mistakes. Every episode is
kept then, failures above all, since recovering from them is what the labels teach.

LIBERO tasks ("libero_object:3") record 7-D actions from layouts that the environment's own samplers
draw from our seeds, never from the suites' official init states, which stay held out for evaluation.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vla_accel_ros.sim.arms import arm_facts, make_arm, simulator_of, task_record
from vla_accel_ros.sim.tasks import EVAL_SEED_BASE, TASKS, task_dirname

# Stop a task after this many attempts per wanted episode: a broken expert must not loop forever.
MAX_ATTEMPTS_PER_EPISODE = 3


@dataclass
class DemoConfig:
    """How demonstrations are recorded (episodes, seeds, image size, storage, driver), checked up front."""

    episodes_per_task: int = 100
    seed_start: int = 0
    image_size: int = 64
    max_steps: int | None = None  # None: the task's own limit (Meta-World 200, LIBERO the protocol's)
    storage: str = "mcap"
    cameras: tuple[str, ...] = ("corner", "wrist")
    driver: str | None = None  # checkpoint (or "builtin") that moves the arm; None: the expert does

    def check(self) -> None:
        if self.episodes_per_task < 1:
            raise ValueError("episodes_per_task must be >= 1")
        if not 0 <= self.seed_start < EVAL_SEED_BASE:
            raise ValueError(
                f"seed_start must be in [0, {EVAL_SEED_BASE}): seeds from {EVAL_SEED_BASE} are for evaluation"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"storage must be mcap or sqlite3, got {self.storage!r}")


@dataclass
class TaskResult:
    """What recording one task produced, so a demo run reports kept and failed seeds per task."""

    task: str
    bag: str  # folder name under the output directory (a LIBERO spec's ':' becomes '-')
    instruction: str
    seeds: list[int] = field(default_factory=list)  # kept (successful) episodes, in bag order
    failed_seeds: list[int] = field(default_factory=list)
    driver_successes: int = 0  # DAgger rounds: episodes the driving policy itself completed
    frames: int = 0  # steps stored in the bag
    sim_steps: int = 0  # steps simulated, failed episodes included
    seconds: float = 0.0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # simulator, suite, task_index, ... (task_record)

    @property
    def expert_success_rate(self) -> float:
        tried = len(self.seeds) + len(self.failed_seeds)
        return len(self.seeds) / tried if tried else 0.0


def run_episode(arm: Any, seed: int, episode_index: int, driver: Any = None) -> Any:
    """One episode on `seed`, labelled with the expert's action at every step.

    The expert also moves the arm unless `driver` (a Policy) is given; the Episode's success is
    then the driver's. Images are those from before each step.
    """
    from vla_accel_ros.data.episodes import EpisodeRecorder
    from vla_accel_ros.policy.runtime import PolicyInput

    obs = arm.reset(seed)
    rec = EpisodeRecorder(arm.task, seed, arm.instruction, obs.joint_names)
    while not arm.done:
        label = arm.expert_action()
        rec.add(obs.images, obs.joint_positions, label, obs.joint_velocities)
        if driver is None:
            obs = arm.step(label)
        else:
            obs = arm.step(driver.act(PolicyInput(obs.images, obs.joint_positions, arm.instruction)).action)
    return rec.finish(arm.success, episode_index, arm.control_hz)


def generate_task(
    task: str, out_dir: Path, cfg: DemoConfig, report: Callable[[str, str, int], None] | None = None
) -> TaskResult:
    """Record `cfg.episodes_per_task` successful expert episodes of `task` into `out_dir/<task_dirname>/`."""
    from vla_accel_ros.data.bag_io import BagWriter

    name = task_dirname(task)
    final = out_dir / name
    # Built under .partial/ and moved into place when complete: a bag at out_dir/<name> is always whole.
    partial = out_dir / ".partial" / name
    t0 = time.monotonic()
    max_attempts = cfg.episodes_per_task * MAX_ATTEMPTS_PER_EPISODE
    driver = _load_driver(cfg.driver) if cfg.driver else None
    if driver is not None and driver.config.image_size != cfg.image_size:
        raise ValueError(
            f"driver {cfg.driver} sees {driver.config.image_size} px images; "
            f"recording asks for {cfg.image_size} px"
        )
    cameras = tuple(driver.cameras) if driver else cfg.cameras
    arm = make_arm(task, cfg.image_size, cameras, cfg.max_steps)
    result = TaskResult(task=task, bag=name, instruction=arm.instruction, details=task_record(arm))
    result.error = _cannot_record(arm, driver)
    if result.error:
        arm.close()
        return result
    if partial.exists():
        shutil.rmtree(partial)
    partial.parent.mkdir(parents=True, exist_ok=True)
    with arm, BagWriter(partial, cfg.storage) as bag:
        seed = cfg.seed_start
        while len(result.seeds) < cfg.episodes_per_task:
            if seed >= EVAL_SEED_BASE:
                result.error = f"ran into evaluation seeds ({EVAL_SEED_BASE}) before enough successes"
                break
            if len(result.seeds) + len(result.failed_seeds) >= max_attempts:
                result.error = f"expert failed {len(result.failed_seeds)} of {max_attempts} episodes; gave up"
                break
            ep = run_episode(arm, seed, bag.episodes, driver)
            result.sim_steps += len(ep)
            result.driver_successes += int(driver is not None and ep.success)
            if ep.success or driver is not None:
                bag.write(ep)
                result.seeds.append(seed)
                result.frames += len(ep)
            else:
                result.failed_seeds.append(seed)
            if report:
                report(task, "kept" if ep.success or driver is not None else "failed", len(ep))
            seed += 1
    result.seconds = time.monotonic() - t0
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    try:
        partial.parent.rmdir()
    except OSError:
        pass  # another task is still writing there
    return result


def _cannot_record(arm: Any, driver: Any) -> str | None:
    """Why `arm`'s task cannot be recorded (no scripted expert, a driver of another action size), or None."""
    if not getattr(arm, "has_expert", True):  # LIBERO goals other than one pick-and-place
        return f"no scripted expert for {arm.task} ({arm.instruction!r})"
    if driver is not None and driver.action_dim != arm.action_dim:
        return f"the driver emits {driver.action_dim} action values; {arm.task} takes {arm.action_dim}"
    return None


def _load_driver(checkpoint: str) -> Any:
    import torch

    from vla_accel_ros.policy.builder import PolicySpec, build_policy

    torch.set_num_threads(1)  # one recorder per core
    return build_policy(PolicySpec(checkpoint=checkpoint))


# -- parallel driver --------------------------------------------------------------------------------
_QUEUE: Any = None


def _init_worker(q: Any) -> None:
    global _QUEUE
    _QUEUE = q
    # Two processes share two cores: llvmpipe's own render threads would only contend.
    os.environ.setdefault("LP_NUM_THREADS", "1")
    os.environ.setdefault("MUJOCO_GL", "egl")


def _worker(task: str, out_dir: str, cfg: DemoConfig) -> TaskResult:
    def report(t: str, event: str, steps: int) -> None:
        _QUEUE.put((t, event, steps))

    try:
        return generate_task(task, Path(out_dir), cfg, report)
    except Exception as exc:  # reported per task; the other tasks still finish
        return TaskResult(
            task=task,
            bag=task_dirname(task),
            instruction=TASKS.get(task, ""),
            error=f"{type(exc).__name__}: {exc}",
        )


def generate(
    out_dir: Path,
    tasks: list[str],
    cfg: DemoConfig,
    workers: int = 2,
    on_event: Callable[[str, str, int], None] | None = None,
) -> list[TaskResult]:
    """Generate all tasks, `workers` processes at a time; `on_event(task, "kept"|"failed", steps)`.

    The tasks must be of one simulator (ValueError otherwise): one demonstration set, one action size.
    """
    cfg.check()
    simulator_of(tasks)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    results: dict[str, TaskResult] = {}
    with ProcessPoolExecutor(
        max(1, min(workers, len(tasks))), mp_context=ctx, initializer=_init_worker, initargs=(events,)
    ) as pool:
        futures = {pool.submit(_worker, t, str(out_dir), cfg): t for t in tasks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(events, on_event)
            for fut in done:
                results[futures[fut]] = fut.result()
        _drain(events, on_event)
    return [results[t] for t in tasks]


def _drain(events: Any, on_event: Callable[[str, str, int], None] | None) -> None:
    while True:
        try:
            task, event, steps = events.get_nowait()
        except queue.Empty:
            return
        if on_event:
            on_event(task, event, steps)


def write_manifest(out_dir: Path, results: list[TaskResult], cfg: DemoConfig, seconds: float) -> Path:
    from vla_accel_ros.data.bag_io import (
        EPISODE_TOPIC,
        EXPERT_ACTION_TOPIC,
        INSTRUCTION_TOPIC,
        JOINT_STATES_TOPIC,
        camera_topic,
    )

    facts = arm_facts(results[0].task)
    limits = {r.details.get("max_steps", facts.max_steps) for r in results}
    manifest = {
        "format": "vla_accel_ros demonstrations v1",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "storage": cfg.storage,
        "image_size": cfg.image_size,
        "simulator": facts.simulator,
        "action_dim": facts.action_dim,
        "cameras": {
            c: {f"{facts.simulator}_camera": facts.cameras[c], "topic": camera_topic(c)} for c in cfg.cameras
        },
        "topics": {
            "joint_states": JOINT_STATES_TOPIC,
            "instruction": INSTRUCTION_TOPIC,
            "expert_action": EXPERT_ACTION_TOPIC,
            "episode": EPISODE_TOPIC,
        },
        "joint_names": list(facts.joint_names),
        "control_hz": facts.control_hz,
        "max_steps": cfg.max_steps or (limits.pop() if len(limits) == 1 else None),  # None: per task
        "driver": cfg.driver,
        "seed_start": cfg.seed_start,
        "eval_seed_base": EVAL_SEED_BASE,
        "held_out": (
            "the suites' official init states (LIBERO protocol); demonstrations start from seeded layouts"
            if facts.simulator == "libero"
            else f"layouts of seeds from {EVAL_SEED_BASE}"
        ),
        "episodes_per_task": cfg.episodes_per_task,
        "seconds": round(seconds, 1),
        "total_episodes": sum(len(r.seeds) for r in results),
        "total_frames": sum(r.frames for r in results),
        "tasks": {
            r.task: {
                **{k: v for k, v in asdict(r).items() if k not in ("task", "details")},
                **r.details,
                "episodes": len(r.seeds),
                "expert_success_rate": round(r.expert_success_rate, 4),
                "seconds": round(r.seconds, 1),
            }
            for r in results
        },
    }
    path = out_dir / "manifest.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
