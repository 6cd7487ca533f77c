"""The controllers' own inputs in `vla-accel fuzz`: joint_states (joint_trajectory output) and ee_pose
(the workspace box).

These inputs never command the arm by themselves: they are what a later action is built on (the joint
targets) or checked against (the box). So besides the fuzz window, where they get bad data like every
subscription, each mixed step here feeds one good input at the edge of its limit (fuzz_targets.GOOD_JOINTS,
GOOD_EE), then one bad message, then a good action pointing out of the limit: on the good input the
controller must refuse that action (and hold where the good input says the arm is), so any other command
for it was built on the bad message.
"""

from __future__ import annotations

import random
from typing import Any

from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import JointState

from vla_accel_ros.evaluation.fuzz_report import JointReference, is_hold
from vla_accel_ros.evaluation.fuzzing import FRAME, JOINT_GUARD_DEFECTS
from vla_accel_ros.msg import VlaAction
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.fuzz_targets import GOOD_EE, GOOD_JOINTS, STATE_JOINTS, Target, callback_of

# controller target -> (its input topic, the message type)
INPUTS: dict[str, tuple[str, type]] = {
    "controller_joints": ("joint_states", JointState),
    "controller_box": ("ee_pose", PoseStamped),
}
RECOVERY = "a move back into the box from an ee_pose outside it (the box lets the arm return)"


def good_input(target: Target, now_ns: int) -> None:
    """The controller's good joint state or end-effector pose at `now_ns` (none for the others)."""
    if target.name not in INPUTS:
        return
    topic, _ = INPUTS[target.name]
    if topic == "joint_states":
        msg: Any = convert.arrays_to_joint_state(STATE_JOINTS, GOOD_JOINTS, None, now_ns)
    else:
        msg = PoseStamped(header=convert.header(now_ns, FRAME))
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = GOOD_EE
    callback_of(target.node, topic)(msg)


def action(stamp_ns: int, first: float) -> VlaAction:
    """A good action (fresh image stamp); `first` > 0 points out of GOOD_JOINTS' / GOOD_EE's limit."""
    msg = VlaAction(header=convert.header(stamp_ns), image_stamp=convert.ns_to_stamp(stamp_ns - 1_000_000))
    msg.action = [first, 0.0, -0.1, 0.5]
    msg.precision, msg.decoding = "fp32", "ar"
    return msg


def mixed_controller_inputs(driver: Any, n: int, gen: Any, joints: JointReference) -> None:
    """`n` steps of: a good input, one bad one, an outward action; tallied into `driver.report`."""
    report = driver.report
    starts = {name: len(driver.by_name[name].spies["arm"].msgs) for name in INPUTS}
    judged = dict.fromkeys(INPUTS, 0)  # non-hold commands judged in the step that sent them
    rng = random.Random(gen.rng.random())
    for i in range(n):
        name = rng.choice(sorted(INPUTS))
        target, (topic, cls) = driver.by_name[name], INPUTS[name]
        good_input(target, driver.now_ns())
        case = gen.make(cls, topic)
        try:
            msg = deserialize_message(serialize_message(case.msg), cls)
        except Exception:
            report.unsendable += 1
            continue
        report.messages += 1
        report.mixed_controller_steps += 1
        report.per_topic[f"{name} {topic} (among good inputs)"] += 1
        report.per_label[case.label] += 1
        driver.call(target, topic, callback_of(target.node, topic), msg, case.label)
        arm = target.spies["arm"].msgs
        before = len(arm)
        on_action = callback_of(target.node, "vla/action_raw")
        driver.call(target, "vla/action_raw", on_action, action(driver.now_ns(), 0.1), case.label)
        reference = joints if name == "controller_joints" else None
        for command in arm[before:]:
            if is_hold(command, reference):
                continue
            judged[name] += 1
            if case.must_refuse or case.label in JOINT_GUARD_DEFECTS:
                report.commands_from_bad_data.append(f"{name} commanded after a bad {topic}: {case.label}")
            else:
                report.passed_by_design[RECOVERY] += 1
        if i % 10 == 0:
            driver.pump(rounds=3)
    driver.pump(rounds=3)
    for name, start in starts.items():
        reference = joints if name == "controller_joints" else None
        others = [m for m in driver.by_name[name].spies["arm"].msgs[start:] if not is_hold(m, reference)]
        for _ in range(len(others) - judged[name]):
            report.commands_from_bad_data.append(f"{name} commanded the arm outside a fuzzed callback")
