"""The Meta-World tasks this project trains and evaluates on.

Seeds below `EVAL_SEED_BASE` are for demonstrations; evaluation uses `EVAL_SEED_BASE + i`, so the
layouts a policy is scored on were never in its training data.
"""

from __future__ import annotations

from typing import Any

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
    """ "all" or a comma-separated list of task names (short or v3 names), order kept, no repeats."""
    if spec.strip() == "all":
        return list(TASKS)
    names: list[str] = []
    for part in spec.split(","):
        if part.strip():
            task = resolve_task(part)
            if task not in names:
                names.append(task)
    if not names:
        raise ValueError("no task given")
    return names


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
