"""History, depth and reliability of every endpoint of the robot graph's nodes, for `vla-accel soak`'s
bounded-queue check. DDS discovery does not carry history or depth, so the nodes are built here (no model
loaded) with the run's parameters and their rclpy endpoints are read."""

from __future__ import annotations

from typing import Any

import rclpy
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions

from vla_accel_ros.evaluation.soak import Endpoint
from vla_accel_ros.ros.controller_node import ControllerNode
from vla_accel_ros.ros.inference_node import InferenceNode
from vla_accel_ros.ros.kinematics_node import KinematicsNode


def _no_model(_p: Any) -> Any:
    raise RuntimeError("not loaded: this copy of the node only lists its QoS (vla-accel soak)")


def local_endpoints(overrides: dict[str, dict[str, Any]], domain: int) -> list[Endpoint]:
    """History, depth and reliability of every publisher and subscription of the three nodes, read from
    node objects built here with the run's parameters (DDS discovery does not carry history or depth)."""
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    out = []
    try:
        for cls, name in (
            (InferenceNode, "inference_node"),
            (KinematicsNode, "kinematics_node"),
            (ControllerNode, "controller_node"),
        ):
            params = [Parameter(k, value=v) for k, v in overrides.get(name, {}).items() if k != "model_path"]
            kwargs = {"policy_loader": _no_model} if cls is InferenceNode else {}
            node = cls(context=context, namespace="/qos_census", parameter_overrides=params, **kwargs)
            for kind, endpoints in (("publisher", node.publishers), ("subscription", node.subscriptions)):
                for e in endpoints:
                    q = e.qos_profile
                    out.append(
                        Endpoint(
                            name,
                            e.topic_name.removeprefix("/qos_census"),
                            kind,
                            "KEEP_LAST" if q.history == HistoryPolicy.KEEP_LAST else q.history.name,
                            int(q.depth),
                            "reliable" if q.reliability == ReliabilityPolicy.RELIABLE else "best effort",
                        )
                    )
            node.destroy_node()
    finally:
        context.try_shutdown()
    return out
