"""The tally of a fuzz run (crashes, commands from bad data, responsiveness afterwards), the oracle's
predicates on what a node published, and the report (JSON + the RELIABILITY.md section).

ROS-free: published messages are read through their generated Python API (attributes) only; the driver
that feeds the nodes is vla_accel_ros.ros.fuzz_driver.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vla_accel_ros.evaluation.reliability import machine_note, write_doc_section

CLIPPED = "huge finite command to the simulated arm, clipped by the arm (controllers refuse it)"
HOLD_CONVENTION = "sim arm step on image_stamp 0, a command tied to no image (the controller's holds)"
HOLDS = ("watchdog hold", "safety hold")  # the controller's holds: after a timeout, after a refusal


@dataclass(frozen=True)
class JointReference:
    """What a joint_trajectory command built on good data looks like: the controller's joint names and
    position limits, the last good joint_states positions the fuzz fed, and the largest target step an
    accepted action may add to them (max |joint delta| x its scale)."""

    names: tuple[str, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    arm: frozenset[str]  # the joints an action moves relative to joint_states (the gripper is absolute)
    good: dict[str, float]
    max_step: float

    def targets(self, msg: Any) -> list[float] | None:
        """The positions of a one-point JointTrajectory over `names`, or None if it is not one."""
        points = list(msg.points)
        if list(msg.joint_names) != list(self.names) or len(points) != 1:
            return None
        positions = [float(v) for v in points[0].positions]
        return positions if len(positions) == len(self.names) else None

    def offsets(self, msg: Any) -> list[float] | None:
        """|target - last good position| of each arm joint (None: not a trajectory over `names`)."""
        targets = self.targets(msg)
        if targets is None:
            return None
        return [abs(t - self.good[n]) for n, t in zip(self.names, targets, strict=True) if n in self.arm]


def is_hold(msg: Any, joints: JointReference | None = None) -> bool:
    """A controller hold (zero motion): a TwistStamped of zeros, a VlaAction flagged as a hold, or (with
    the reference of a joint_trajectory output) a JointTrajectory whose arm joints stay where the last
    good joint_states had them."""
    if hasattr(msg, "points"):
        offsets = joints.offsets(msg) if joints is not None else None
        return offsets is not None and all(d <= 1e-9 for d in offsets)
    if hasattr(msg, "twist"):
        t = msg.twist
        return all(
            v == 0.0 for v in (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z)
        )
    return msg.fallback_reason in HOLDS and all(v == 0.0 for v in list(msg.action)[:-1])


def within_limits(msg: Any, joints: JointReference | None = None) -> bool:
    """An arm command inside the default limits (0.1 m/s per axis for a twist, |a| <= 1 for an action;
    a JointTrajectory: finite targets inside the joint limits, each arm joint within one accepted step
    of the last good joint_states)."""
    if hasattr(msg, "points"):
        targets = joints.targets(msg) if joints is not None else None
        offsets = joints.offsets(msg) if joints is not None else None
        if joints is None or targets is None or offsets is None:
            return False
        inside = all(
            math.isfinite(t) and lo <= t <= hi
            for t, lo, hi in zip(targets, joints.lower, joints.upper, strict=True)
        )
        return inside and all(d <= joints.max_step + 1e-9 for d in offsets)
    if hasattr(msg, "twist"):
        lin = msg.twist.linear
        return all(math.isfinite(v) and abs(v) <= 0.1 + 1e-6 for v in (lin.x, lin.y, lin.z))
    return all(math.isfinite(v) and abs(v) <= 1.0 + 1e-6 for v in msg.action)


@dataclass
class Crash:
    """A callback that raised on a fuzzed message: the finding the fuzz exists to report."""

    node: str
    topic: str
    label: str
    error: str


@dataclass
class FuzzReport:
    """What a fuzz run saw. `ok` needs zero crashes, zero commands from bad data, every node responsive."""

    seed: int
    messages: int = 0
    unsendable: int = 0  # generated messages that cannot be serialized (never reach a node over DDS)
    duration_s: float = 0.0
    per_topic: Counter = field(default_factory=Counter)  # "node topic" -> messages
    per_label: Counter = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)
    mixed_steps: int = 0  # steps run with one bad input among fresh good ones
    mixed_controller_steps: int = 0  # a bad joint_states / ee_pose, then an action to refuse
    commands_from_bad_data: list[str] = field(default_factory=list)  # what reached an arm (or the policy)
    passed_by_design: Counter = field(default_factory=Counter)  # why -> commands that were right to pass
    worker_errors: int = 0  # exceptions inside an inference step (caught by the node, reported as ERROR)
    holds_in_window: int = 0  # watchdog holds while only bad data arrived (expected)
    non_finite_outputs: list[str] = field(default_factory=list)
    responsive: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.crashes
            and not self.commands_from_bad_data
            and not self.non_finite_outputs
            and bool(self.responsive)
            and all(self.responsive.values())
        )

    def crash(self, node: str, topic: str, label: str, err: BaseException) -> None:
        self.crashes.append(Crash(node, topic, label, f"{type(err).__name__}: {str(err)[:300]}"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_topic"] = dict(sorted(self.per_topic.items()))
        data["per_label"] = dict(sorted(self.per_label.items()))
        data["passed_by_design"] = dict(self.passed_by_design)
        data["ok"] = self.ok
        data["crash_count"] = len(self.crashes)
        data["crashes"] = data["crashes"][:50]
        data["commands_from_bad_data_count"] = len(self.commands_from_bad_data)
        data["commands_from_bad_data"] = self.commands_from_bad_data[:50]
        return data

    def markdown(self) -> str:
        by_error = Counter(f"{c.node} {c.topic}: {c.error.split(':')[0]} ({c.label})" for c in self.crashes)
        lines = [
            f"- messages: **{self.messages}** bad messages (seed {self.seed}) in {self.duration_s:.1f} s, "
            f"into {len([k for k in self.per_topic if 'among good' not in k])} subscription callbacks of "
            f"{len(self.responsive)} nodes; {self.unsendable} more could not be "
            "serialized (never reach a node) and were skipped",
            f"- of them, {self.mixed_steps} were one bad camera frame or joint "
            "state among fresh good inputs, each followed by an inference step; "
            f"{self.mixed_controller_steps} one bad joint_states or ee_pose after a good one, each followed "
            "by a good action the good input makes the controller refuse",
            f"- crashes (exceptions escaping a callback): **{len(self.crashes)}**",
            f"- commands to the arm (or actions from the policy) caused by bad data: "
            f"**{len(self.commands_from_bad_data)}**",
            *(f"- passed on by design: {n} x {why}" for why, n in sorted(self.passed_by_design.items())),
            f"- watchdog holds while only bad data arrived: {self.holds_in_window}",
            f"- inference steps that raised (caught and reported by the node): {self.worker_errors}",
            f"- non-finite values in the nodes' outputs: {len(self.non_finite_outputs)}",
            "- responsive afterwards (acts on good data): "
            + ", ".join(f"{k} {'yes' if v else '**NO**'}" for k, v in sorted(self.responsive.items())),
        ]
        lines += [f"- crash: {k} x{n}" for k, n in by_error.most_common(10)]
        lines += [f"- bad data acted on: {c}" for c in self.commands_from_bad_data[:10]]
        lines += [f"- note: {n}" for n in self.notes]
        lines.append("")
        lines.append("| subscription (node topic) | messages |")
        lines.append("|---|---:|")
        lines += [f"| {k} | {v} |" for k, v in sorted(self.per_topic.items())]
        lines.append("")
        lines.append("| defect | messages |")
        lines.append("|---|---:|")
        lines += [f"| {k} | {v} |" for k, v in sorted(self.per_label.items())]
        return "\n".join(lines)


def write_fuzz_results(
    report: FuzzReport, text: str, messages: int, seed: int, json_path: Path, doc: Path
) -> None:
    """docs/results/reliability_fuzz.json (the report with the command and the machine) and the fuzz
    section of docs/RELIABILITY.md (`text` is the report's markdown, as printed)."""
    command = f"vla-accel fuzz --messages {messages} --seed {seed}"
    data = {**report.to_dict(), "command": command}
    data["machine"] = machine_note()
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    body = (
        f"`{command}` ({machine_note()}).\n"
        "Every message carries a defect; see vla_accel_ros/evaluation/fuzzing.py for the catalogue.\n\n"
        + text
    )
    write_doc_section(doc, "fuzz", "Bad data (fuzz)", body)
