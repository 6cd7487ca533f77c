"""The `main()` every node shares: start, spin, and fail loudly on bad parameters."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from vla_accel_ros.params import ParameterError


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
        except Exception as err:
            if rclpy.ok():  # a failure while running stays a failure (exit code 1, traceback)
                raise
            # Ctrl-C shuts the context down while a callback may still run (a timer publishing on the
            # invalidated context raises): that is a clean stop, not a crash.
            node.get_logger().info(f"stopped during shutdown ({type(err).__name__}: {err})")
        finally:
            node.destroy_node()
