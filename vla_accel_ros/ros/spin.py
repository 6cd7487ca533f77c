"""The `main()` every node shares: start, spin, and fail loudly on bad parameters."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from vla_accel_ros.ros.params import ParameterError


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Spin one node until Ctrl-C or shutdown; a bad parameter exits with code 2 and a FATAL line."""
    with rclpy.init(args=args):
        try:
            node = factory()
        except ParameterError as err:
            rclpy.logging.get_logger(name).fatal(str(err))
            raise SystemExit(2) from None
        try:
            rclpy.spin(node)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            node.destroy_node()
