"""Helpers for tests that use ROS: an isolated DDS domain per test, deadline-based waits, clean-up.

Every ROS participant a test creates runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (no traffic off
loopback) and a ROS_DOMAIN_ID of its own, so concurrent test runs on one machine never see each other.
Waits poll a condition with a deadline (discovery takes ~0.65-3.65 s); nothing sleeps a fixed time.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions

# Fast DDS ports are 7400 + 250 * domain: domains up to 232 are usable. Stay above the 10-99 of
# tools/ros_env.sh so a developer's own shell does not collide with tests.
_DOMAINS = range(100, 230)


def unique_domain_id() -> int:
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    return rng.choice(_DOMAINS)


def ros_test_env(domain_id: int) -> dict[str, str]:
    """Environment for a ROS process started by a test."""
    return {
        **os.environ,
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_DOMAIN_ID": str(domain_id),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "RCUTILS_COLORIZED_OUTPUT": "0",
    }


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll `condition` (another process's output or state, nothing to spin here) until it holds or the
    deadline passes; the last check is made at the deadline, so a slow machine only waits longer."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


class RosHarness:
    """One rclpy Context on its own domain, an executor, and a probe node to publish and listen."""

    def __init__(self, domain_id: int) -> None:
        self.domain_id = domain_id
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.probe = rclpy.create_node("test_probe", context=self.context)
        self.executor.add_node(self.probe)
        self._nodes: list[Node] = [self.probe]

    def add(self, node: Node) -> Node:
        self.executor.add_node(node)
        self._nodes.append(node)
        return node

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for a while (for 'nothing happens' checks)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def spin_until(self, condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile) -> list:
        """Every message on `topic`, appended as it arrives."""
        received: list = []
        self.probe.create_subscription(msg_type, topic, received.append, qos)
        return received

    def publisher(
        self, msg_type: Any, topic: str, qos: QoSProfile, subscribers: int = 1, timeout_s: float = 10.0
    ):
        """A probe publisher, returned once `subscribers` subscriptions have matched it."""
        pub = self.probe.create_publisher(msg_type, topic, qos)
        if not self.spin_until(lambda: pub.get_subscription_count() >= subscribers, timeout_s):
            raise TimeoutError(f"no subscriber matched {topic} in {timeout_s} s")
        return pub

    def close(self) -> None:
        for node in reversed(self._nodes):
            self.executor.remove_node(node)
            node.destroy_node()
        self.executor.shutdown()
        self.context.try_shutdown()


@contextmanager
def ros_harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[RosHarness]:
    """A RosHarness on a fresh domain, with the process environment set to match."""
    domain = unique_domain_id()
    for key, value in ros_test_env(domain).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    harness = RosHarness(domain)
    try:
        yield harness
    finally:
        harness.close()


def diagnostics_from(statuses: list, node_name: str) -> list:
    """DiagnosticStatus entries of one node from collected DiagnosticArray messages."""
    return [s for msg in statuses for s in msg.status if s.name.endswith("/" + node_name)]
