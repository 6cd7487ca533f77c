"""Joint-space checks of a joint_trajectory output: the joint_states it builds on, and the targets.

Why: a joint_trajectory command is the latest joint_states position plus the action's delta, reached in
one control period, and any publisher of those joint names feeds that position. So:
- a joint_states message in which a joint moved more than `max_jump` since the previous message of
  that joint (a second publisher, a driver glitch, a bad encoder) is not used, and the arm is held
  until the joint states have been steady for `fault_s` (the watchdog period): one glitch costs a short
  hold, two interleaved publishers hold the arm for as long as they both publish;
- a target outside [lower, upper] of its joint is refused (hold), never clipped: the model asked for a
  move the arm must not make.
Positions are those of joint_names (the arm joints, then optionally the gripper joint), kept per joint
name from any number of joint_states messages (arm and gripper apart), each with the time it was
received: the positions are as fresh as the stalest commanded joint, so a stopped arm publisher holds the
arm even while the gripper's keeps publishing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class JointSpace(Protocol):
    """What the monitor needs of `control.action_space.ActionSpace`."""

    def joint_targets(
        self, action: np.ndarray, current: Mapping[str, float], keep_gripper: bool = False
    ) -> list[float]: ...


@dataclass(frozen=True)
class JointLimits:
    """Position limits per joint (one per name) and the largest move between consecutive joint_states."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    max_jump: float | None = None  # None: no jump check

    def __post_init__(self) -> None:
        n = len(self.names)
        if len(self.lower) != n or len(self.upper) != n:
            raise ValueError(
                f"JointLimits: {len(self.lower)} lower and {len(self.upper)} upper limits for {n} joints "
                f"({list(self.names)}): give one of each per joint"
            )
        lo, hi = np.asarray(self.lower, dtype=np.float64), np.asarray(self.upper, dtype=np.float64)
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (lo > hi).any():
            raise ValueError("JointLimits: limits must be finite with lower <= upper for every joint")
        if self.max_jump is not None and not (math.isfinite(self.max_jump) and self.max_jump > 0):
            raise ValueError(f"JointLimits.max_jump must be None or > 0, got {self.max_jump!r}")

    def target_problem(self, targets: Sequence[float]) -> str | None:
        """Why these joint targets (in `names` order) must not be commanded, or None."""
        out = [
            f"{name} {t:.4g} outside [{lo:.4g}, {hi:.4g}]"
            for name, t, lo, hi in zip(self.names, targets, self.lower, self.upper, strict=False)
            if not (lo <= t <= hi)
        ]
        return f"hold: joint target {'; '.join(out)}" if out else None


class JointStateMonitor:
    """The joint positions commands may build on: consecutive joint_states checked for jumps."""

    def __init__(self, limits: JointLimits | None, fault_s: float) -> None:
        self.limits = limits
        self.fault_s = float(fault_s)
        self.positions: dict[str, float] = {}  # trusted positions (targets and holds start from these)
        self._received: dict[str, int] = {}  # when each joint's trusted position was last received
        self._previous: dict[str, float] = {}  # the previous message's value of each joint, used or not
        self._jump_ns: int | None = None  # when the last jump was seen
        self._jump_text = ""

    def carry_over(self, other: JointStateMonitor) -> None:
        """Take another monitor's state (a rebuilt gate on a run-time parameter change)."""
        self.positions, self._received = dict(other.positions), dict(other._received)
        self._previous, self._jump_ns, self._jump_text = (
            dict(other._previous),
            other._jump_ns,
            other._jump_text,
        )

    def observe(self, names: Sequence[str], positions: Sequence[float], now_ns: int) -> str | None:
        """Take one joint_states message received at now_ns; returns why it was not used, or None."""
        jumps = []
        max_jump = self.limits.max_jump if self.limits is not None else None
        for name, value in zip(names, positions, strict=True):
            last = self._previous.get(name)
            if max_jump is not None and last is not None and abs(float(value) - last) > max_jump:
                jumps.append(
                    f"{name} moved {abs(float(value) - last):.4g} (max_joint_state_jump {max_jump:g})"
                )
            self._previous[name] = float(value)
        if jumps:
            self._jump_ns, self._jump_text = now_ns, "; ".join(jumps)
            return f"joint_states jumped: {self._jump_text}"
        if self.fault_problem(now_ns) is not None:
            return f"joint_states not used while they settle after a jump ({self._jump_text})"
        self.positions.update(zip(names, (float(v) for v in positions), strict=True))
        self._received.update(dict.fromkeys(names, now_ns))
        return None

    @property
    def stamp_ns(self) -> int | None:
        """When the stalest commanded joint (limits.names) was last received; None while one never was.
        Without limits: when the last trusted message was received."""
        if not self._received:
            return None
        if self.limits is None:
            return max(self._received.values())
        if any(n not in self._received for n in self.limits.names):
            return None
        return min(self._received[n] for n in self.limits.names)

    def stalest(self) -> str | None:
        """The commanded joint that makes stamp_ns what it is (never received, else the oldest), or None."""
        if self.limits is None or not self.limits.names:
            return None
        return min(self.limits.names, key=lambda n: self._received.get(n, -1))

    def fault_problem(self, now_ns: int) -> str | None:
        """Why actions are held now because of a recent jump, or None."""
        if self._jump_ns is None or (now_ns - self._jump_ns) * 1e-9 >= self.fault_s:
            return None
        return f"hold: joint_states jumped {(now_ns - self._jump_ns) * 1e-9:.3f} s ago ({self._jump_text})"

    def targets(self, space: JointSpace, action: np.ndarray, keep_gripper: bool = False) -> list[float]:
        """The joint_trajectory positions of an action from the trusted positions (KeyError: a joint
        without one)."""
        return space.joint_targets(action, self.positions, keep_gripper)
