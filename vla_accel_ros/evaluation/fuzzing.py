"""Bad data for the graph's subscriptions: a seeded generator of malformed and extreme messages, and the
tally of a fuzz run (crashes, commands from bad data, responsiveness afterwards) with its report.

ROS-free on purpose: message classes come from the caller and are used through their generated Python
API (default construction, attributes), so this module never imports rclpy. The driver that feeds the
nodes is `vla_accel_ros.commands.fuzz`.

Every case names one *defect* (`<kind>.<defect>`). `must_refuse` cases carry at least one defect a
correct node must never act on (non-finite or non-physical values, malformed images, wrong lengths,
absurd stamps); the others exercise parsing only (huge strings, unknown modes, garbage JSON) and count
for the crash check. Noise (huge or odd strings in fields nobody acts on) is added on top of some cases.
"""

from __future__ import annotations

import json
import math
import random
import struct
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NS = 1_000_000_000
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
HUGE_STRING = 1 << 20  # 1 MiB
ODD_STRINGS = ("", " ", "\t\n", "🤖" * 50, "Ω≈ç√∫", "a" * 4096, "../../etc/passwd", "%s%n{}", "null")


@dataclass
class Case:
    label: str  # "<kind>.<defect>"
    msg: Any
    must_refuse: bool


def type_name(cls: type) -> str:
    """'sensor_msgs/Image' from a generated message class."""
    return f"{cls.__module__.split('.')[0]}/{cls.__name__}"


class BadMessages:
    """Seeded generator of bad messages for the graph's message types.

    `now_ns()` is the receiving node's clock: stamp defects are relative to it (stale, future, backwards
    from the last stamp this generator sent on the same kind of message).
    """

    def __init__(self, seed: int, now_ns: Callable[[], int], action_dim: int = 4, joints: int = 9) -> None:
        self.rng = random.Random(seed)
        self.now_ns = now_ns
        self.action_dim = action_dim
        self.joints = joints
        self._last_stamp: dict[str, int] = {}
        self._makers: dict[str, Callable[[type], Case]] = {
            "sensor_msgs/Image": self._image,
            "sensor_msgs/CompressedImage": self._compressed,
            "sensor_msgs/JointState": self._joint_state,
            "std_msgs/String": self._string,
            "vla_accel_ros/AccelConfig": self._accel_config,
            "vla_accel_ros/KalmanPrediction": self._kalman,
            "vla_accel_ros/VlaAction": self._vla_action,
            "vla_accel_ros/KinematicState": self._kinematic_state,
            "geometry_msgs/TwistStamped": self._twist,
        }

    def knows(self, cls: type) -> bool:
        return type_name(cls) in self._makers

    def make(self, cls: type, topic: str = "") -> Case:
        maker = self._makers.get(type_name(cls))
        if maker is None:
            raise KeyError(f"no bad-data generator for {type_name(cls)}")
        case = maker(cls)
        if topic.endswith("sim/episode"):
            case = self._episode(cls)
        return case

    # -- values ----------------------------------------------------------------------------------------
    def _pick(self, options: dict[str, Callable[[], Any]]) -> tuple[str, Any]:
        name = self.rng.choice(sorted(options))
        return name, options[name]()

    def _odd_string(self) -> str:
        r = self.rng.random()
        if r < 0.15:
            return "x" * HUGE_STRING
        if r < 0.3:
            return "".join(chr(self.rng.randrange(1, 0xD7FF)) for _ in range(self.rng.randrange(1, 200)))
        return self.rng.choice(ODD_STRINGS)

    def _bad_float(self) -> float:
        return self.rng.choice([math.nan, math.inf, -math.inf, -math.nan])

    def _huge_float(self) -> float:
        return self.rng.choice([1.0, -1.0]) * 10.0 ** self.rng.uniform(5, 308)

    def _wrong_length(self, good: int) -> int:
        return self.rng.choice(
            [n for n in (0, 1, good - 1, good + 1, 3 * good, 1000) if n != good and n >= 0]
        )

    # -- stamps ----------------------------------------------------------------------------------------
    def _fresh_ns(self) -> int:
        return self.now_ns()

    def _bad_stamp(self, kind: str) -> tuple[str, int, int]:
        """(defect, sec, nanosec) of a stamp no node may treat as current."""
        now = self.now_ns()
        last = self._last_stamp.get(kind, now)
        options: dict[str, Callable[[], tuple[int, int]]] = {
            "zero_stamp": lambda: (0, 0),
            "negative_stamp": lambda: (-self.rng.randrange(1, INT32_MAX), self.rng.randrange(0, NS)),
            "stale_stamp": lambda: divmod(now - int(self.rng.uniform(5, 1e6) * NS), NS),
            "future_stamp": lambda: divmod(now + int(self.rng.uniform(5, 1e6) * NS), NS),
            "far_future_stamp": lambda: (INT32_MAX, NS - 1),
            "backwards_stamp": lambda: divmod(min(last, now) - int(self.rng.uniform(2, 600) * NS), NS),
        }
        name, (sec, nanosec) = self._pick(options)
        return name, int(sec), int(nanosec)

    def _stamp(self, header: Any, kind: str, ns: int | None = None) -> None:
        ns = self._fresh_ns() if ns is None else ns
        header.stamp.sec, header.stamp.nanosec = divmod(ns, NS)
        self._last_stamp[kind] = ns

    def _set_bad_stamp(self, header: Any, kind: str) -> str:
        name, sec, nanosec = self._bad_stamp(kind)
        header.stamp.sec, header.stamp.nanosec = sec, nanosec
        return name

    def _noise_frame(self, header: Any) -> None:
        if self.rng.random() < 0.2:
            header.frame_id = self._odd_string()

    # -- images ----------------------------------------------------------------------------------------
    def _valid_image(self, msg: Any, size: int = 16) -> None:
        msg.height, msg.width, msg.encoding, msg.step = size, size, "rgb8", 3 * size
        msg.data = bytes(self.rng.getrandbits(8) for _ in range(3 * size * size))

    def _image(self, cls: type) -> Case:
        msg = cls()
        self._valid_image(msg)
        self._stamp(msg.header, "image")
        rng = self.rng

        def wrong_size() -> None:
            n = msg.step * msg.height
            data = bytes(msg.data)
            msg.data = data[: rng.randrange(0, n)] if rng.random() < 0.5 else data + bytes(7)

        def empty() -> None:
            msg.height, msg.width, msg.step = rng.choice([(0, 0, 0), (0, 16, 48), (16, 0, 0)])
            msg.data = b""

        def bad_encoding() -> None:
            msg.encoding = rng.choice(["16UC1", "rgba8", "yuv422", "", "RGB8", "bayer_rggb8", "32FC1"])

        def bad_step() -> None:
            msg.step = rng.randrange(0, msg.width * 3)

        def huge_dims() -> None:  # header claims far more pixels than the data holds
            msg.height, msg.width = (
                rng.choice([UINT32_MAX, 1 << 20, 65536]),
                rng.choice([UINT32_MAX, 1 << 16]),
            )
            msg.step = min(UINT32_MAX, msg.width * 3)

        def too_small() -> None:
            n = rng.randrange(1, 8)
            msg.height, msg.width, msg.step = n, n, 3 * n
            msg.data = bytes(3 * n * n)

        name, _ = self._pick(
            {
                "wrong_size": wrong_size,
                "empty": empty,
                "bad_encoding": bad_encoding,
                "bad_step": bad_step,
                "huge_dims": huge_dims,
                "too_small": too_small,
                "stamp": lambda: None,
            }
        )
        if name == "stamp":
            name = self._set_bad_stamp(msg.header, "image")
        self._noise_frame(msg.header)
        return Case(f"image.{name}", msg, True)

    def _compressed(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "image")
        msg.format = "png"
        rng = self.rng
        options: dict[str, Callable[[], bytes]] = {
            "empty": lambda: b"",
            "garbage": lambda: bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 4096))),
            "truncated_png": lambda: truncated_png(rng),
            "decompression_bomb": lambda: png_header_only(
                *rng.choice([(30000, 30000), (65535, 30000), (9500, 9500)])
            ),
            "too_small": lambda: png(rng.randrange(1, 8), rng.randrange(1, 8)),
            "stamp": lambda: png(16, 16),
        }
        name, msg.data = self._pick(options)
        if name == "stamp":
            name = self._set_bad_stamp(msg.header, "image")
        if rng.random() < 0.2:
            msg.format = self._odd_string()
        self._noise_frame(msg.header)
        return Case(f"compressed.{name}", msg, True)

    # -- joint states ----------------------------------------------------------------------------------
    def _joint_state(self, cls: type) -> Case:
        msg = cls()
        n = self.joints
        msg.name = [f"joint_{i}" for i in range(n)]
        msg.position = [self.rng.uniform(-1, 1) for _ in range(n)]
        self._stamp(msg.header, "joints")
        rng = self.rng

        def non_finite() -> None:
            pos = list(msg.position)
            for i in rng.sample(range(n), rng.randrange(1, n + 1)):
                pos[i] = self._bad_float()
            msg.position = pos

        def huge() -> None:
            pos = list(msg.position)
            pos[rng.randrange(n)] = self._huge_float()
            msg.position = pos

        def names_mismatch() -> None:
            msg.name = msg.name[: self._wrong_length(n) % (n + 5)] or ["only_one", "two"]
            if len(msg.name) == n:
                msg.name = msg.name + ["extra"]

        def wrong_length() -> None:
            k = self._wrong_length(n)
            msg.position = [rng.uniform(-1, 1) for _ in range(k)]
            msg.name = [f"joint_{i}" for i in range(k)] if rng.random() < 0.5 else []

        name, _ = self._pick(
            {
                "non_finite": non_finite,
                "huge": huge,
                "names_mismatch": names_mismatch,
                "wrong_length": wrong_length,
                "stamp": lambda: None,
            }
        )
        if name == "stamp":
            name = self._set_bad_stamp(msg.header, "joints")
        if rng.random() < 0.3:  # fields no node reads: any length, any value
            msg.velocity = [self._bad_float() for _ in range(rng.randrange(0, 20))]
            msg.effort = [self._huge_float() for _ in range(rng.randrange(0, 20))]
        self._noise_frame(msg.header)
        return Case(f"joint_state.{name}", msg, True)

    # -- strings ---------------------------------------------------------------------------------------
    def _string(self, cls: type) -> Case:
        msg = cls()
        name, msg.data = self._pick(
            {
                "empty": lambda: "",
                "whitespace": lambda: self.rng.choice([" ", "\n\t ", "   \r\n"]),
                "huge": lambda: "reach " * (HUGE_STRING // 6),
                "odd": self._odd_string,
            }
        )
        return Case(f"instruction.{name}", msg, name in ("empty", "whitespace"))

    def _episode(self, cls: type) -> Case:
        msg = cls()
        rng = self.rng
        bad_stamps: list[Any] = ["x", None, [], {}, -1, 2**70, 1e300, -1e300, 1.5, True, "1e400"]
        options: dict[str, Callable[[], str]] = {
            "not_json": lambda: rng.choice(["{", "start", "", "\x00", "{'event': 'start'}"]),
            "not_object": lambda: json.dumps(rng.choice([[1, 2], "start", 3, None, True])),
            "bad_stamp": lambda: json.dumps(
                {"event": "start", "episode": rng.choice([1, "x", None]), "stamp_ns": rng.choice(bad_stamps)}
            ),
            "bad_event": lambda: json.dumps({"event": rng.choice([None, 1, [], "START", "end"])}),
            "huge": lambda: json.dumps({"event": "start", "task": "x" * HUGE_STRING}),
            "nan": lambda: '{"event": "start", "stamp_ns": NaN}',
            "infinity": lambda: '{"event": "start", "stamp_ns": Infinity}',
        }
        name, msg.data = self._pick(options)
        return Case(f"episode.{name}", msg, False)

    # -- /vla messages ---------------------------------------------------------------------------------
    def _accel_config(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "config")
        msg.precision, msg.decoding, msg.threshold, msg.reason = "fp32", "ar", 0.0, "fuzz"
        rng = self.rng

        def stamp() -> None:
            self._set_bad_stamp(msg.header, "config")

        name, _ = self._pick(
            {
                "unknown_precision": lambda: setattr(msg, "precision", self._odd_string()),
                "unknown_decoding": lambda: setattr(msg, "decoding", self._odd_string()),
                "non_finite_threshold": lambda: setattr(msg, "threshold", self._bad_float()),
                "huge_threshold": lambda: setattr(msg, "threshold", rng.choice([-1.0, 1e30, -1e30, 3e38])),
                "huge_reason": lambda: setattr(msg, "reason", "x" * HUGE_STRING),
                "stamp": stamp,
            }
        )
        return Case(f"accel_config.{name}", msg, False)

    def _kalman(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "prediction")
        d = self.action_dim
        msg.action = [0.1] * d
        msg.variance = [0.01] * d
        msg.history_length, msg.valid = 5, True
        rng = self.rng
        name, _ = self._pick(
            {
                "non_finite": lambda: setattr(msg, "action", [self._bad_float() for _ in range(d)]),
                "huge": lambda: setattr(msg, "action", [self._huge_float() for _ in range(d)]),
                "wrong_length": lambda: setattr(msg, "action", [0.1] * self._wrong_length(d)),
                "bad_variance": lambda: setattr(msg, "variance", [self._bad_float()] * rng.randrange(0, 9)),
                "stamp": lambda: self._set_bad_stamp(msg.header, "prediction"),
            }
        )
        return Case(f"kalman_prediction.{name}", msg, False)

    def _vla_action(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "action")
        self._stamp_image(msg, self._fresh_ns())
        d = self.action_dim
        msg.action = [0.1, 0.0, -0.1, 0.5][:d] + [0.0] * max(0, d - 4)
        msg.precision, msg.decoding = "fp32", "ar"
        rng = self.rng

        def non_finite() -> None:
            a = list(msg.action)
            a[rng.randrange(d)] = self._bad_float()
            msg.action = a

        def wrong_length() -> None:
            msg.action = [0.1] * self._wrong_length(d)

        def image_stamp() -> str:
            defect, sec, nanosec = self._bad_stamp("action_image")
            msg.image_stamp.sec, msg.image_stamp.nanosec = sec, nanosec
            return defect

        def huge() -> None:  # finite, far outside every limit: clipped by the controller and the arm
            msg.action = [self._huge_float() for _ in range(d)]

        name, detail = self._pick(
            {"non_finite": non_finite, "wrong_length": wrong_length, "image_stamp": image_stamp, "huge": huge}
        )
        if name == "image_stamp":
            name = f"image_{detail}"
        if rng.random() < 0.3:  # statistics nobody acts on
            msg.stage_names = [self._odd_string() for _ in range(rng.randrange(0, 5))]
            msg.stage_ms = [self._bad_float() for _ in range(rng.randrange(0, 5))]
            msg.total_ms = self._bad_float()
            msg.fallback_reason = self._odd_string()
        return Case(f"vla_action.{name}", msg, name != "huge")

    def _stamp_image(self, msg: Any, ns: int) -> None:
        msg.image_stamp.sec, msg.image_stamp.nanosec = divmod(ns, NS)

    def _kinematic_state(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "kinematics")
        fields = ("translation_speed", "angular_jerk", "motion_fineness", "sensitivity", "fluctuation")
        name = self.rng.choice(["non_finite", "huge", "joint_arrays", "stamp"])
        if name in ("non_finite", "huge"):
            for f in self.rng.sample(fields, self.rng.randrange(1, len(fields) + 1)):
                setattr(msg, f, self._bad_float() if name == "non_finite" else self._huge_float())
        elif name == "joint_arrays":
            msg.joint_names = [self._odd_string() for _ in range(self.rng.randrange(0, 4))]
            msg.joint_velocity = [self._bad_float() for _ in range(self.rng.randrange(0, 30))]
        else:
            name = self._set_bad_stamp(msg.header, "kinematics")
        return Case(f"kinematic_state.{name}", msg, False)

    def _twist(self, cls: type) -> Case:
        msg = cls()
        self._stamp(msg.header, "twist")
        lin = msg.twist.linear
        name = self.rng.choice(["non_finite", "huge"])
        axis = self.rng.choice("xyz")
        setattr(lin, axis, self._bad_float() if name == "non_finite" else self._huge_float())
        self._noise_frame(msg.header)
        return Case(f"twist.{name}", msg, name == "non_finite")


# --- tiny PNGs (no Pillow needed to make them) -------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height RGB pixels and holds almost none (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_png(rng: random.Random) -> bytes:
    """A 16 x 16 PNG cut short in the first half of its pixel data (signature 8 + IHDR 25 + IDAT head 8)."""
    data = png(16, 16)
    pixels = len(data) - 41 - 4 - 12  # IDAT payload: after its head, before its CRC and IEND
    return data[: rng.randrange(8, 41 + pixels // 2)]


def png(width: int, height: int) -> bytes:
    """A valid width x height RGB PNG (grey)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


# --- the tally and the report -------------------------------------------------------------------------


@dataclass
class Crash:
    node: str
    topic: str
    label: str
    error: str


@dataclass
class FuzzReport:
    """What a fuzz run saw. `ok` needs zero crashes, zero commands from bad data, every node responsive."""

    seed: int
    messages: int = 0
    unsendable: int = 0  # generated messages that cannot be serialized (never reach a node over DDS)
    duration_s: float = 0.0
    per_topic: Counter = field(default_factory=Counter)  # "node topic" -> messages
    per_label: Counter = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)
    mixed_steps: int = 0  # steps run with one bad input among fresh good ones
    commands_from_bad_data: list[str] = field(default_factory=list)  # what reached an arm (or the policy)
    passed_by_design: Counter = field(default_factory=Counter)  # why -> commands that were right to pass
    worker_errors: int = 0  # exceptions inside an inference step (caught by the node, reported as ERROR)
    holds_in_window: int = 0  # watchdog holds while only bad data arrived (expected)
    non_finite_outputs: list[str] = field(default_factory=list)
    responsive: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.crashes
            and not self.commands_from_bad_data
            and not self.non_finite_outputs
            and bool(self.responsive)
            and all(self.responsive.values())
        )

    def crash(self, node: str, topic: str, label: str, err: BaseException) -> None:
        self.crashes.append(Crash(node, topic, label, f"{type(err).__name__}: {str(err)[:300]}"))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["per_topic"] = dict(sorted(self.per_topic.items()))
        data["per_label"] = dict(sorted(self.per_label.items()))
        data["passed_by_design"] = dict(self.passed_by_design)
        data["ok"] = self.ok
        data["crash_count"] = len(self.crashes)
        data["crashes"] = data["crashes"][:50]
        data["commands_from_bad_data_count"] = len(self.commands_from_bad_data)
        data["commands_from_bad_data"] = self.commands_from_bad_data[:50]
        return data

    def markdown(self) -> str:
        by_error = Counter(f"{c.node} {c.topic}: {c.error.split(':')[0]} ({c.label})" for c in self.crashes)
        lines = [
            f"- messages: **{self.messages}** bad messages (seed {self.seed}) in {self.duration_s:.1f} s, "
            f"into {len([k for k in self.per_topic if 'among good' not in k])} subscription callbacks of 7 "
            f"nodes; {self.unsendable} more could not be "
            "serialized (never reach a node) and were skipped",
            f"- of them, {self.mixed_steps} were one bad camera frame or joint state among fresh good "
            "inputs, each followed by an inference step",
            f"- crashes (exceptions escaping a callback): **{len(self.crashes)}**",
            f"- commands to the arm (or actions from the policy) caused by bad data: "
            f"**{len(self.commands_from_bad_data)}**",
            *(f"- passed on by design: {n} x {why}" for why, n in sorted(self.passed_by_design.items())),
            f"- watchdog holds while only bad data arrived: {self.holds_in_window}",
            f"- inference steps that raised (caught and reported by the node): {self.worker_errors}",
            f"- non-finite values in the nodes' outputs: {len(self.non_finite_outputs)}",
            "- responsive afterwards (acts on good data): "
            + ", ".join(f"{k} {'yes' if v else '**NO**'}" for k, v in sorted(self.responsive.items())),
        ]
        lines += [f"- crash: {k} x{n}" for k, n in by_error.most_common(10)]
        lines += [f"- bad data acted on: {c}" for c in self.commands_from_bad_data[:10]]
        lines += [f"- note: {n}" for n in self.notes]
        lines.append("")
        lines.append("| subscription (node topic) | messages |")
        lines.append("|---|---:|")
        lines += [f"| {k} | {v} |" for k, v in sorted(self.per_topic.items())]
        lines.append("")
        lines.append("| defect | messages |")
        lines.append("|---|---:|")
        lines += [f"| {k} | {v} |" for k, v in sorted(self.per_label.items())]
        return "\n".join(lines)


def write_doc_section(doc: Path, key: str, title: str, body: str) -> None:
    """Replace (or append) the section `key` of a generated document; other sections stay, and the header
    is rewritten from RELIABILITY_HEADER."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n## {title}\n\n{body.rstrip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    first = text.find("<!-- ")
    sections = text[first:].strip() if first >= 0 else ""
    if begin in sections and end in sections:
        head, rest = sections.split(begin, 1)
        sections = head + block + rest.split(end, 1)[1]
    else:
        sections = (sections + "\n\n" + block).strip()
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(RELIABILITY_HEADER.rstrip() + "\n\n" + sections + "\n", encoding="utf-8")


RELIABILITY_HEADER = """# Reliability: bad data, load and soak

Generated by `vla-accel fuzz` and `vla-accel soak` (each rewrites its own section below; the raw figures
are in docs/results/reliability_*.json). All of it ran on a shared, loaded machine with 2 CPU cores (a
model was training beside it), with DDS on loopback only: absolute rates and latencies are those of that
machine, not of a robot computer. Faults (dead, hung or slow nodes, a camera that stops or lies about
time, a model that does not load, a dropped link between two hosts) are tests: test/test_faults.py and
test/test_two_host.py; docs/DEPLOYMENT.md says what a robot sees in each case.

What these runs found, now fixed in the nodes (the fuzz and fault tests keep them fixed):
- crashes: a `sim/episode` event with a stamp that is not an int64 (NaN, Infinity, a string, 2**70)
  raised out of the controller's and the kinematics node's callbacks; a PNG declaring 30000 x 30000
  pixels raised PIL's DecompressionBombError out of the inference node (compressed transport); a
  `vla/kalman_prediction` of the wrong length was stored and crashed the controller's next good action
  (markers);
- commands from bad data: the controller passed actions whose camera image was stale, from the future,
  zero or negative (e.g. a backlog delivered after a link outage); the simulated arm stepped on commands
  for observations it never made;
- poisoning: one joint state or camera frame stamped far in the future made every later, correct one
  look like it went backwards (the inference node then acted on a frozen input that never went stale);
  an episode start stamped in the future made the kinematics node ignore every executed action;
- slow hold: the watchdog checked every T/4 from start-up, so the first hold came up to 1.25 T after the
  last action; its timer now restarts with each command (first hold one period T after it);
- runtime fallbacks (a precision or decoding that failed inside the policy) were flagged in the
  VlaAction but not reported on /diagnostics; non-physical joint positions (|q| > 1e4) were accepted.

Known and left as designed: a huge finite action is clipped to the limits and passed on (SafetyGuard's
policy), not refused; after an episode start the kinematics node takes the first joint set it receives as
the arm's, so a malformed set arriving first stays until the next start (its joint derivatives only; the
proxies come from executed actions). Fault latencies measured by the tests are in
docs/results/reliability_faults.json.
"""


def stand_in_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A small random checkpoint (the built-in model's interface) for runs on machines without it."""
    import torch

    from vla_accel_ros.policy.checkpoint import save_checkpoint
    from vla_accel_ros.policy.config import tiny_config
    from vla_accel_ros.policy.model import VlaModel
    from vla_accel_ros.sim.tasks import TASKS

    config = tiny_config(list(TASKS.values()))
    torch.manual_seed(seed)
    save_checkpoint(
        VlaModel(config).eval(), directory, card="Random stand-in weights for reliability runs.\n"
    )
    return directory
