"""One DiagnosticStatus per node on /diagnostics at 1 Hz: a standing state plus the problems of the period.

Problems are reported where they happen (a dropped frame, a refused action) with a short key and a
detail; the next report carries the worst level, each key with its count and latest detail, and the
node's key values (rates, drops, latency). A problem is logged the first time its key shows up in a
period of `log_every_s`, so a stream of bad messages does not flood the console.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from vla_accel_ros.ros.qos import vla_qos

OK = 0
WARN = 1
ERROR = 2
STALE = 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


class RateMeter:
    """Events per second over a trailing window (monotonic clock)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._t: deque[float] = deque()
        self.count = 0

    def tick(self, now: float | None = None) -> None:
        self._t.append(time.monotonic() if now is None else now)
        self.count += 1

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self._t and now - self._t[0] > self.window_s:
            self._t.popleft()
        if len(self._t) < 2:
            return 0.0
        span = now - self._t[0]
        return (len(self._t) - 1) / span if span > 0 else 0.0


class Health:
    """Thread-safe status of one node; publishes on /diagnostics every `period_s`."""

    def __init__(self, node: Node, period_s: float = 1.0, log_every_s: float = 5.0) -> None:
        self._node = node
        self._lock = threading.Lock()
        self._state = (OK, "starting")
        self._problems: dict[str, list] = {}  # key -> [level, count, detail]
        self._values: dict[str, str] = {}
        self._logged: dict[str, float] = {}
        self._log_every_s = log_every_s
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", vla_qos())
        self._timer = node.create_timer(period_s, self.publish)

    def set_state(self, level: int, message: str) -> None:
        """The standing condition (e.g. 'loading model', 'running'), kept until changed."""
        with self._lock:
            changed = self._state != (level, message)
            self._state = (level, message)
        if changed and level >= WARN:
            self._log(level, message)

    def report(self, level: int, key: str, detail: str = "") -> None:
        """A problem seen now; it appears in the next status (worst level wins)."""
        with self._lock:
            entry = self._problems.setdefault(key, [level, 0, detail])
            entry[0] = max(entry[0], level)
            entry[1] += 1
            entry[2] = detail or entry[2]
            now = time.monotonic()
            due = now - self._logged.get(key, -1e9) >= self._log_every_s
            if due:
                self._logged[key] = now
        if due:
            self._log(level, f"{key}: {detail}" if detail else key)

    def set_values(self, **values: object) -> None:
        with self._lock:
            for k, v in values.items():
                self._values[k] = f"{v:.3g}" if isinstance(v, float) else str(v)

    def status(self, consume: bool = False) -> DiagnosticStatus:
        with self._lock:
            level, message = self._state
            parts = [message] if message else []
            for key, (plevel, count, detail) in self._problems.items():
                level = max(level, plevel)
                text = f"{key}: {detail}" if detail else key
                parts.append(f"{text} (x{count})" if count > 1 else text)
            values = [KeyValue(key=k, value=v) for k, v in self._values.items()]
            if consume:
                self._problems = {}
        return DiagnosticStatus(
            level=bytes([level]),
            name=self._node.get_fully_qualified_name(),
            message="; ".join(parts),
            hardware_id=self._node.get_name(),
            values=values,
        )

    def publish(self) -> None:
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [self.status(consume=True)]
        self._pub.publish(msg)

    def _log(self, level: int, text: str) -> None:
        logger = self._node.get_logger()
        if level >= ERROR:
            logger.error(text)
        elif level == WARN:
            logger.warning(text)
        else:
            logger.info(text)


def level_of(status: DiagnosticStatus) -> int:
    """DiagnosticStatus.level (a one-byte `bytes`) as an int."""
    lvl = status.level
    return lvl[0] if isinstance(lvl, (bytes, bytearray)) else int(lvl)
