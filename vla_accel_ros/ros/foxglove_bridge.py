"""Live browser view: the graph's topics on a Foxglove WebSocket server (`vla-accel foxglove`).

RViz2 is not on PyPI; Foxglove (app.foxglove.dev or the desktop app, "Open connection" ->
ws://127.0.0.1:8765) decodes ROS 2 messages itself. Each discovered topic becomes a channel with
encoding `cdr` and a `ros2msg` schema (the full message definition, as in MCAP files), and the raw
CDR bytes of a raw subscription are forwarded without deserializing: images cost one copy.

The server binds to 127.0.0.1 unless a host is given explicitly; it has no authentication, so any
other host exposes the robot's cameras and state to whoever can reach the port.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import foxglove
from rclpy.node import Node

from vla_accel_ros.ros.recorder import DEFAULT_EXCLUDE, TopicWatcher, resolve_type
from vla_accel_ros.ros.spin import private_context, spin_then_close

DEFAULT_PATTERNS = (
    "*/vla/*",
    "/diagnostics",
    "*image_raw*",
    "*/joint_states",
    "*/arm/*",
    "*/instruction",
    "*/sim/*",
)
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def exposure_warning(host: str) -> str | None:
    if host in LOOPBACK:
        return None
    return (
        f"serving on {host}: every client that can reach this address sees the graph's topics, camera "
        "images included, without authentication. Use --host 127.0.0.1 (and an SSH tunnel) unless this "
        "network is trusted."
    )


class FoxgloveBridge(Node):
    """Forwards discovered topics (raw CDR) to Foxglove channels of one SDK context."""

    def __init__(
        self,
        fox_context: Any,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        topics: Sequence[str] | None = None,
        log: Callable[[str], None] = print,
        discovery_period_s: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__("foxglove_bridge", **kwargs)
        from vla_accel_ros.data.bag_io import typestore

        self._fox = fox_context
        self._store = typestore()
        self._log = log
        self._watcher = TopicWatcher(self, topics, include=patterns, exclude=DEFAULT_EXCLUDE)
        self.channels: dict[str, Any] = {}
        self.forwarded = 0
        self.create_timer(discovery_period_s, self._discover)
        self._discover()

    def _discover(self) -> None:
        for topic, msgtype, qos in self._watcher.poll():
            cls, why = resolve_type(self._store, msgtype)
            if why is not None:
                self._log(f"[foxglove] not forwarding {topic}: {why}")
                continue
            text, _ = self._store.generate_msgdef(msgtype, ros_version=2)
            schema = foxglove.Schema(name=msgtype, encoding="ros2msg", data=text.encode("utf-8"))
            channel = foxglove.Channel(topic, schema=schema, message_encoding="cdr", context=self._fox)
            self.channels[topic] = channel
            self.create_subscription(cls, topic, lambda raw, c=channel: self._forward(c, raw), qos, raw=True)
            self._log(f"[foxglove] forwarding {topic} [{msgtype}]")

    def _forward(self, channel: Any, raw: bytes) -> None:
        channel.log(raw, log_time=self.get_clock().now().nanoseconds)
        self.forwarded += 1

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    topics: Sequence[str] | None = None,
    duration_s: float | None = None,
    log: Callable[[str], None] = print,
) -> None:
    """Run the server and the bridge until Ctrl-C, SIGTERM or `duration_s`."""
    fox = foxglove.Context()
    server = foxglove.start_server(name="vla_accel_ros", host=host, port=port, context=fox)
    try:
        with private_context() as context:
            log(f"[foxglove] serving on ws://{host}:{server.port} (open it in Foxglove: Open connection)")
            node = FoxgloveBridge(fox, patterns, topics, log=log, context=context)
            spin_then_close(node, context, duration_s)
            log(f"[foxglove] stopped after forwarding {node.forwarded} messages")
    finally:
        server.stop()
