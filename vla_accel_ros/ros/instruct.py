"""Send the graph a task: publish one instruction, latched, and wait until the inference node has it.

The inference node subscribes to `instruction` twice (latched and plain, see inference_node), so any
publisher reaches it; this helper publishes latched (reliable, transient-local) so that a node that
starts later still gets the task, and it returns only once every matched subscriber acknowledged the
message, instead of exiting before discovery as a bare one-shot publish would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from vla_accel_ros.ros.qos import instruction_qos
from vla_accel_ros.ros.spin import private_context


@dataclass
class InstructResult:
    """What happened to the instruction: how many subscribers had it acknowledged, and in what time."""

    subscribers: int
    acknowledged: bool
    waited_s: float


def send_instruction(text: str, namespace: str = "", timeout_s: float = 10.0) -> InstructResult:
    """Publish `text` on `<namespace>/instruction` once a subscriber is matched (within `timeout_s`),
    then wait for its acknowledgement (reliable QoS). No subscriber in time: nothing is published."""
    with private_context() as context:
        node = Node("vla_instruct", namespace=namespace or "/", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            pub = node.create_publisher(String, "instruction", instruction_qos())
            start = time.monotonic()
            while pub.get_subscription_count() == 0 and time.monotonic() - start < timeout_s:
                executor.spin_once(timeout_sec=0.05)
            subscribers = pub.get_subscription_count()
            if subscribers == 0:
                return InstructResult(0, False, time.monotonic() - start)
            pub.publish(String(data=text))
            remaining = max(0.1, timeout_s - (time.monotonic() - start))
            acked = pub.wait_for_all_acked(timeout=Duration(nanoseconds=int(remaining * 1e9)))
            return InstructResult(subscribers, bool(acked), time.monotonic() - start)
        finally:
            executor.remove_node(node)
            node.destroy_node()
            executor.shutdown()
