"""How many CPU threads the policy's torch kernels use: every core this process may run on, unless told.

A robot computer's inference process is the one that needs the cores; the graph's other processes
(kinematics, controller, recorder) wake once per action for well under a millisecond each, so they are
left out of the count, and a simulator sharing the machine (the demo) is given cores by lowering
`inference_node.num_threads` in its own parameter file. The count is the affinity mask's
(`os.sched_getaffinity`), not the machine's: a container or `taskset` gives fewer cores than exist,
and oversubscribing them was measured at 1.8 s instead of 24 ms per action.
"""

from __future__ import annotations

import os


def cores_available() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(requested: int) -> int:
    """`requested` threads, or every available core for 0 (the parameters' and flags' default)."""
    if requested < 0:
        raise ValueError(f"thread count must be >= 0 (0: every available core), got {requested}")
    return requested or cores_available()


def use_threads(requested: int) -> int:
    """Set torch's intra-op threads to `resolve_threads(requested)`; returns the count set. Every
    process that runs the policy comes through here, so the allocator is tuned here too
    (policy/allocator.py: without it a pass's time depends on what ran before it)."""
    import torch

    from vla_accel_ros.policy import allocator

    allocator.tune()

    n = resolve_threads(requested)
    torch.set_num_threads(n)
    return n
