"""One constructor for every simulated arm: Meta-World task names and LIBERO "<suite>:<index>" specs.

For the commands and nodes that build an arm from a task name (demos, eval, the sim arm node), so
that they take LIBERO tasks without knowing which simulator serves them. Each simulator is imported
only when its arm is built or its facts are asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from vla_accel_ros.sim.libero_suites import is_libero_task

__all__ = [
    "ArmFacts",
    "arm_facts",
    "check_tasks",
    "is_libero_task",
    "make_arm",
    "simulator_of",
    "task_record",
]

METAWORLD_MAX_STEPS = 200  # the Meta-World episodes' default limit (demos, eval, the sim arm node)


def make_arm(
    task: str, image_size: int, cameras: tuple[str, ...] | list[str], max_steps: int | None = None
) -> Any:
    """A LiberoArm for a LIBERO spec, else a Meta-World SimArm; `max_steps=None`: the task's default."""
    if is_libero_task(task):
        from vla_accel_ros.sim.libero_arm import LiberoArm

        return LiberoArm(task, image_size=image_size, cameras=cameras, max_steps=max_steps)
    from vla_accel_ros.sim.metaworld_arm import SimArm

    return SimArm(
        task,
        image_size=image_size,
        cameras=cameras,
        max_steps=METAWORLD_MAX_STEPS if max_steps is None else max_steps,
    )


@dataclass(frozen=True)
class ArmFacts:
    """What a task's simulator fixes, known without building an arm (manifests, up-front checks)."""

    simulator: str  # "metaworld" or "libero"
    cameras: dict[str, str]  # package camera name -> the simulator's camera name
    joint_names: tuple[str, ...]
    control_hz: float
    action_dim: int
    max_steps: int  # the task's default episode limit (LIBERO: the protocol's, per suite)


def arm_facts(task: str) -> ArmFacts:
    """The simulator facts of `task` (imports that simulator's arm module, not the benchmark's tasks)."""
    if is_libero_task(task):
        from vla_accel_ros.sim import libero_arm as lib

        suite = task.partition(":")[0].strip()
        return ArmFacts(
            "libero", dict(lib.CAMERAS), lib.JOINT_NAMES, lib.CONTROL_HZ, lib.ACTION_DIM, lib.MAX_STEPS[suite]
        )
    from vla_accel_ros.sim import metaworld_arm as mw

    return ArmFacts(
        "metaworld",
        dict(mw.CAMERAS),
        mw.JOINT_NAMES,
        mw.CONTROL_HZ,
        mw.SimArm.action_dim,
        METAWORLD_MAX_STEPS,
    )


def simulator_of(tasks: Iterable[str]) -> str:
    """ "libero" or "metaworld" for tasks of one simulator; ValueError for a mix, whose actions (7 and 4
    values) no one policy could be trained on or evaluated with."""
    kinds = {"libero" if is_libero_task(t) else "metaworld" for t in tasks}
    if len(kinds) != 1:
        raise ValueError("give tasks of one simulator (Meta-World or LIBERO)" if kinds else "no task given")
    return kinds.pop()


def check_tasks(tasks: list[str]) -> str:
    """simulator_of(tasks), with every LIBERO spec resolved up front (ValueError naming the suite's tasks),
    so a wrong index fails before any worker starts rather than in one of them."""
    simulator = simulator_of(tasks)
    if simulator == "libero":
        from vla_accel_ros.sim.libero_arm import resolve_libero_task

        for task in tasks:
            resolve_libero_task(task)
    return simulator


def task_record(arm: Any) -> dict[str, Any]:
    """How a built arm's task is described in manifests and reports: its simulator, LIBERO suite, index
    and name (None for Meta-World), action size and episode limit."""
    spec = getattr(arm, "spec", None)  # LiberoArm's LiberoTask
    return {
        "simulator": "libero" if spec is not None else "metaworld",
        "suite": getattr(spec, "suite", None),
        "task_index": getattr(spec, "index", None),
        "task_name": getattr(spec, "name", None),
        "action_dim": int(arm.action_dim),
        "max_steps": int(arm.max_steps),
    }
