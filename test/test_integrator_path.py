"""A robot integrator's wiring: joint states by name from separate arm and gripper messages
(`state_joint_names`), and the twist output's gripper command on a declared topic.

Each node runs in this process, driven by a probe node (as in test_nodes_unit); waits are for discovery
or for a condition, never a fixed sleep.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from ros_fixtures import ros_harness
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from test_action_space import ARM, JOINT8, OPENVLA
from test_nodes_unit import (
    JOINTS,
    Diagnostics,
    now_ns,
    raw_action,
    ready_inference,
    space_params,
    start_controller,
    start_kinematics,
)
from trajectory_msgs.msg import JointTrajectory

from vla_accel_ros.ros import convert as C
from vla_accel_ros.ros.diagnostics import ERROR, WARN
from vla_accel_ros.ros.qos import command_qos, joint_states_qos

ARM_SAWYER, FINGERS = JOINTS[:7], JOINTS[7:]


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def joint_state(names, positions, stamp_ns: int) -> JointState:
    return C.arrays_to_joint_state(list(names), np.asarray(positions, dtype=np.float64), None, stamp_ns)


# --- inference: the model's proprio vector by name -----------------------------------------------------


def test_inference_merges_arm_and_gripper_messages_in_the_configured_order(ros):
    node, policy, actions, feed = ready_inference(ros, state_joint_names=JOINTS, sync_timeout_s=5.0)
    t = now_ns(ros)
    # The arm driver: its joints in its own order, plus one the model does not use (NaN: not checked).
    feed.joints.publish(joint_state([*reversed(ARM_SAWYER), "head_pan"], [*range(7, 0, -1), math.nan], t))
    feed.joints.publish(joint_state(list(reversed(FINGERS)), [0.02, 0.01], t))  # the gripper driver
    feed.images(t)
    assert ros.spin_until(lambda: actions, 5.0)
    assert policy.calls[0]["inp"].joint_positions.tolist() == [1, 2, 3, 4, 5, 6, 7, 0.01, 0.02]


def test_inference_with_a_missing_joint_does_not_act_and_names_it(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros, state_joint_names=JOINTS)
    feed.joints.publish(joint_state(ARM_SAWYER, np.zeros(7), now_ns(ros)))  # no gripper message
    assert ros.spin_until(lambda: node._joints.last_stamp_ns(ARM_SAWYER) is not None, 5.0)
    feed.images(now_ns(ros))
    status = diags.wait("inference_node", WARN, "missing joint")
    assert "'r_close', 'l_close' not received" in status.message
    assert not actions and not policy.calls


# --- kinematics: derivatives of the merged vector ------------------------------------------------------


def test_kinematics_differentiates_the_merged_arm_and_gripper_vector(ros):
    diags = Diagnostics(ros)
    node, _, _, _ = start_kinematics(ros, state_joint_names=JOINTS)
    js = ros.publisher(JointState, "joint_states", joint_states_qos())
    t = now_ns(ros) - 2_000_000_000  # every stamp below in the past: none is refused as ahead of the clock
    for i in range(4):  # one tick: the arm's and the gripper's message with the same stamp
        for names, value in ((ARM_SAWYER, 0.01 * i), (FINGERS, 0.02 * i)):
            received = node._received_joint_states
            js.publish(joint_state(names, np.full(len(names), value), t + i * 100_000_000))
            assert ros.spin_until(lambda n=received: node._received_joint_states > n, 5.0)
    assert ros.spin_until(lambda: node._derivatives is not None and node._derivatives.jerk is not None, 5.0)
    assert node.joint_names == JOINTS and node._dropped_joint_states == 0
    # Each update carries the previous tick's gripper value: its velocity is 0.02 / 0.1 s all the same.
    assert node._derivatives.velocity.tolist() == pytest.approx([0.1] * 7 + [0.2] * 2, rel=1e-4)
    js.publish(joint_state(["r_close"], [0.0], t + 10 * 100_000_000))  # the others are 0.7 s behind
    status = diags.wait("kinematics_node", WARN, "stale joint state")
    assert "joint 'right_j0' 0.700 s old (max 0.5)" in status.message


# --- controller: the commanded joints are as fresh as the stalest one ----------------------------------


def test_controller_holds_when_the_arm_joint_states_stop_while_the_gripper_goes_on(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(
        ros, dry_run=False, output_type="joint_trajectory", watchdog_timeout_s=0.5, **space_params(JOINT8)
    )
    commands = ros.collect(JointTrajectory, "arm/command", command_qos())
    js = ros.publisher(JointState, "joint_states", joint_states_qos())
    js.publish(joint_state(ARM, np.full(7, 0.5), now_ns(ros)))  # the arm driver publishes once
    assert ros.spin_until(lambda: "joint1" in node._gate.joints.positions, 5.0)
    ros.probe.create_timer(0.05, lambda: js.publish(joint_state(["finger_joint"], [0.01], now_ns(ros))))
    ros.probe.create_timer(0.1, lambda: pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0])))
    assert ros.spin_until(lambda: commands, 5.0)  # fresh at first: commanded
    # The refusal, then the watchdog's hold (ERROR) that cannot be sent either: the arm stays as it is.
    status = diags.wait("controller_node", ERROR, "s old (watchdog_timeout_s 0.5) (joint 'joint1')")
    assert "action refused" in status.message and "joint_states is" in status.message
    assert node._gate.joints.positions["finger_joint"] == pytest.approx(0.01)


# --- twist: the gripper on its own topic --------------------------------------------------------------


def twist_controller(ros, **overrides):
    node, pub = start_controller(ros, output_type="twist", **{**space_params(OPENVLA), **overrides})
    twists = ros.collect(TwistStamped, "arm/command", command_qos())
    grips = ros.collect(Float64MultiArray, "gripper/commands", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1, 10.0)
    assert ros.spin_until(lambda: node._gripper_pub.get_subscription_count() >= 1, 10.0)
    return node, pub, twists, grips


SEVEN_OPEN = (0.5, 0.0, -0.5, 0.2, 0.0, -0.4, 1.0)  # OPENVLA: gripper 1 = open = 0.04 m


def test_twist_sends_the_gripper_position_beside_the_twist(ros):
    node, pub, twists, grips = twist_controller(ros, dry_run=False, max_rate_hz=1000.0)
    pub.publish(raw_action(now_ns(ros), action=SEVEN_OPEN))
    assert ros.spin_until(lambda: twists and grips, 5.0)
    assert list(grips[0].data) == pytest.approx([0.04])
    pub.publish(raw_action(now_ns(ros), action=(*SEVEN_OPEN[:6], 0.25)))  # 3/4 closed
    assert ros.spin_until(lambda: len(grips) == 2, 5.0)
    assert list(grips[1].data) == pytest.approx([0.01])


def test_twist_gripper_goes_through_the_gate_and_a_hold_sends_none(ros):
    diags = Diagnostics(ros)
    node, pub, twists, grips = twist_controller(
        ros, dry_run=False, max_gripper_change=0.5, watchdog_timeout_s=5.0, max_rate_hz=1000.0
    )
    pub.publish(raw_action(now_ns(ros), action=SEVEN_OPEN))
    assert ros.spin_until(lambda: len(twists) == 1 and len(grips) == 1, 5.0)
    pub.publish(raw_action(now_ns(ros), action=(*SEVEN_OPEN[:6], 0.0)))  # gripper jump 1.0 > 0.5
    assert "max_gripper_change" in diags.wait("controller_node", WARN, "action refused").message
    assert ros.spin_until(lambda: len(twists) == 2, 5.0)  # the safety hold: zero twist ...
    assert (twists[1].twist.linear.x, twists[1].twist.angular.z) == (0.0, 0.0)
    ros.spin_until(lambda: len(grips) > 1, 0.5)
    assert len(grips) == 1  # ... and no gripper command: it stays where it was put


def test_twist_gripper_is_not_sent_in_dry_run(ros):
    node, pub, twists, grips = twist_controller(ros)  # dry_run defaults to true
    pub.publish(raw_action(now_ns(ros), action=SEVEN_OPEN))
    assert ros.spin_until(lambda: node._counts["actions"] >= 1, 5.0)
    ros.spin_until(lambda: twists or grips, 0.5)
    assert not twists and not grips


def test_twist_gripper_topic_is_a_parameter(ros):
    node, _ = start_controller(ros, output_type="twist", gripper_command_topic="/gripper_controller/commands")
    assert node._gripper_pub.topic_name == "/gripper_controller/commands"
    off, _ = start_controller(ros, output_type="twist", gripper_command_topic="")
    assert off._gripper_pub is None
