"""The declared action space (ROS-free): validation against each output type, and the mappings it defines."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from vla_accel_ros.control import SafetyGuard, SafetyLimits
from vla_accel_ros.control.action_space import META_WORLD, ActionSpace, ActionSpaceError

# OpenVLA-style 7-D end-effector deltas (Bridge: 1 = open, 0 = closed), per step at the control rate.
OPENVLA = ActionSpace(
    names=("dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"),
    kinds=("translation",) * 3 + ("rotation",) * 3 + ("gripper",),
    units=("m",) * 3 + ("rad",) * 3 + ("normalized",),
    scales=(0.02,) * 3 + (0.1,) * 3 + (1.0,),
    frame="tool0",
    gripper_open_value=1.0,
    gripper_closed_value=0.0,
)
ARM = [f"joint{i}" for i in range(1, 8)]
# A 7-joint arm with joint-position deltas (0.05 rad per unit) and a gripper joint (0.04 m open).
JOINT8 = ActionSpace(
    names=tuple(f"dq{i}" for i in range(1, 8)) + ("gripper",),
    kinds=("joint",) * 7 + ("gripper",),
    units=("rad",) * 7 + ("normalized",),
    scales=(0.05,) * 7 + (1.0,),
    frame="",
    gripper_open_value=1.0,
    gripper_closed_value=-1.0,
    joint_names=(*ARM, "finger_joint"),
    gripper_open_position=0.04,
    gripper_closed_position=0.0,
)


@pytest.mark.parametrize(
    "space, outputs",
    [
        (META_WORLD, ("vla_action", "twist")),
        (OPENVLA, ("vla_action", "twist")),
        (JOINT8, ("vla_action", "joint_trajectory")),
    ],
)
def test_each_space_drives_its_outputs(space, outputs):
    for output in outputs:
        space.check_output(output)


@pytest.mark.parametrize(
    "space, output, fragment",
    [
        (META_WORLD, "joint_trajectory", "cannot take end-effector deltas"),
        (OPENVLA, "joint_trajectory", "cannot take end-effector deltas"),
        (JOINT8, "twist", "joint dims"),
        (
            replace(JOINT8, joint_names=tuple(ARM[:5])),
            "joint_trajectory",
            "joint_names: 5 names, need 7 or 8",
        ),
        (META_WORLD, "servo", "output_type"),
        (
            replace(META_WORLD, names=("g",), kinds=("gripper",), units=("normalized",), scales=(1.0,)),
            "twist",
            "needs 3 translation dims",
        ),
    ],
)
def test_an_output_the_space_cannot_drive_is_refused_naming_the_key(space, output, fragment):
    with pytest.raises(ActionSpaceError, match=fragment):
        space.check_output(output)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"names": ()}, "action_names: declare"),
        ({"kinds": ("translation",) * 3}, r"action_kinds: 3 values, action_names has 4"),
        ({"units": ("m",) * 5}, "action_units: 5 values"),
        ({"scales": (0.01,) * 3}, "action_scales: 3 values"),
        ({"names": ("dx", "dx", "dz", "g")}, "action_names: names repeat"),
        ({"kinds": ("translation", "translation", "translation", "pinch")}, r"action_kinds\[3\]: 'pinch'"),
        (
            {"units": ("m", "m", "deg", "normalized")},
            r"action_units\[2\]: 'deg' is not a unit of a translation",
        ),
        ({"scales": (0.01, 0.0, 0.01, 1.0)}, r"action_scales\[1\]: must be a finite number > 0"),
        ({"scales": (0.01, float("nan"), 0.01, 1.0)}, r"action_scales\[1\]"),
        (
            {
                "kinds": ("translation", "translation", "gripper", "gripper"),
                "units": ("m", "m", "normalized", "normalized"),
            },
            "at most one gripper",
        ),
        ({"frame": " "}, "action_frame"),
        ({"gripper_closed_value": -1.0}, "gripper_open_value: must differ"),
        ({"joint_names": ("a", "a")}, "joint_names: names must be"),
    ],
)
def test_each_declaration_error_names_its_key(change, fragment):
    with pytest.raises(ActionSpaceError, match=fragment):
        replace(META_WORLD, **change)


def test_translation_dims_come_as_three():
    with pytest.raises(ActionSpaceError, match="x, y, z"):
        replace(
            OPENVLA,
            kinds=("translation",) * 2 + ("rotation",) * 4 + ("gripper",),
            units=("m",) * 2 + ("rad",) * 4 + ("normalized",),
        )


def test_twist_velocities_from_per_step_and_velocity_units():
    # Meta-World: 0.01 m per unit and step at 10 Hz -> 0.1 m/s per unit (the old twist_linear_scale).
    linear, angular = META_WORLD.twist(np.array([0.2, -0.4, 0.0, 1.0]), rate_hz=10.0)
    assert linear.tolist() == pytest.approx([0.02, -0.04, 0.0]) and angular.tolist() == [0, 0, 0]
    linear, angular = OPENVLA.twist(np.array([1.0, 0, 0, 0.5, 0, -1.0, 1.0]), rate_hz=5.0)
    assert linear.tolist() == pytest.approx([0.1, 0, 0]) and angular.tolist() == pytest.approx(
        [0.25, 0, -0.5]
    )
    velocity = replace(OPENVLA, units=("m/s",) * 3 + ("rad/s",) * 3 + ("normalized",))
    linear, angular = velocity.twist(np.array([1.0, 0, 0, 0.5, 0, 0, 0]), rate_hz=5.0)
    assert linear[0] == pytest.approx(0.02) and angular[0] == pytest.approx(0.05)  # the rate does not matter


@pytest.mark.parametrize(
    "open_value, closed_value, value, expected",
    [
        (-1.0, 1.0, 1.0, 0.0),  # Meta-World: +1 = close
        (-1.0, 1.0, -1.0, 0.04),
        (-1.0, 1.0, 0.0, 0.02),
        (1.0, 0.0, 1.0, 0.04),  # Bridge / OpenVLA: 1 = open
        (1.0, 0.0, 0.25, 0.01),
        (1.0, 0.0, 7.0, 0.04),  # beyond open: clamped
        (0.0, 1.0, -3.0, 0.04),
    ],
)
def test_gripper_convention(open_value, closed_value, value, expected):
    space = replace(JOINT8, gripper_open_value=open_value, gripper_closed_value=closed_value)
    assert space.gripper_position(value) == pytest.approx(expected)


def test_joint_targets_add_scaled_deltas_to_the_current_positions():
    current = {name: 0.1 * i for i, name in enumerate(ARM)} | {"finger_joint": 0.03, "head": 9.0}
    action = np.array([1.0, -1.0, 0, 0, 0, 0, 0.5, -1.0])  # gripper -1 = closed
    targets = JOINT8.joint_targets(action, current)
    assert targets[:7] == pytest.approx([0.05, 0.05, 0.2, 0.3, 0.4, 0.5, 0.625])
    assert targets[7] == pytest.approx(0.0)
    assert JOINT8.joint_targets(action, current, keep_gripper=True)[7] == pytest.approx(0.03)
    arm_only = replace(JOINT8, joint_names=tuple(ARM))  # the gripper goes to its own driver
    assert len(arm_only.joint_targets(action, current)) == 7
    with pytest.raises(KeyError, match="joint7"):
        JOINT8.joint_targets(action, {n: 0.0 for n in ARM[:6]} | {"finger_joint": 0.0})


def test_safety_limits_follow_the_declared_kinds():
    lim = SafetyLimits(
        8,
        kinds=JOINT8.kinds,
        max_joint_delta=0.5,
        max_gripper_change=1.0,
        clip_min=[-1.0] * 8,
        clip_max=[1.0] * 8,
    )
    g = SafetyGuard(lim, initial_gripper=1.0)
    assert g.check(np.array([0.4, -0.4, 0, 0, 0, 0, 0, 0.5])).ok
    v = g.check(np.array([0, 0, 0, 0.8, 0, 0, 0, 0.5]))
    assert v.violations == [("max_joint_delta", pytest.approx(0.8), 0.5)] and "over by 0.3" in v.reason
    v = g.check(np.array([0, 0, 0, 0, 0, 0, 0, -1.0]))
    assert v.violations == [("max_gripper_change", pytest.approx(1.5), 1.0)]
    assert g.hold().tolist() == pytest.approx([0] * 7 + [0.5])
    # The gripper need not be last; a space without one holds nothing but motion.
    first = SafetyGuard(SafetyLimits(4, kinds=("gripper", "translation", "translation", "translation")))
    assert first.check(np.array([0.7, 0.1, 0, 0])).ok and first.hold().tolist() == pytest.approx(
        [0.7, 0, 0, 0]
    )
    no_grip = SafetyGuard(SafetyLimits(2, kinds=("joint", "joint"), max_joint_delta=1.0))
    assert no_grip.check(np.array([0.5, 0.5])).ok and no_grip.hold().tolist() == [0, 0]
    with pytest.raises(ValueError, match="rotation dims"):
        SafetyLimits(8, kinds=JOINT8.kinds, max_rotation=0.1)
    with pytest.raises(ValueError, match="3 translation dims"):
        SafetyLimits(8, kinds=JOINT8.kinds, workspace_min=[0, 0, 0], workspace_max=[1, 1, 1])
    with pytest.raises(ValueError, match="kinds must be 8"):
        SafetyLimits(8, kinds=("joint",) * 7)
