"""One constructor for every simulated arm: Meta-World task names and LIBERO "<suite>:<index>" specs.

For the commands and nodes that build an arm from a task name (demos, eval, the sim arm node), so
that they take LIBERO tasks without knowing which simulator serves them. Each simulator is imported
only when its arm is built.
"""

from __future__ import annotations

from typing import Any

from vla_accel_ros.sim.libero_suites import is_libero_task


def make_arm(
    task: str, image_size: int, cameras: tuple[str, ...] | list[str], max_steps: int | None = None
) -> Any:
    """A LiberoArm for a LIBERO spec, else a Meta-World SimArm; `max_steps=None`: the task's default."""
    if is_libero_task(task):
        from vla_accel_ros.sim.libero_arm import LiberoArm

        return LiberoArm(task, image_size=image_size, cameras=cameras, max_steps=max_steps)
    from vla_accel_ros.sim.metaworld_arm import SimArm

    return SimArm(
        task, image_size=image_size, cameras=cameras, max_steps=200 if max_steps is None else max_steps
    )
