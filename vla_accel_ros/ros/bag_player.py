"""Play a recorded bag into the live graph (`vla-accel up --replay BAG`).

    python -m vla_accel_ros.ros.bag_player BAG [--rate 1.0] [topic mapping flags of `vla-accel replay`]

The bag is read through bag_io.iter_steps (the same topic mapping, decoding and checks as offline
replay), so any bag replay accepts plays, normalized to what the nodes subscribe to: per frame of the
main camera, /clock, then `joint_states`, `wrist_camera/image_raw` and `camera/image_raw` (rgb8), all
stamped with the frame's bag time; `instruction` (latched) when it changes; `sim/episode` start/end
events at episode markers (the nodes reset their filters on them). When the bag has reference
actions, the action executed after frame t is published on `arm/executed_action` stamped with frame
t+1, just before it, as the simulated arm does, so the kinematics node and the controller run on
what the bag says the arm did.

Pacing follows bag time x --rate; idle gaps longer than --max-gap (demonstration bags put episodes
1000 s apart) are cut to --max-gap, the clock jumping ahead. With --wait-node inference_node the
player first waits for that node's "model ... loaded" log line (/rosout), and exits 1 if it reports a
failed load: a sim-time graph publishes no diagnostics before the clock runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import Log
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

from vla_accel_ros.data.bag_io import BagError, BagStep, TopicMap, iter_steps
from vla_accel_ros.msg import VlaAction
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.qos import camera_qos, episode_qos, instruction_qos, joint_states_qos, vla_qos

CAMERA_TOPICS = {"corner": "camera/image_raw", "wrist": "wrist_camera/image_raw"}


class PlaybackError(RuntimeError):
    """The graph the bag should be played into is not ready (the message says why)."""


class BagPlayer(Node):
    """Publishes a recorded bag on the robot topics with /clock, so the live nodes run on recorded data."""

    def __init__(self, executed: bool = True, **kwargs: Any) -> None:
        super().__init__("bag_player", **kwargs)
        self.clock_pub = self.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        self.joint_pub = self.create_publisher(JointState, "joint_states", joint_states_qos())
        self.image_pubs = {
            cam: self.create_publisher(Image, topic, camera_qos()) for cam, topic in CAMERA_TOPICS.items()
        }
        self.instruction_pub = self.create_publisher(String, "instruction", instruction_qos())
        self.episode_pub = self.create_publisher(String, "sim/episode", episode_qos())
        self.executed_pub = (
            self.create_publisher(VlaAction, "arm/executed_action", vla_qos()) if executed else None
        )
        self._instruction: str | None = None
        self._episode: int | None = None
        self._pending_action: np.ndarray | None = None
        self.frames = 0

    def publish_step(self, step: BagStep) -> None:
        stamp = step.stamp_ns
        self.clock_pub.publish(Clock(clock=convert.ns_to_stamp(stamp)))
        if step.episode != self._episode:
            self._pending_action = None
            self._episode = step.episode
            if step.episode >= 0:
                event = {"event": "start", "episode": step.episode, "task": step.task, "seed": step.seed}
                self.episode_pub.publish(String(data=json.dumps({**event, "stamp_ns": stamp})))
        if step.instruction and step.instruction != self._instruction:
            self._instruction = step.instruction
            self.instruction_pub.publish(String(data=step.instruction))
        if self.executed_pub is not None and self._pending_action is not None:
            msg = VlaAction(header=convert.header(stamp), image_stamp=convert.ns_to_stamp(stamp))
            msg.action = [float(v) for v in self._pending_action]
            msg.decoding = "bag"
            self.executed_pub.publish(msg)
        self._pending_action = step.reference_action
        self.joint_pub.publish(
            convert.arrays_to_joint_state(
                step.joint_names, step.joint_positions, step.joint_velocities, stamp
            )
        )
        for cam in sorted(step.images, key=lambda c: c == "corner"):  # the main camera last
            if cam in self.image_pubs:
                self.image_pubs[cam].publish(convert.numpy_to_image(step.images[cam], stamp, f"{cam}_camera"))
        if step.episode_end:
            end = {"event": "end", "episode": step.episode, "success": step.success, "stamp_ns": stamp}
            self.episode_pub.publish(String(data=json.dumps(end)))
            self._pending_action = None
        self.frames += 1


class ReadyWatch:
    """Waits for a node's 'model ... loaded' (or 'load failed') line on /rosout."""

    def __init__(self, node: Node, node_name: str) -> None:
        self.name = node_name
        self.state: str | None = None  # "ready" or the failure text
        qos = QoSProfile(
            depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        node.create_subscription(Log, "/rosout", self._on_log, qos)

    def _on_log(self, msg: Log) -> None:
        if not msg.name.split(".")[-1].endswith(self.name):
            return
        if "load failed" in msg.msg:
            self.state = msg.msg
        elif msg.msg.startswith("model ") and " loaded " in msg.msg and self.state is None:
            self.state = "ready"


def _spin_until(executor: SingleThreadedExecutor, done: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if done():
            return True
        executor.spin_once(timeout_sec=0.02)
    return done()


def play(
    bag: Path,
    topic_map: TopicMap,
    rate: float = 1.0,
    max_gap_s: float = 1.0,
    wait_node: str | None = None,
    wait_timeout_s: float = 120.0,
    wait_subscribers_s: float = 10.0,
    linger_s: float = 2.0,
    executed: bool = True,
    log: Callable[[str], None] = print,
) -> int:
    """Publish the bag's steps paced by bag time; returns the number of frames played."""
    if rate <= 0:
        raise ValueError(f"--rate must be > 0, got {rate}")
    node = BagPlayer(executed=executed and topic_map.action is not None)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        watch = ReadyWatch(node, wait_node) if wait_node else None
        steps = iter_steps(bag, topic_map)
        first = next(steps, None)  # opens and checks the bag before waiting for anyone
        if first is None:
            raise BagError(f"bag {bag} holds no complete camera frame")
        pubs = [node.joint_pub, node.instruction_pub, node.episode_pub, node.image_pubs["corner"]]
        pubs += [node.image_pubs["wrist"]] if "wrist" in first.images else []
        pubs += [node.executed_pub] if node.executed_pub is not None else []
        unmatched = lambda: [p.topic_name for p in pubs if p.get_subscription_count() == 0]  # noqa: E731
        if not _spin_until(executor, lambda: not unmatched(), time.monotonic() + wait_subscribers_s):
            log(f"[bag_player] warning: no subscriber yet on {', '.join(unmatched())}; playing anyway")
        deadline = time.monotonic() + wait_timeout_s
        if watch is not None:
            if not _spin_until(executor, lambda: watch.state is not None, deadline):
                raise PlaybackError(f"{wait_node} did not report a loaded model within {wait_timeout_s:g} s")
            if watch.state != "ready":
                raise PlaybackError(f"{wait_node}: {watch.state}")
        log(f"[bag_player] playing {bag} at {rate:g}x")
        wall0, bag0, prev = time.monotonic(), first.stamp_ns, first.stamp_ns
        skipped = 0.0
        for step in _chain(first, steps):
            gap = (step.stamp_ns - prev) * 1e-9
            if gap > max_gap_s:
                skipped += gap - max_gap_s
            prev = step.stamp_ns
            target = wall0 + ((step.stamp_ns - bag0) * 1e-9 - skipped) / rate
            while (left := target - time.monotonic()) > 0:
                executor.spin_once(timeout_sec=min(left, 0.05))
            node.publish_step(step)
            executor.spin_once(timeout_sec=0.0)
        end = time.monotonic() + linger_s  # let the graph finish the last step
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        log(f"[bag_player] played {node.frames} frames")
        return node.frames
    finally:
        executor.remove_node(node)
        node.destroy_node()
        executor.shutdown()


def _chain(first: BagStep, rest: Any) -> Any:
    yield first
    yield from rest


def _bag_has(bag: Path, topic: str) -> bool:
    from vla_accel_ros.data.bag_io import open_reader

    reader = open_reader(bag)
    try:
        return topic in reader.topics
    finally:
        reader.close()


def main(argv: list[str] | None = None) -> int:
    from vla_accel_ros.data.topic_flags import add_topic_arguments, topic_map

    parser = argparse.ArgumentParser(prog="bag_player", description=__doc__.splitlines()[0])
    parser.add_argument("bag", type=Path)
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed x bag time")
    parser.add_argument("--max-gap", type=float, default=1.0, help="longest idle gap kept (s of bag time)")
    parser.add_argument("--wait-node", default=None, help="wait until this node has loaded its model")
    parser.add_argument("--wait-timeout", type=float, default=120.0, help="seconds to wait for --wait-node")
    parser.add_argument(
        "--wait-subscribers", type=float, default=10.0, help="seconds to wait for a subscriber on every topic"
    )
    parser.add_argument("--linger", type=float, default=2.0, help="seconds to stay up after the last frame")
    parser.add_argument("--no-executed", action="store_true", help="do not publish arm/executed_action")
    add_topic_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(rclpy.utilities.remove_ros_args(["bag_player", *argv])[1:])
    try:
        tm = topic_map(args)
        if tm.action and not _bag_has(args.bag, tm.action):
            print(f"[bag_player] {tm.action} not in the bag: no executed actions are published", flush=True)
            tm.action = None
    except (ValueError, BagError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rclpy.init(args=["bag_player", *argv])  # --ros-args (namespace, remaps from a launcher) apply
    try:
        play(
            args.bag,
            tm,
            args.rate,
            args.max_gap,
            args.wait_node,
            args.wait_timeout,
            args.wait_subscribers,
            args.linger,
            executed=not args.no_executed,
            log=lambda line: print(line, flush=True),
        )
    except (BagError, PlaybackError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1 if isinstance(err, PlaybackError) else 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 130
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
