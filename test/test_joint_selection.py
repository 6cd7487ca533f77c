"""JointSelection: the model's joint-state vector by name, merged from separate arm and gripper messages."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_accel_ros.control.joint_guard import JointLimits, JointStateMonitor
from vla_accel_ros.control.joint_selection import JointSelection, JointSelectionError
from vla_accel_ros.params import ControllerParams, InferenceParams, KinematicsParams, ParameterError

ARM = [f"joint{i}" for i in range(1, 8)]
STATE = (*ARM, "finger_joint")
S = 1_000_000_000


def test_arm_and_gripper_from_separate_messages_in_the_configured_order():
    sel = JointSelection(STATE)
    # The arm driver lists its joints backwards and adds a joint the model does not use (NaN: ignored).
    assert sel.observe([*reversed(ARM), "head_pan"], [*reversed(range(7)), math.nan], 10 * S) is None
    with pytest.raises(JointSelectionError, match="'finger_joint' not received") as err:
        sel.vector()
    assert err.value.key == "missing joint"
    assert sel.stamp_ns is None
    assert sel.observe(["finger_joint"], [0.02], 11 * S) is None
    v = sel.vector(11 * S, 5.0)
    assert v.positions.tolist() == [*map(float, range(7)), 0.02]
    assert (v.stamp_ns, v.newest_ns) == (10 * S, 11 * S) and sel.stamp_ns == 10 * S


def test_the_stalest_joint_is_named():
    sel = JointSelection(STATE)
    sel.observe(ARM, np.zeros(7), 10 * S)
    sel.observe(["finger_joint"], [0.0], 12 * S)
    with pytest.raises(JointSelectionError, match=r"joint 'joint1' 2.000 s old \(max 0.5\)") as err:
        sel.vector(12 * S, 0.5)
    assert err.value.key == "stale joint state"


@pytest.mark.parametrize(
    "names, positions, fragment",
    [
        (ARM, [0.0] * 6 + [math.nan], "NaN or inf for joint7"),
        (ARM, [0.0] * 6 + [1e9], "joint7 is not physical"),
        (ARM, [0.0] * 6, "7 names but 6 positions"),
        ([], [0.0] * 8, "without joint names"),
    ],
)
def test_bad_selected_values_are_refused_and_keep_the_old_ones(names, positions, fragment):
    sel = JointSelection(STATE, max_abs=1e4)
    sel.observe(STATE, np.ones(8), 1 * S)
    assert fragment in sel.observe(names, positions, 2 * S)
    assert sel.vector().positions.tolist() == [1.0] * 8 and sel.stamp_ns == 1 * S


def test_without_names_each_message_is_taken_whole():
    sel = JointSelection()
    assert not sel.selecting
    with pytest.raises(JointSelectionError, match="nothing received") as err:
        sel.vector()
    assert err.value.key == "no joint state"
    sel.observe(["a", "b"], [1.0, 2.0], 5 * S)
    sel.observe(["c"], [3.0], 6 * S)
    assert sel.vector().positions.tolist() == [3.0] and sel.last_stamp_ns(["x"]) == 6 * S
    with pytest.raises(JointSelectionError, match=r"^1.000 s old"):
        sel.vector(7 * S, 0.5)


def test_last_stamp_is_per_joint_and_a_copy_is_a_snapshot():
    sel = JointSelection(STATE)
    sel.observe(ARM, np.zeros(7), 10 * S)
    sel.observe(["finger_joint"], [0.0], 3 * S)  # the gripper driver's own clock
    assert sel.last_stamp_ns(["finger_joint"]) == 3 * S and sel.last_stamp_ns(ARM) == 10 * S
    assert sel.last_stamp_ns(["head_pan"]) is None
    snap = sel.copy()
    sel.clear()
    assert snap.vector().positions.size == 8 and sel.stamp_ns is None


@pytest.mark.parametrize("cls", [InferenceParams, KinematicsParams])
def test_state_joint_names_parameter(cls):
    assert cls().state_joint_names == ()  # default: today's behaviour
    assert cls(state_joint_names=STATE).state_joint_names == STATE
    with pytest.raises(ParameterError, match="state_joint_names: names must be non-empty and distinct"):
        cls(state_joint_names=("a", "a"))


def test_controller_joint_states_are_as_fresh_as_the_stalest_commanded_joint():
    """joint_trajectory: a stopped arm publisher holds the arm while the gripper's keeps publishing."""
    limits = JointLimits(STATE, (-3.0,) * 8, (3.0,) * 8, max_jump=0.1)
    monitor = JointStateMonitor(limits, fault_s=1.0)
    assert monitor.observe(ARM, [0.5] * 7, 1 * S) is None
    assert monitor.stamp_ns is None and monitor.stalest() == "finger_joint"
    assert monitor.observe(["finger_joint"], [0.01], 2 * S) is None
    assert monitor.stamp_ns == 1 * S and monitor.stalest() == "joint1"
    assert ControllerParams().gripper_command_topic == "gripper/commands"
