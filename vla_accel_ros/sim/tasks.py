"""The tasks this project trains and evaluates on: Meta-World's by name, LIBERO's as "<suite>:<index>".

Seeds below `EVAL_SEED_BASE` are for demonstrations; Meta-World evaluation uses `EVAL_SEED_BASE + i`,
so the layouts a policy is scored on were never in its training data. LIBERO demonstrations use seeded
layouts too; LIBERO evaluation uses the suites' official init states, which no demonstration starts from.
"""

from __future__ import annotations

from typing import Any

from vla_accel_ros.sim.libero_suites import is_libero_task

EVAL_SEED_BASE = 1_000_000

# Task name (Meta-World 3.1.1 v3 name) -> instruction given to the policy. The colours named are the
# goal markers' colours in the Meta-World models, so the words refer to something visible.
TASKS: dict[str, str] = {
    "reach-v3": "reach the red goal",
    "push-v3": "push the puck to the green goal",
    "pick-place-v3": "pick up the puck and place it at the blue goal",
    "drawer-open-v3": "open the drawer",
    "button-press-topdown-v3": "press the button down from above",
    "window-open-v3": "slide the window open",
}


def resolve_task(name: str) -> str:
    """Accept "push" as well as "push-v3"; raise ValueError naming the known tasks otherwise."""
    key = name.strip()
    if key in TASKS:
        return key
    if f"{key}-v3" in TASKS:
        return f"{key}-v3"
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")


def parse_task_list(spec: str) -> list[str]:
    """ "all" or a comma-separated list of tasks, order kept, no repeats.

    Meta-World tasks by short or v3 name; LIBERO tasks as "<suite>:<index or name>", "<suite>:all" for
    the whole suite, and bare indices after a LIBERO entry continue its suite ("libero_spatial:0,1").
    "all" is every Meta-World task (LIBERO suites are named). LIBERO indices are checked when the arm is
    built, so that parsing needs no LIBERO install.
    """
    if spec.strip() == "all":
        return list(TASKS)
    names: list[str] = []
    suite: str | None = None  # the LIBERO suite bare indices continue
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if is_libero_task(part):
            suite, _, which = (x.strip() for x in part.partition(":"))
            if not which:
                raise ValueError(f"{part!r} names no task of {suite} (an index, a task name or 'all')")
            found = _libero_suite_tasks(suite) if which == "all" else [libero_spec(suite, which)]
        elif suite is not None and part.isdigit():
            found = [libero_spec(suite, part)]
        else:
            suite, found = None, [resolve_task(part)]
        names += [t for t in found if t not in names]
    if not names:
        raise ValueError("no task given")
    return names


def libero_spec(suite: str, which: str) -> str:
    """ "<suite>:<index>" with the index written plainly ("07" -> "7"), a task name kept as given."""
    return f"{suite}:{int(which)}" if which.isdigit() else f"{suite}:{which}"


def _libero_suite_tasks(suite: str) -> list[str]:
    from vla_accel_ros.sim.libero_arm import libero_tasks  # LIBERO loads only when a suite is expanded

    return libero_tasks(suite)


def task_dirname(task: str) -> str:
    """A task's folder name (its bag, its results): "libero_object:3" -> "libero_object-3" (no ':')."""
    return task.replace(":", "-")


def expert_policy(task: str) -> Any:
    """The scripted Meta-World expert for `task` (an object with `get_action(state39)`)."""
    import metaworld.policies as policies

    task = resolve_task(task)
    # "button-press-topdown-v3" -> "SawyerButtonPressTopdownV3Policy"
    words = task.replace("-v3", "").split("-")
    cls_name = "Sawyer" + "".join(w.capitalize() for w in words) + "V3Policy"
    cls = getattr(policies, cls_name, None)
    if cls is None:
        raise ValueError(f"no scripted expert {cls_name} in metaworld.policies for task {task!r}")
    return cls()
