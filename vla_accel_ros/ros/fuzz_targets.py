"""The nodes `vla-accel fuzz` feeds, built in this process with recording spies on their outputs.

Everything here goes through the nodes' public surface: the subscriptions and publishers rclpy lists
(`node.subscriptions`, `node.publishers`, matched by resolved topic name) and the read-only accessors
of the node classes. A spy wraps one publisher's `publish`, so what a node sends towards an arm is
recorded (and still published) without touching the node's attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.parameter import Parameter

from vla_accel_ros.evaluation.fuzz_report import JointReference
from vla_accel_ros.evaluation.fuzzing import FRAME, JOINT_LIMIT, WORKSPACE_BOX
from vla_accel_ros.ros.controller_node import ControllerNode
from vla_accel_ros.ros.inference_node import InferenceNode, load_policy
from vla_accel_ros.ros.kinematics_node import KinematicsNode
from vla_accel_ros.ros.sim_arm_node import SimArmNode

INSTRUCTION = "reach the red goal"
STATE_JOINTS = [f"joint_{i}" for i in range(9)]  # what the fuzz's joint states name (the stand-in arm's)

# The joint_trajectory controller: three joint deltas and a gripper joint (4-D, as the policy's actions).
JOINT_STEP = 0.05  # rad per action unit
JOINT_SPACE = dict(
    action_names=["dq0", "dq1", "dq2", "gripper"],
    action_kinds=["joint", "joint", "joint", "gripper"],
    action_units=["rad", "rad", "rad", "normalized"],
    action_scales=[JOINT_STEP, JOINT_STEP, JOINT_STEP, 1.0],
    joint_names=STATE_JOINTS[:4],
    joint_position_min=[-JOINT_LIMIT] * 4,
    joint_position_max=[JOINT_LIMIT] * 4,
)
# Good inputs of the joint and box controllers, each at the edge of its limit: a good action with a
# positive first dim (`Driver.outward_action`) must be refused on them, one with a negative (inward) one
# passes. So after a bad joint state or ee_pose, a command for an outward action came from the bad input.
GOOD_JOINTS = [JOINT_LIMIT - 0.002] + [0.0] * 8
GOOD_EE = (WORKSPACE_BOX[1][0] - 0.0005, 0.25, 0.25)


def joint_reference() -> JointReference:
    """What the joint_trajectory controller may command on GOOD_JOINTS."""
    names = tuple(JOINT_SPACE["joint_names"])
    return JointReference(
        names=names,
        lower=tuple(JOINT_SPACE["joint_position_min"]),
        upper=tuple(JOINT_SPACE["joint_position_max"]),
        arm=frozenset(names[:3]),
        good=dict(zip(STATE_JOINTS, GOOD_JOINTS, strict=True)),
        max_step=JOINT_STEP,  # |dq| <= 1 (the decoder's range)
    )


def callback_of(node: Node, topic: str) -> Callable[[Any], None]:
    """The callback of `node`'s subscription on `topic` (relative names resolve in the node's namespace):
    calling it is what the executor does with a message that arrived."""
    name = node.resolve_topic_name(topic)
    for sub in node.subscriptions:
        if sub.topic_name == name:
            return sub.callback
    raise KeyError(f"{node.get_fully_qualified_name()} has no subscription on {name}")


class Spy:
    """Records what a node publishes on one topic (and still publishes it; `forward` gets it after)."""

    def __init__(self, node: Node, topic: str, forward: Callable[[Any], None] | None = None) -> None:
        name = node.resolve_topic_name(topic)
        pub = next((p for p in node.publishers if p.topic_name == name), None)
        if pub is None:
            raise KeyError(f"{node.get_fully_qualified_name()} has no publisher on {name}")
        self._publish = pub.publish
        self.forward = forward
        self.msgs: list[Any] = []
        pub.publish = self.publish  # the node keeps its publisher object; only its publish is wrapped

    def publish(self, msg: Any) -> None:
        self.msgs.append(msg)
        self._publish(msg)
        if self.forward is not None:
            self.forward(msg)


class StandInArm:
    """The simulated arm's interface without MuJoCo: records each step."""

    action_dim = 4
    instruction = INSTRUCTION

    def __init__(self, *_: Any) -> None:
        self.steps = 0
        self.success = False
        self.actions: list[np.ndarray] = []

    def reset(self, seed: int) -> SimpleNamespace:
        self.steps = 0
        return self._obs()

    def step(self, action: Any) -> SimpleNamespace:
        self.actions.append(np.array(action))
        self.steps += 1
        return self._obs()

    @property
    def done(self) -> bool:
        return False

    def _obs(self) -> SimpleNamespace:
        img = np.zeros((16, 16, 3), dtype=np.uint8)
        return SimpleNamespace(
            images={"corner": img, "wrist": img},
            joint_names=list(STATE_JOINTS),
            joint_positions=np.zeros(9),
            joint_velocities=np.zeros(9),
            success=False,
        )


@dataclass
class Target:
    """One node under test, the spies on its outputs and (simulated arm) its stand-in arm."""

    name: str
    node: Any
    spies: dict[str, Spy] = field(default_factory=dict)
    arm: StandInArm | None = None


def _params(**values: Any) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def build_targets(context: Any, model: str) -> tuple[list[Target], list[Any]]:
    """The nodes under test, with spies; returns (targets, forwarding queue of inference actions)."""
    forwarded: list[Any] = []
    inference = dict(
        model_path=model,
        num_threads=1,
        trigger="timer",
        control_rate_hz=20.0,
        max_image_age_s=0.3,
        max_state_age_s=0.3,
    )
    # use_sim_episode: the fuzz reaches the controller's sim/episode callback too (simulation only).
    controller = dict(
        dry_run=False, watchdog_timeout_s=0.5, max_rate_hz=1000.0, decoding="kerv", use_sim_episode=True
    )
    targets = []
    # The compressed-image one also selects its proprio joints by name (state_joint_names), so the
    # by-name merge of joint_states is fuzzed beside the as-is path.
    for name, transport, by_name in (
        ("inference_raw", "raw", {}),
        ("inference_compressed", "compressed", {"state_joint_names": STATE_JOINTS}),
    ):
        node = InferenceNode(
            policy_loader=load_policy,
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(image_transport=transport, **inference, **by_name),
        )
        target = Target(name, node)
        target.spies["actions"] = Spy(node, "vla/action_raw", forwarded.append)
        targets.append(target)
    node = KinematicsNode(
        context=context,
        namespace="/fuzz/kinematics",
        parameter_overrides=_params(state_joint_names=STATE_JOINTS),
    )
    target = Target("kinematics", node)
    target.spies["state"] = Spy(node, "vla/kinematics")
    target.spies["prediction"] = Spy(node, "vla/kalman_prediction")
    targets.append(target)
    box = dict(workspace_min=list(WORKSPACE_BOX[0]), workspace_max=list(WORKSPACE_BOX[1]), action_frame=FRAME)
    for name, output, extra in (
        ("controller", "vla_action", {}),
        ("controller_twist", "twist", {}),
        ("controller_joints", "joint_trajectory", JOINT_SPACE),
        ("controller_box", "vla_action", box),
    ):
        node = ControllerNode(
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(output_type=output, **controller, **extra),
        )
        target = Target(name, node)
        target.spies["arm"] = Spy(node, "arm/command")
        target.spies["config"] = Spy(node, "vla/accel_config")
        targets.append(target)
    for name, command in (("sim_arm", "vla_action"), ("sim_arm_twist", "twist")):
        arms: list[StandInArm] = []

        def factory(*a: Any, _arms: list = arms) -> StandInArm:
            _arms.append(StandInArm(*a))
            return _arms[-1]

        node = SimArmNode(
            arm_factory=factory,
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(command_type=command, image_size=16, hold_timeout_s=600.0),
        )
        targets.append(Target(name, node, arm=arms[0]))
    return targets, forwarded
