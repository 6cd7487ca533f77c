"""How the package's ROS processes spin: the `main()` every node shares (start, spin, fail loudly on bad
parameters), and the private context, signal-stopped spin and close that the recorder and the Foxglove
bridge share (they must flush a bag or channels on Ctrl-C, so they own the signals, not rclpy)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from vla_accel_ros.params import ParameterError


def run_node(factory: Callable[[], Node], name: str, args: list[str] | None = None) -> None:
    """Spin one node until Ctrl-C, SIGTERM or shutdown; a bad parameter exits with code 2 and a FATAL line.

    The signals are this function's, not rclpy's, and from the start (a signal while the model loads stops
    the node once it is built): rclpy's handler shuts the context down first, and then a node cannot
    publish from `destroy_node` (the controller's last hold on a clean stop needs to)."""
    with stop_on_signals() as stop, rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
        try:
            node = factory()
        except ParameterError as err:
            rclpy.logging.get_logger(name).fatal(str(err))
            raise SystemExit(2) from None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        try:
            spin_until(executor, stop)
        except ExternalShutdownException:
            pass
        except Exception as err:
            if rclpy.ok():  # a failure while running stays a failure (exit code 1, traceback)
                raise
            node.get_logger().info(f"stopped during shutdown ({type(err).__name__}: {err})")
        finally:
            node.destroy_node()
            executor.shutdown()


class ClosableNode(Protocol):
    """A node with files or channels of its own to flush (`close`) before it is destroyed."""

    def close(self) -> None: ...

    def destroy_node(self) -> None: ...


@contextmanager
def private_context() -> Iterator[Context]:
    """An initialised context of its own, without rclpy's signal handlers (the spin below handles SIGINT
    and SIGTERM, so the node is closed before shutdown); shut down on exit whatever happened."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    try:
        yield context
    finally:
        context.try_shutdown()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set while the block runs (the previous handlers come back after)."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def spin_until(
    executor: SingleThreadedExecutor, stop: threading.Event, duration_s: float | None = None
) -> None:
    """Spin until `stop` is set or `duration_s` passes, then run the callbacks that were already ready."""
    end = None if duration_s is None else time.monotonic() + duration_s
    while not stop.is_set() and (end is None or time.monotonic() < end):
        executor.spin_once(timeout_sec=0.05)
    for _ in range(20):
        executor.spin_once(timeout_sec=0.0)


def spin_until_stopped(executor: SingleThreadedExecutor, duration_s: float | None = None) -> None:
    """Spin until SIGINT, SIGTERM or `duration_s`, then run the callbacks that were already ready."""
    with stop_on_signals() as stop:
        spin_until(executor, stop, duration_s)


def spin_then_close(node: ClosableNode, context: Context, duration_s: float | None = None) -> None:
    """Spin `node` on an executor of `context` until stopped (`spin_until_stopped`), then close and destroy
    it even when the spin raised: what it received before the signal is flushed."""
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)  # type: ignore[arg-type]  # a Node that also has close()
    try:
        spin_until_stopped(executor, duration_s)
    finally:
        node.close()
        executor.remove_node(node)  # type: ignore[arg-type]
        node.destroy_node()
        executor.shutdown()
