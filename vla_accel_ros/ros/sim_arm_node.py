"""Simulated arm driver on the robot's topics: a Meta-World Sawyer (vla_accel_ros.sim.metaworld_arm.SimArm)
or, for a LIBERO task such as "libero_object:3", LIBERO's Panda (vla_accel_ros.sim.libero_arm.LiberoArm,
7-D actions, the Panda's joint states), both built by vla_accel_ros.sim.arms.make_arm.

Publishes camera images (rgb8, stamped with the capture time), joint states, the task instruction
(latched) and episode events; executes commands from `arm/command` and republishes each executed action
on `arm/executed_action` for the kinematics node.

Lockstep (default): the arm steps when a command for the current observation arrives (its image_stamp
is not older than the observation; a command tied to no image, such as the controller's hold, also
counts), so the closed loop matches an offline evaluation step for step. With no command for
hold_timeout_s it steps once with a hold (zero motion, gripper kept); before the first command it
republishes the observation so late subscribers get a fresh frame. Otherwise the arm steps at
control_rate_hz with the latest command.

Episode events on `sim/episode` (std_msgs/String, JSON): {"event": "start", "task", "seed", "episode",
"stamp_ns"} before the first observation of an episode, {"event": "end", ..., "steps", "success"} after
its last step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String

from vla_accel_ros.control import hold_action
from vla_accel_ros.msg import VlaAction
from vla_accel_ros.params import SimArmParams
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.diagnostics import ERROR, OK, WARN, Health, RateMeter
from vla_accel_ros.ros.params import declare_params
from vla_accel_ros.ros.qos import (
    camera_qos,
    command_qos,
    episode_qos,
    instruction_qos,
    joint_states_qos,
    vla_qos,
)
from vla_accel_ros.ros.spin import run_node
from vla_accel_ros.sim.tasks import parse_task_list

# Project camera name -> (topic, frame_id).
CAMERA_TOPICS = {
    "corner": ("camera/image_raw", "corner_camera_optical_frame"),
    "wrist": ("wrist_camera/image_raw", "wrist_camera_optical_frame"),
}
REPUBLISH_PERIOD_S = 0.25  # before the first command


class Arm(Protocol):
    """What the node needs of SimArm or LiberoArm (a fake in unit tests)."""

    instruction: str
    action_dim: int
    steps: int
    success: bool

    def reset(self, seed: int) -> Any: ...
    def step(self, action: np.ndarray) -> Any: ...
    @property
    def done(self) -> bool: ...


ArmFactory = Callable[[str, int, int], Arm]  # (task, image size, max steps; 0: the task's own limit)


def build_sim_arm(task: str, image_size: int, max_steps: int) -> Arm:
    """The node's default ArmFactory: the task's simulator with both cameras the node publishes."""
    from vla_accel_ros.sim.arms import make_arm  # MuJoCo and the simulator load only here

    return make_arm(task, image_size, tuple(CAMERA_TOPICS), max_steps or None)  # 0: the task's own limit


class SimArmNode(Node):
    """The simulated arm driver (Meta-World or LIBERO) behind the same topics and message types as a real
    arm."""

    def __init__(self, arm_factory: ArmFactory | None = None, **kwargs: Any) -> None:
        super().__init__("sim_arm_node", **kwargs)
        self._params = declare_params(self, SimArmParams)
        p = self._params.values
        self._tasks = parse_task_list(p.task)
        self._arm_factory = arm_factory or build_sim_arm
        self._arms: dict[str, Arm] = {}
        self._health = Health(self)

        self._image_pubs = {
            cam: (self.create_publisher(Image, topic, camera_qos()), frame)
            for cam, (topic, frame) in CAMERA_TOPICS.items()
        }
        self._joint_pub = self.create_publisher(JointState, "joint_states", joint_states_qos())
        self._instruction_pub = self.create_publisher(String, "instruction", instruction_qos())
        self._episode_pub = self.create_publisher(String, "sim/episode", episode_qos())
        self._executed_pub = self.create_publisher(VlaAction, "arm/executed_action", vla_qos())
        if p.command_type == "twist":
            self.create_subscription(TwistStamped, "arm/command", self._on_twist, command_qos())
            if p.gripper_command_topic:
                self.create_subscription(
                    Float64MultiArray, p.gripper_command_topic, self._on_gripper, command_qos()
                )
        else:
            self.create_subscription(VlaAction, "arm/command", self._on_action, command_qos())

        self._arm: Arm | None = None
        self._task, self._seed = "", 0
        self._episode = 0
        self._obs: Any = None
        self._obs_stamp_ns = 0
        self._last_publish = 0.0  # monotonic time of the last observation
        self._commanded = False  # a command has been executed since start-up
        self._latest: tuple[np.ndarray, VlaAction | None] | None = None
        self._last_gripper: float | None = None
        self._gripper_command: float | None = None  # twist mode: the latest gripper command
        self._finished = False
        self._step_rate = RateMeter()
        self._stale_commands = 0

        self._start_episode()
        if p.lockstep:
            self._timer = self.create_timer(min(0.05, p.hold_timeout_s / 2), self._on_lockstep_timer)
        else:
            self._timer = self.create_timer(1.0 / p.control_rate_hz, self._on_rate_timer)

    @property
    def params(self) -> SimArmParams:
        """The live parameter values (read-only view)."""
        return self._params.values

    @property
    def observation_stamp_ns(self) -> int:
        """Stamp of the latest published observation: a command for it carries this image_stamp."""
        return self._obs_stamp_ns

    # -- commands (callbacks store, then forward to the step) ------------------------------------------
    def _on_action(self, msg: VlaAction) -> None:
        try:
            action = convert.action_array(msg.action, "command")
        except convert.ConversionError as err:
            self._health.report(WARN, "bad command", str(err))
            return
        self._on_command(action, msg, convert.stamp_to_ns(msg.image_stamp))

    def _on_gripper(self, msg: Float64MultiArray) -> None:
        p = self._params.values
        try:
            self._gripper_command = convert.gripper_value(
                msg, p.gripper_open_position, p.gripper_closed_position
            )
        except convert.ConversionError as err:
            self._health.report(WARN, "bad gripper command", str(err))

    def _on_twist(self, msg: TwistStamped) -> None:
        gripper = next((g for g in (self._gripper_command, self._last_gripper) if g is not None), 0.0)
        try:
            p = self._params.values
            # a 7-D arm (LIBERO's OSC_POSE) also takes the rotation dims from the twist's angular part
            rotating = self._arm is not None and self._arm.action_dim == 7
            action = convert.action_from_twist(
                msg, p.twist_linear_scale, gripper, p.twist_angular_scale if rotating else None
            )
        except convert.ConversionError as err:
            self._health.report(WARN, "bad command", str(err))
            return
        self._on_command(action, None, 0)

    def _on_command(self, action: np.ndarray, msg: VlaAction | None, image_stamp_ns: int) -> None:
        if self._arm is None or self._finished:
            return
        if action.shape != (self._arm.action_dim,):
            self._health.report(
                WARN, "bad command", f"{action.size} values, the arm takes {self._arm.action_dim}"
            )
            return
        if image_stamp_ns < 0 or image_stamp_ns > self._obs_stamp_ns:
            self._health.report(
                WARN, "bad command", f"image_stamp {image_stamp_ns} is no observation of this arm (yet)"
            )
            return
        if not self._params.values.lockstep:
            self._latest = (action, msg)
            return
        if 0 < image_stamp_ns < self._obs_stamp_ns:
            self._stale_commands += 1  # computed on an older observation (e.g. before a hold or a reset)
            return
        self._step(action, msg)

    # -- timers ----------------------------------------------------------------------------------------
    def _on_lockstep_timer(self) -> None:
        if self._arm is None or self._finished:
            return
        idle = time.monotonic() - self._last_publish
        if not self._commanded:
            if idle >= REPUBLISH_PERIOD_S:
                self._publish_observation(restamp=True)
        elif idle >= self._params.values.hold_timeout_s:
            self._health.report(WARN, "hold", f"no command for {idle:.2f} s: stepped with zero motion")
            self._step(hold_action(self._arm.action_dim, self._last_gripper), None)

    def _on_rate_timer(self) -> None:
        if self._arm is None or self._finished:
            return
        if self._latest is None:
            self._publish_observation(restamp=True)
            return
        self._step(*self._latest)

    # -- stepping --------------------------------------------------------------------------------------
    def _start_episode(self) -> None:
        p = self._params.values
        task = self._tasks[self._episode % len(self._tasks)]
        seed = p.seed_start + self._episode // len(self._tasks)
        try:
            arm = self._arms.get(task) or self._arm_factory(task, p.image_size, p.max_steps)
            self._arms[task] = arm
            self._obs = arm.reset(seed)
        except Exception as err:  # a broken simulator must show on /diagnostics, not kill the node
            self._arm = None
            self._health.set_state(ERROR, f"cannot start {task} seed {seed}: {err}")
            return
        self._arm, self._task, self._seed = arm, task, seed
        self._gripper_command = None  # a gripper command of the last episode does not carry over
        self._obs_stamp_ns = self.get_clock().now().nanoseconds
        self._instruction_pub.publish(String(data=arm.instruction))
        self._publish_event("start", stamp_ns=self._obs_stamp_ns)
        self._health.set_state(OK, f"episode {self._episode}: {task} seed {seed}")
        self._publish_observation(restamp=False)

    def _step(self, action: np.ndarray, msg: VlaAction | None) -> None:
        arm = self._arm
        assert arm is not None
        try:
            self._obs = arm.step(action)
        except (ValueError, RuntimeError) as err:
            self._health.report(ERROR, "step failed", str(err))
            return
        self._commanded = True
        executed = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        self._last_gripper = float(executed[-1])
        self._step_rate.tick()
        self._obs_stamp_ns = self.get_clock().now().nanoseconds
        out = (
            convert.with_action(msg, executed, self._obs_stamp_ns)
            if msg is not None
            else VlaAction(header=convert.header(self._obs_stamp_ns), action=[float(v) for v in executed])
        )
        self._executed_pub.publish(out)
        if arm.done:
            self._publish_joint_state()
            self._publish_event("end", steps=int(arm.steps), success=bool(arm.success))
            self._episode += 1
            self._latest = None
            episodes = self._params.values.episodes
            if episodes and self._episode >= episodes:
                self._finished = True
                self._health.set_state(OK, f"finished {self._episode} episode(s)")
                self.get_logger().info(f"finished {self._episode} episode(s)")
                return
            self._start_episode()
            return
        self._publish_observation(restamp=False)

    # -- publishing ------------------------------------------------------------------------------------
    def _publish_observation(self, restamp: bool) -> None:
        if restamp:
            self._obs_stamp_ns = self.get_clock().now().nanoseconds
        self._publish_joint_state()
        for cam, image in self._obs.images.items():
            pub, frame = self._image_pubs[cam]
            pub.publish(convert.numpy_to_image(image, self._obs_stamp_ns, frame))
        self._last_publish = time.monotonic()
        self._health.set_values(
            episode=self._episode,
            step=getattr(self._arm, "steps", 0),
            step_rate_hz=self._step_rate.rate(),
            stale_commands=self._stale_commands,
        )

    def _publish_joint_state(self) -> None:
        obs = self._obs
        self._joint_pub.publish(
            convert.arrays_to_joint_state(
                obs.joint_names, obs.joint_positions, obs.joint_velocities, self._obs_stamp_ns
            )
        )

    def _publish_event(self, event: str, **extra: Any) -> None:
        record = {"event": event, "task": self._task, "seed": self._seed, "episode": self._episode, **extra}
        self._episode_pub.publish(String(data=json.dumps(record)))

    def destroy_node(self) -> None:
        for arm in self._arms.values():
            close = getattr(arm, "close", None)
            if close is not None:
                close()
        self._arms.clear()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node(SimArmNode, "sim_arm_node", args)


if __name__ == "__main__":
    main()
