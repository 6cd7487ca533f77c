"""The robot of `vla-accel soak`: cameras, joint states, the arm and a /diagnostics listener on one rclpy
node of the soak's own process. It plays the arm (each command comes back as an executed action for the
kinematics node) and writes what it saw into a RobotLog (vla_accel_ros.evaluation.soak)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_accel_ros.evaluation.soak import Plan, RobotLog
from vla_accel_ros.msg import VlaAction
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.qos import camera_qos, command_qos, instruction_qos, joint_states_qos, vla_qos

INSTRUCTION = "reach the red goal"


class Robot:
    """Camera, joint states, arm and diagnostics listener, on one rclpy node of this process."""

    def __init__(self, context: Any, plan: Plan) -> None:
        self.plan = plan
        self.node = Node("soak_robot", context=context)
        self.cams = [
            self.node.create_publisher(Image, "camera/image_raw", camera_qos()),
            self.node.create_publisher(Image, "wrist_camera/image_raw", camera_qos()),
        ]
        self.joints = self.node.create_publisher(JointState, "joint_states", joint_states_qos())
        self.instruction = self.node.create_publisher(String, "instruction", instruction_qos())
        self.instruction.publish(String(data=INSTRUCTION))
        self.executed = self.node.create_publisher(VlaAction, "arm/executed_action", vla_qos())
        self.clock = self.node.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        self.node.create_subscription(VlaAction, "arm/command", self._on_command, command_qos())
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.lock = threading.Lock()
        self.sent_wall: dict[int, float] = {}  # image stamp -> wall (monotonic) time it was published
        self._sent_order: deque[int] = deque()
        self.log = RobotLog()
        self.now_ns = 0  # the run's clock: sim time for a soak, else the node clock
        size = plan.image_size
        self._frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        self._positions = np.linspace(-0.5, 0.5, 9)
        self._names = [f"joint_{i}" for i in range(9)]

    def stamp_ns(self) -> int:
        return self.now_ns if self.plan.sim_time else self.node.get_clock().now().nanoseconds

    def tick_clock(self, sim_ns: int) -> None:
        self.now_ns = sim_ns
        sec, nanosec = divmod(sim_ns, 1_000_000_000)
        self.clock.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))

    def publish_joints(self) -> None:
        stamp = self.stamp_ns()
        self._positions = self._positions + 1e-4
        self.joints.publish(convert.arrays_to_joint_state(self._names, self._positions, None, stamp))
        self.log.published["joint states"] += 1

    def publish_frames(self) -> None:
        stamp = self.stamp_ns()
        with self.lock:
            self.sent_wall[stamp] = time.monotonic()
            self._sent_order.append(stamp)
            while len(self._sent_order) > 5000:
                self.sent_wall.pop(self._sent_order.popleft(), None)
        for pub, frame in zip(self.cams, ("corner", "wrist"), strict=True):
            pub.publish(convert.numpy_to_image(self._frame, stamp, frame))
        self.log.published["camera frames"] += 2

    def snapshot(self) -> None:
        published = self.log.published
        self.log.published_at.append((self.stamp_ns(), published["camera frames"], published["joint states"]))

    # -- callbacks (executor thread) ---------------------------------------------------------------------
    def _on_command(self, msg: VlaAction) -> None:
        now = self.stamp_ns()
        hold = msg.fallback_reason == "watchdog hold"
        self.log.commands.append((now, hold))
        if not hold:
            with self.lock:
                sent = self.sent_wall.get(convert.stamp_to_ns(msg.image_stamp))
            if sent is not None:
                self.log.latencies.append((now, (time.monotonic() - sent) * 1000.0))
        out = VlaAction(header=convert.header(now), action=list(msg.action))
        self.executed.publish(out)

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            name = s.name.rsplit("/", 1)[-1]
            values = {kv.key: kv.value for kv in s.values}
            self.log.diags.setdefault(name, []).append((convert.stamp_to_ns(msg.header.stamp), values))
