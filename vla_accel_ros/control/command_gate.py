"""The controller's command gate: which raw actions reach the arm, and when the arm is held.

ROS-free, so a test (or an offline tool) can ask it what the controller node would do with an action;
the node (`vla_accel_ros.ros.controller_node`) turns each decision into messages and diagnostics.

Per raw action, in this order:
1. freshness: an action is as old as its camera image: older than the watchdog period (e.g. delivered
   late by a link that came back) or stamped more than a period in the future (a broken clock) is
   refused; so is one without a fresh ee_pose while a workspace box is set, or without fresh
   joint_states for a joint_trajectory output. These refusals leave the holding to the watchdog.
2. the SafetyGuard (limits, NaN, a wrong length, beyond the decoder's range, the workspace box), then
   for a joint_trajectory output the joint checks (control.joint_guard: joint_states that jumped
   within the last watchdog period, a target outside the joint position limits). A refusal holds the
   arm once per run of refusals, and only after a first accepted action.
3. the rate limit: an accepted action within 1 / max_rate_hz of the last command is dropped.
Only an action that passes all three is committed: its gripper value becomes the reference of the next
gripper change (a dropped one never moves it), it kicks the watchdog and ends a hold.
Watchdog checks (`watchdog`): once no fresh action came for a watchdog period (after the first one),
the arm is holding, and a hold command is due once per period.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from vla_accel_ros.control.action_space import ActionSpace
from vla_accel_ros.control.joint_guard import JointLimits, JointStateMonitor
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

    def action_space(self) -> ActionSpace: ...

    def joint_limits(self) -> JointLimits | None: ...


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
        space: ActionSpace | None = None,
        joint_limits: JointLimits | None = None,
    ) -> None:
        """`previous`: a gate whose state (gripper memory, watchdog kick, hold, last command, joint states)
        carries over, as on a run-time parameter change. `space` and `joint_limits`: the joint checks of a
        joint_trajectory output (`joint_states_required`; without a space only freshness is checked)."""
        self.guard = SafetyGuard(limits, initial_gripper=previous.guard.last_gripper if previous else None)
        self.watchdog = Watchdog(watchdog_timeout_s)
        self.max_rate_hz = float(max_rate_hz)
        self.action_names = tuple(action_names)
        self.ee_pose_required = ee_pose_required
        self.joint_states_required = joint_states_required
        self.space = space
        self.joints = JointStateMonitor(joint_limits, watchdog_timeout_s)
        if previous is not None:
            self.joints.carry_over(previous.joints)
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
            space=table.action_space(),
            joint_limits=table.joint_limits(),
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
                self.joint_states_problem(joint_states_stamp_ns, now_ns)
                if self.joint_states_required
                else None
            )
        )
        if problem is not None:  # old or missing inputs: the watchdog's to hold on
            return GateDecision(Outcome.REFUSE, reason=problem)
        verdict = self.guard.evaluate(
            np.asarray(action, dtype=np.float64), ee_position if self.ee_pose_required else None
        )
        if not verdict.ok or verdict.action is None:
            return self._refuse(self._refusal_text(verdict), verdict)
        joint_problem = self.joint_problem(verdict.action, now_ns)
        if joint_problem is not None:
            return self._refuse(joint_problem, verdict)
        now_s = now_ns * 1e-9
        if now_s - self._last_command_s < 1.0 / self.max_rate_hz:
            return GateDecision(
                Outcome.RATE_LIMITED,
                reason=f"actions faster than max_rate_hz {self.max_rate_hz:g}",
                verdict=verdict,
            )
        self._last_command_s = now_s
        self.guard.commit(verdict)
        self.watchdog.kick(now_s)
        resumed, self.holding = self.holding, False
        return GateDecision(Outcome.ACCEPT, verdict.action, verdict.reason, verdict, resumed=resumed)

    def joint_states_problem(self, stamp_ns: int | None, now_ns: int) -> str | None:
        """input_problem of the joint_states, naming the commanded joint that is missing or too old."""
        problem = self.input_problem("joint_states", stamp_ns, now_ns)
        joint = self.joints.stalest() if problem else None
        return f"{problem} (joint {joint!r})" if joint else problem

    def _refuse(self, reason: str, verdict: Verdict) -> GateDecision:
        """A refusal that holds the arm, once per run of refusals and after a first accepted action."""
        hold = not self.holding and self.watchdog.last_kick is not None
        self.holding = self.holding or hold
        return GateDecision(Outcome.REFUSE, reason=reason, verdict=verdict, hold=hold)

    def joint_problem(self, action: np.ndarray, now_ns: int) -> str | None:
        """joint_trajectory: why the joint target of this (guard-approved) action must not be sent."""
        if not self.joint_states_required or self.space is None:
            return None
        problem = self.joints.fault_problem(now_ns)
        if problem is not None or self.joints.limits is None:
            return problem
        try:
            targets = self.joints.targets(self.space, action)
        except KeyError as err:
            return f"hold: no joint_states position for joint {err.args[0]!r}"
        return self.joints.limits.target_problem(targets)

    def observe_joint_states(
        self, names: Sequence[str], positions: Sequence[float], now_ns: int
    ) -> str | None:
        """One joint_states message (received at now_ns); returns why it is not used, or None."""
        return self.joints.observe(names, positions, now_ns)

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

    def hold_now(self) -> np.ndarray:
        """Hold now, whatever the state (a run-time change of a limit or of dry_run): the hold action;
        the next accepted action ends the hold."""
        self.holding = True
        return self.hold_action()

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
