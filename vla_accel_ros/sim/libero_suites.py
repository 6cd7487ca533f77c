"""The LIBERO suite names and task specs ("<suite>:<index or name>"), apart from the arm so that callers
that only route a task name need neither LIBERO nor the arm module."""

from __future__ import annotations

LIBERO_SUITES: tuple[str, ...] = ("libero_object", "libero_spatial", "libero_goal", "libero_10")


def is_libero_task(task: str) -> bool:
    """True for "libero_object:3" and the like (a LIBERO suite, a colon, a task)."""
    suite, sep, _ = task.strip().partition(":")
    return bool(sep) and suite in LIBERO_SUITES
