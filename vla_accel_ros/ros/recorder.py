"""Record the graph's topics into a rosbag2 bag without the ros2 CLI (`vla-accel record`).

Raw (CDR) subscriptions feed a rosbags Writer directly: nothing is deserialized, so any message type
the typestore knows (ROS 2 Kilted, this package's msg/, or a `share/<pkg>/msg/<Type>.msg` found in an
installed prefix) is recorded. Topics are discovered from the graph while recording; each subscription
takes the QoS of the publishers it finds (reliable and transient-local only if every publisher offers
it), as `ros2 bag record` does. Bag stamps are receive times on the node's clock (sim time with
--use-sim-time). SIGINT and SIGTERM stop the spin loop and close the bag, so everything received
before the signal is in a readable bag.

The writer is vla_accel_ros.data.recording_writer.RecordingWriter: with `max_bag_bytes` the bag is split
into files of about that size (`ros2 bag record -b`), and a write error (a full disk, a file size limit)
closes the bag readable with what reached the disk, logs what was lost, and ends the recording with
BagWriteError (`vla-accel record` exits 1).

`TopicWatcher` (discovery + QoS adaptation) is shared with the Foxglove bridge.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
import sys
import sysconfig
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from vla_accel_ros.ros.spin import private_context, spin_then_close

DEFAULT_EXCLUDE = ("/rosout", "/parameter_events")


def message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy message class (ImportError/AttributeError if not installed)."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _msg_file(msgtype: str) -> Path | None:
    pkg, _, name = msgtype.split("/")
    prefixes = [sys.prefix, sysconfig.get_path("data")]
    prefixes += [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for prefix in prefixes:
        path = Path(prefix) / "share" / pkg / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    return None


def ensure_type(store: Any, msgtype: str) -> str | None:
    """Make `msgtype` known to the rosbags typestore; returns why not when it cannot be."""
    if msgtype in store.types:
        return None
    path = _msg_file(msgtype)
    if path is None:
        return f"no definition of {msgtype} (share/<pkg>/msg/*.msg) in any installed prefix"
    from rosbags.typesys import get_types_from_msg

    try:
        store.register(get_types_from_msg(path.read_text(encoding="utf-8"), msgtype))
        store.generate_msgdef(msgtype, ros_version=2)  # fails now if a dependency is unknown
    except Exception as err:  # noqa: BLE001 - any failure means: not recordable
        return f"cannot register {msgtype} from {path}: {err}"
    return None


def resolve_type(store: Any, msgtype: str) -> tuple[Any, str | None]:
    """(message class, None) for a type both rosbags and rclpy know, else (None, why not)."""
    why = ensure_type(store, msgtype)
    try:
        cls = message_class(msgtype)
    except (ImportError, AttributeError, ValueError) as err:
        return None, why or f"no Python message class for {msgtype} ({err})"
    return (cls, None) if why is None else (None, why)


def adapted_qos(node: Node, topic: str, depth: int = 100) -> QoSProfile | None:
    """A subscription QoS every current publisher of `topic` matches (None: no publisher yet)."""
    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def describe_qos(qos: QoSProfile) -> str:
    rel = "reliable" if qos.reliability == ReliabilityPolicy.RELIABLE else "best effort"
    dur = "latched" if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL else "volatile"
    return f"{rel}, {dur}"


class TopicWatcher:
    """Finds topics to subscribe to: an exact list, or every topic matching `include` patterns.

    A topic is offered once, when it has a publisher and a single type; `poll()` returns the new ones
    with a QoS adapted to their publishers.
    """

    def __init__(
        self,
        node: Node,
        topics: Sequence[str] | None = None,
        include: Sequence[str] = ("*",),
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
    ) -> None:
        self.node = node
        self.exact = [t if t.startswith("/") else "/" + t for t in topics] if topics else None
        self.include, self.exclude = tuple(include), tuple(exclude)
        self.taken: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    def wanted(self, topic: str) -> bool:
        if self.exact is not None:
            return topic in self.exact
        if any(fnmatch.fnmatchcase(topic, p) for p in self.exclude):
            return False
        return any(fnmatch.fnmatchcase(topic, p) for p in self.include)

    def poll(self) -> list[tuple[str, str, QoSProfile]]:
        new = []
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.taken or topic in self.skipped or not self.wanted(topic):
                continue
            if len(types) != 1:
                self.skipped[topic] = f"several types {types}"
                continue
            qos = adapted_qos(self.node, topic)
            if qos is None:
                continue  # only subscribers so far: wait for a publisher to learn its QoS
            self.taken[topic] = types[0]
            new.append((topic, types[0], qos))
        return new

    def missing(self) -> list[str]:
        return [t for t in self.exact or [] if t not in self.taken]


class Recorder(Node):
    """Subscribes (raw) to discovered topics and writes every message into one bag."""

    def __init__(
        self,
        out: Path,
        topics: Sequence[str] | None = None,
        exclude: Sequence[str] = DEFAULT_EXCLUDE,
        storage: str = "mcap",
        use_sim_time: bool = False,
        discovery_period_s: float = 0.25,
        log: Callable[[str], None] = print,
        max_bag_bytes: int | None = None,
        **kwargs: Any,
    ) -> None:
        from rosbags.rosbag2.enums import StoragePlugin

        from vla_accel_ros.data.bag_io import typestore
        from vla_accel_ros.data.recording_writer import RecordingWriter

        if Path(out).exists():
            raise FileExistsError(f"{out} exists already; rosbag2 bags are never overwritten")
        overrides = [Parameter("use_sim_time", value=True)] if use_sim_time else []
        super().__init__("vla_accel_recorder", parameter_overrides=overrides, **kwargs)
        self.out = Path(out)
        self._store = typestore()
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = RecordingWriter(self.out, plugin, max_bag_bytes)
        self._writer.open()
        self._log = log
        self._lock = threading.Lock()
        self._closed = False
        self.error: BaseException | None = None  # the BagWriteError that ended the recording
        self.counts: Counter[str] = Counter()
        self._reported = -1
        self._watcher = TopicWatcher(self, topics, exclude=exclude)
        self._subs: list[Any] = []
        self.create_timer(discovery_period_s, self._discover)
        self.create_timer(0.2, self._report)
        self._discover()

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _discover(self) -> None:
        for topic, msgtype, qos in self._watcher.poll():
            cls, why = resolve_type(self._store, msgtype)
            if why is not None:
                self._log(f"[record] not recording {topic}: {why}")
                continue
            with self._lock:
                conn = self._writer.add_connection(topic, msgtype, typestore=self._store)
            self._subs.append(
                self.create_subscription(cls, topic, lambda raw, c=conn: self._write(c, raw), qos, raw=True)
            )
            self._log(f"[record] recording {topic} [{msgtype}] ({describe_qos(qos)})")

    def _write(self, conn: Any, raw: bytes) -> None:
        from vla_accel_ros.data.recording_writer import WRITE_ERRORS

        stamp = self.get_clock().now().nanoseconds
        with self._lock:
            if self._closed:
                return
            files = len(self._writer.files)
            try:
                self._writer.write(conn, stamp, raw)
            except WRITE_ERRORS as err:
                self.counts[conn.topic] += 1
                raise self._fail(err) from err  # the spin ends; the bag is closed
            self.counts[conn.topic] += 1
            if len(self._writer.files) > files:
                done = self._writer.files[-1]
                self._log(f"[record] split: {done['path']} closed ({done['message_count']} messages)")

    def _fail(self, err: BaseException) -> BaseException:
        """A write error: close the bag readable with what reached the disk, say so; returns the
        BagWriteError (also kept in `error`) for the caller to raise. Called with the lock held."""
        from vla_accel_ros.data.recording_writer import WRITE_ERRORS, BagWriteError

        self._closed = True
        received = self.total
        try:
            lost = self._writer.salvage()
        except WRITE_ERRORS as again:
            message = (
                f"cannot write {self.out}: {err}; closing it failed too ({again}): its last file is not "
                "readable (earlier split files are)"
            )
        else:
            message = (
                f"cannot write {self.out}: {err}. Recording stopped; the bag is closed and readable with "
                f"the {self._writer.message_count} messages written before the error ({lost} of the "
                f"{received} received had not reached the disk and are lost)"
            )
        self._log(f"[record] error: {message}")
        self.error = BagWriteError(message)
        return self.error

    def _report(self) -> None:
        total = self.total
        if total != self._reported:
            self._reported = total
            self._log(f"[record] {total} messages")

    def close(self) -> None:
        """Close the bag (idempotent); later messages are dropped."""
        from vla_accel_ros.data.recording_writer import WRITE_ERRORS

        with self._lock:
            if self._closed:
                return
            try:
                self._writer.close()
            except WRITE_ERRORS as err:
                self._fail(err)  # record() raises it once the node is destroyed
                return
            self._closed = True
        for topic in self._watcher.missing():
            self._log(f"[record] warning: {topic} never appeared")
        per_topic = ", ".join(f"{t} {n}" for t, n in sorted(self.counts.items())) or "none"
        files = len(self._writer.files)
        split = f" in {files} files" if files > 1 else ""
        self._log(f"[record] wrote {self.out}: {self.total} messages{split} ({per_topic})")


def record(
    out: Path,
    topics: Sequence[str] | None = None,
    duration_s: float | None = None,
    storage: str = "mcap",
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    use_sim_time: bool = False,
    log: Callable[[str], None] = print,
    max_bag_bytes: int | None = None,
) -> int:
    """Record until Ctrl-C, SIGTERM or `duration_s`; returns the number of messages written (a write
    error: BagWriteError, after the bag was closed readable)."""
    with private_context() as context:
        node = Recorder(
            out,
            topics,
            exclude,
            storage,
            use_sim_time,
            log=log,
            max_bag_bytes=max_bag_bytes,
            context=context,
        )
        spin_then_close(node, context, duration_s)
        if node.error is not None:
            raise node.error
        return node.total
