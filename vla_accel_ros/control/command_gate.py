"""The controller's command gate: which raw actions reach the arm, and when the arm is held.

ROS-free, so a test (or an offline tool) can ask it what the controller node would do with an action;
the node (`vla_accel_ros.ros.controller_node`) turns each decision into messages and diagnostics.

Per raw action, in this order:
1. freshness: an action is as old as its camera image: older than the watchdog period (e.g. delivered
   late by a link that came back) or stamped more than a period in the future (a broken clock) is
   refused; so is one without a fresh ee_pose while a workspace box is set, or without fresh
   joint_states for a joint_trajectory output. These refusals leave the holding to the watchdog.
2. the SafetyGuard (limits, NaN, a wrong length, the workspace box): it is not asked about an action
   already refused, since an accepted check moves its gripper memory. Its refusal holds the arm once
   per run of refusals, and only after a first accepted action.
3. the rate limit: an accepted action within 1 / max_rate_hz of the last command is dropped.
An accepted action kicks the watchdog and ends a hold. Watchdog checks (`watchdog`): once no fresh
action came for a watchdog period (after the first one), the arm is holding, and a hold command is due
once per period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from vla_accel_ros.control.safety import SafetyGuard, SafetyLimits, Verdict
from vla_accel_ros.control.watchdog import Watchdog

JOINT_TRAJECTORY = "joint_trajectory"  # the output type that needs fresh joint_states


class ControllerGateTable(Protocol):
    """The part of `vla_accel_ros.params.ControllerParams` the gate is built from."""

    action_names: tuple[str, ...]
    workspace_min: tuple[float, ...]
    output_type: str
    watchdog_timeout_s: float
    max_rate_hz: float

    def safety_limits(self) -> SafetyLimits: ...


class Outcome(Enum):
    """What happens to a raw action: commanded, refused (never sent), or dropped by the rate limit."""

    ACCEPT = "accept"
    REFUSE = "refuse"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class GateDecision:
    """What to do with one raw action."""

    outcome: Outcome
    action: np.ndarray | None = None  # ACCEPT: the action to command (clipped)
    reason: str = ""  # REFUSE: why; RATE_LIMITED: the limit; ACCEPT: the guard's note (what was clipped)
    verdict: Verdict | None = None  # the guard's verdict (None: refused before the guard was asked)
    hold: bool = False  # REFUSE: hold the arm now (the first guard refusal of a run)
    resumed: bool = False  # ACCEPT: this action ends a hold

    @property
    def accepted(self) -> bool:
        return self.outcome is Outcome.ACCEPT

    @property
    def clipped(self) -> bool:
        """ACCEPT: the guard clipped the action to the limits."""
        return self.verdict is not None and bool(self.verdict.clipped)


@dataclass(frozen=True)
class WatchdogDecision:
    """The watchdog has expired: the arm is holding; `hold`: send a hold command now (once per period)."""

    age_s: float
    hold: bool


class CommandGate:
    """Freshness, SafetyGuard, hold once per run of refusals, rate limit and the watchdog's holds."""

    def __init__(
        self,
        limits: SafetyLimits,
        watchdog_timeout_s: float,
        max_rate_hz: float,
        action_names: Sequence[str],
        ee_pose_required: bool = False,
        joint_states_required: bool = False,
        previous: CommandGate | None = None,
    ) -> None:
        """`previous`: a gate whose state (gripper memory, watchdog kick, hold, last command) carries over,
        as on a run-time parameter change."""
        self.guard = SafetyGuard(limits, initial_gripper=previous.guard.last_gripper if previous else None)
        self.watchdog = Watchdog(watchdog_timeout_s)
        self.max_rate_hz = float(max_rate_hz)
        self.action_names = tuple(action_names)
        self.ee_pose_required = ee_pose_required
        self.joint_states_required = joint_states_required
        self.holding = previous.holding if previous else False
        self._last_command_s = previous._last_command_s if previous else -math.inf
        self._last_hold_s = previous._last_hold_s if previous else -math.inf
        if previous is not None:
            self.watchdog.last_kick = previous.watchdog.last_kick

    @classmethod
    def from_table(cls, table: ControllerGateTable, previous: CommandGate | None = None) -> CommandGate:
        """As the controller node builds it from its parameters (ControllerParams)."""
        return cls(
            table.safety_limits(),
            table.watchdog_timeout_s,
            table.max_rate_hz,
            table.action_names,
            ee_pose_required=bool(table.workspace_min),
            joint_states_required=table.output_type == JOINT_TRAJECTORY,
            previous=previous,
        )

    @property
    def timeout_s(self) -> float:
        return self.watchdog.timeout_s

    # -- freshness -------------------------------------------------------------------------------------
    def image_problem(self, now_ns: int, image_stamp_ns: int) -> str | None:
        """Why an action computed on an image with this stamp is not fresh, or None."""
        age_s = (now_ns - image_stamp_ns) * 1e-9
        if age_s > self.timeout_s:
            return f"hold: its image is {age_s:.3f} s old (watchdog_timeout_s {self.timeout_s:g})"
        if age_s < -self.timeout_s:
            return f"hold: its image is stamped {-age_s:.3f} s in the future"
        return None

    def input_problem(self, what: str, stamp_ns: int | None, now_ns: int) -> str | None:
        """Why an input the command depends on cannot be used (never received, or older than the watchdog)."""
        if stamp_ns is None:
            return f"hold: no {what} received yet"
        age_s = (now_ns - stamp_ns) * 1e-9
        if age_s > self.timeout_s:
            return f"hold: {what} is {age_s:.3f} s old (watchdog_timeout_s {self.timeout_s:g})"
        return None

    # -- one raw action --------------------------------------------------------------------------------
    def offer(
        self,
        action: np.ndarray,
        now_ns: int,
        image_stamp_ns: int,
        ee_position: np.ndarray | None = None,
        ee_stamp_ns: int | None = None,
        joint_states_stamp_ns: int | None = None,
    ) -> GateDecision:
        """Decide about one raw action received at `now_ns` (the ee_pose / joint_states stamps: when the
        latest ones were received; used only where the gate needs them)."""
        problem = (
            self.image_problem(now_ns, image_stamp_ns)
            or (
                self.input_problem("ee_pose (workspace box)", ee_stamp_ns, now_ns)
                if self.ee_pose_required
                else None
            )
            or (
                self.input_problem("joint_states", joint_states_stamp_ns, now_ns)
                if self.joint_states_required
                else None
            )
        )
        if problem is not None:  # old or missing inputs: the watchdog's to hold on
            return GateDecision(Outcome.REFUSE, reason=problem)
        verdict = self.guard.check(
            np.asarray(action, dtype=np.float64), ee_position if self.ee_pose_required else None
        )
        if not verdict.ok or verdict.action is None:
            hold = not self.holding and self.watchdog.last_kick is not None
            self.holding = self.holding or hold
            return GateDecision(
                Outcome.REFUSE, reason=self._refusal_text(verdict), verdict=verdict, hold=hold
            )
        now_s = now_ns * 1e-9
        if now_s - self._last_command_s < 1.0 / self.max_rate_hz:
            return GateDecision(
                Outcome.RATE_LIMITED,
                reason=f"actions faster than max_rate_hz {self.max_rate_hz:g}",
                verdict=verdict,
            )
        self._last_command_s = now_s
        self.watchdog.kick(now_s)
        resumed, self.holding = self.holding, False
        return GateDecision(Outcome.ACCEPT, verdict.action, verdict.reason, verdict, resumed=resumed)

    def _refusal_text(self, verdict: Verdict) -> str:
        if verdict.violations and verdict.violations[0][0] == "length":
            names = ", ".join(self.action_names)
            return f"{verdict.reason}: the model's action dim differs from action_names ({names})"
        return verdict.reason

    # -- holds -----------------------------------------------------------------------------------------
    def watchdog_check(self, now_ns: int) -> WatchdogDecision | None:
        """None while fresh actions come (or before the first one); else the arm is holding."""
        now_s = now_ns * 1e-9
        if self.watchdog.last_kick is None or not self.watchdog.expired(now_s):
            return None
        self.holding = True
        hold = not now_s - self._last_hold_s < self.timeout_s
        if hold:
            self._last_hold_s = now_s
        return WatchdogDecision(self.watchdog.age(now_s), hold)

    def hold_action(self) -> np.ndarray:
        """Zero motion, gripper kept (as last accepted; unknown gripper: see `SafetyGuard.hold`)."""
        return self.guard.hold()

    @property
    def gripper_known(self) -> bool:
        return self.guard.last_gripper is not None

    def start_episode(self) -> None:
        """A new episode: no gripper memory, no watchdog history, no hold in progress."""
        self.guard.reset()
        self.watchdog.reset()
        self.holding = False
