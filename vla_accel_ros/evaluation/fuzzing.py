"""Bad data for the graph's subscriptions: a seeded generator of malformed and extreme messages.

ROS-free on purpose: message classes come from the caller and are used through their generated Python
API (default construction, attributes), so this module never imports rclpy. The driver that feeds the
nodes is `vla_accel_ros.ros.fuzz_driver`; the tally and report are in `vla_accel_ros.evaluation.fuzz_report`.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NS = 1_000_000_000
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1
HUGE_STRING = 1 << 20  # 1 MiB
ODD_STRINGS = ("", " ", "\t\n", "🤖" * 50, "Ω≈ç√∫", "a" * 4096, "../../etc/passwd", "%s%n{}", "null")
# What the fuzzed controllers declare (vla_accel_ros.ros.fuzz_targets), so defects can be made just
# outside it: the workspace box (m, in FRAME) of the ee_pose input, and |q| of the joint_trajectory joints.
WORKSPACE_BOX = ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5))
FRAME = "base_link"
JOINT_LIMIT = 2.0
# Physical joint states only a joint guard can judge (the joint_trajectory controller's, which knows the
# limits and the previous state): not `must_refuse` for the graph, but that controller must refuse them.
JOINT_GUARD_DEFECTS = ("joint_state.jump", "joint_state.beyond_limits")


@dataclass
class Case:
    """One fuzzed message with what the graph must do with it (refuse it, or merely survive it)."""

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
        self._last_joints: list[float] | None = None  # the previous joint state's positions (jumps)
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
            "geometry_msgs/PoseStamped": self._pose,
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

    def _mutate_or_bad_stamp(self, mutations: dict[str, Callable[[], Any]], header: Any, kind: str) -> str:
        """Run one of `mutations` on the payload, or (as one more equally likely choice, "stamp") break the
        header's stamp instead; returns the case name. The draw is the same as `_pick` over all of them."""
        name, _ = self._pick({**mutations, "stamp": lambda: None})
        return self._set_bad_stamp(header, kind) if name == "stamp" else name

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

        mutations = {
            "wrong_size": wrong_size,
            "empty": empty,
            "bad_encoding": bad_encoding,
            "bad_step": bad_step,
            "huge_dims": huge_dims,
            "too_small": too_small,
        }
        name = self._mutate_or_bad_stamp(mutations, msg.header, "image")
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

        def jump() -> None:  # a joint far from where the previous joint state had it (a second publisher)
            pos = list(previous or msg.position)
            pos[rng.randrange(n)] += rng.choice([1.0, -1.0]) * rng.uniform(0.5, 2.0)
            msg.position = pos

        def beyond_limits() -> None:  # finite and physical, but outside the joints' position limits
            pos = list(msg.position)
            for i in rng.sample(range(n), rng.randrange(1, 3)):
                pos[i] = rng.choice([1.0, -1.0]) * JOINT_LIMIT * rng.uniform(1.01, 3.0)
            msg.position = pos

        previous, self._last_joints = self._last_joints, list(msg.position)
        mutations = {
            "non_finite": non_finite,
            "huge": huge,
            "names_mismatch": names_mismatch,
            "wrong_length": wrong_length,
            "jump": jump,
            "beyond_limits": beyond_limits,
        }
        name = self._mutate_or_bad_stamp(mutations, msg.header, "joints")
        if rng.random() < 0.3:  # fields no node reads: any length, any value
            msg.velocity = [self._bad_float() for _ in range(rng.randrange(0, 20))]
            msg.effort = [self._huge_float() for _ in range(rng.randrange(0, 20))]
        self._noise_frame(msg.header)
        label = f"joint_state.{name}"
        return Case(label, msg, label not in JOINT_GUARD_DEFECTS)

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

    # -- end-effector pose (the workspace box's ee_pose) ----------------------------------------------------
    def _pose(self, cls: type) -> Case:
        """A pose inside WORKSPACE_BOX in FRAME with one defect: none but outside_box may be used as where
        the end effector is (not even a non-unit quaternion: the pose is corrupt, as tf2 says of it)."""
        msg = cls()
        lo, hi = WORKSPACE_BOX
        p, q = msg.pose.position, msg.pose.orientation
        p.x, p.y, p.z = ((a + b) / 2 for a, b in zip(lo, hi, strict=True))
        q.x, q.y, q.z, q.w = 0.0, 0.0, 0.0, 1.0
        msg.header.frame_id = FRAME
        self._stamp(msg.header, "pose")
        rng = self.rng
        axis = rng.randrange(3)

        def outside_box() -> None:
            edge = (
                hi[axis] + rng.uniform(0.01, 1.0) if rng.random() < 0.5 else lo[axis] - rng.uniform(0.01, 1.0)
            )
            setattr(p, "xyz"[axis], edge)

        def non_unit_quaternion() -> None:
            bad = [(0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 2.0), (1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 0.0, 1e6)]
            q.x, q.y, q.z, q.w = rng.choice(bad)

        mutations = {
            "non_finite": lambda: setattr(p, "xyz"[axis], self._bad_float()),
            "huge": lambda: setattr(p, "xyz"[axis], self._huge_float()),
            "outside_box": outside_box,
            "non_unit_quaternion": non_unit_quaternion,
            "non_finite_quaternion": lambda: setattr(q, "xyzw"[rng.randrange(4)], self._bad_float()),
            "wrong_frame": lambda: setattr(
                msg.header, "frame_id", rng.choice(["tool0", "world", "map", f"{FRAME} ", FRAME.upper()])
            ),
        }
        name = self._mutate_or_bad_stamp(mutations, msg.header, "pose")
        # Outside the box is a reading the box must handle (it lets the arm move back in), not corrupt.
        return Case(f"ee_pose.{name}", msg, name != "outside_box")


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
