"""rosbag2 demonstration bags, read and written with `rosbags` (pure Python, no ROS install needed).

Layout of a demonstration bag (one per task): `/camera/image_raw` and `/wrist_camera/image_raw`
(sensor_msgs/Image rgb8), `/joint_states`, `/instruction` (once per episode), `/expert_action`
(vla_accel_ros/VlaAction) and `/episode` (JSON start/end markers), all stamped in sim time. Other
people's bags are read through a `TopicMap`; anything malformed raises `BagError` naming the problem.
"""

from __future__ import annotations

import io
import json
import sqlite3
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from vla_accel_ros.data.episodes import Episode
from vla_accel_ros.params.files import msg_dir

PACKAGE = "vla_accel_ros"
CAMERA_TOPICS: dict[str, str] = {"corner": "/camera/image_raw", "wrist": "/wrist_camera/image_raw"}
JOINT_STATES_TOPIC = "/joint_states"
INSTRUCTION_TOPIC = "/instruction"
EXPERT_ACTION_TOPIC = "/expert_action"
EPISODE_TOPIC = "/episode"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
VLA_ACTION = f"{PACKAGE}/msg/VlaAction"
ACTION_TYPES = (VLA_ACTION, "std_msgs/msg/Float32MultiArray", "std_msgs/msg/Float64MultiArray")
RAW_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}


class BagError(ValueError):
    """A bag that cannot be used, with a message that says why."""


# -- types ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def typestore() -> Any:
    """ROS 2 Kilted message types plus this package's msg/ types."""
    store = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for path in sorted(msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{path.stem}"))
    store.register(types)
    return store


# -- writing ----------------------------------------------------------------------------------------
def _storage_plugin(storage: str) -> StoragePlugin:
    try:
        return {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    except KeyError:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}") from None


def camera_topic(camera: str) -> str:
    return CAMERA_TOPICS.get(camera, f"/{camera}_camera/image_raw")


class BagWriter:
    """Streams episodes into one new rosbag2 bag; episodes are written as they are given."""

    def __init__(self, bag_dir: Path | str, storage: str = "mcap", compress: bool = True) -> None:
        self.path = Path(bag_dir)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already; rosbag2 bags are never overwritten")
        self._ts = typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=_storage_plugin(storage))
        if compress and storage == "mcap":
            # MCAP-internal zstd chunks: what `ros2 bag record --compression-mode` would also read.
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._conns: dict[str, Any] = {}
        self._cameras: list[str] | None = None
        self._last_stamp = -1
        self.episodes = 0
        self.frames = 0
        self._writer.open()

    def _conn(self, topic: str, msgtype: str) -> Any:
        if topic not in self._conns:
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=self._ts)
        return self._conns[topic]

    def _put(self, topic: str, msgtype: str, msg: Any, stamp: int) -> None:
        self._writer.write(self._conn(topic, msgtype), stamp, self._ts.serialize_cdr(msg, msgtype))

    def write(self, ep: Episode) -> None:
        ep.validate()
        stamps = np.asarray(ep.stamps_ns, dtype=np.int64)
        if stamps[0] <= self._last_stamp:
            raise ValueError(f"episode stamps start at {stamps[0]} ns, not after the previous episode")
        cameras = sorted(ep.images)
        if self._cameras is None:
            self._cameras = cameras
        elif cameras != self._cameras:
            raise ValueError(f"episode cameras {cameras} differ from the bag's {self._cameras}")
        t = self._ts.types
        header_t, time_t = t["std_msgs/msg/Header"], t["builtin_interfaces/msg/Time"]
        n_joints = ep.joint_positions.shape[1]
        names = list(ep.joint_names) or [f"joint_{i}" for i in range(n_joints)]
        marker = {"task": ep.task, "seed": int(ep.seed), "episode": self.episodes}
        marker["success"] = bool(ep.success)

        def header(stamp: int, frame_id: str) -> Any:
            return header_t(stamp=time_t(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame_id)

        def string(text: str) -> Any:
            return t[STRING](data=text)

        first = int(stamps[0])
        self._put(EPISODE_TOPIC, STRING, string(json.dumps({**marker, "event": "start"})), first)
        self._put(INSTRUCTION_TOPIC, STRING, string(ep.instruction), first)
        empty_f64 = np.zeros(0, dtype=np.float64)
        for i, stamp in enumerate(stamps.tolist()):
            vel = empty_f64 if ep.joint_velocities is None else ep.joint_velocities[i].astype(np.float64)
            js = t[JOINT_STATE](
                header=header(stamp, "base"),
                name=names,
                position=ep.joint_positions[i].astype(np.float64),
                velocity=vel,
                effort=empty_f64,
            )
            self._put(JOINT_STATES_TOPIC, JOINT_STATE, js, stamp)
            for cam in cameras:
                img = np.ascontiguousarray(ep.images[cam][i])
                h, w = img.shape[:2]
                msg = t[IMAGE](
                    header=header(stamp, f"{cam}_camera"),
                    height=h,
                    width=w,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=w * 3,
                    data=img.reshape(-1),
                )
                self._put(camera_topic(cam), IMAGE, msg, stamp)
            action = _vla_action(t, header(stamp, "base"), ep.actions[i])
            self._put(EXPERT_ACTION_TOPIC, VLA_ACTION, action, stamp)
        last = int(stamps[-1])
        self._put(EPISODE_TOPIC, STRING, string(json.dumps({**marker, "event": "end"})), last)
        self._last_stamp = last
        self.episodes += 1
        self.frames += len(ep)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _vla_action(t: Any, header: Any, action: np.ndarray) -> Any:
    u32 = np.zeros(0, dtype=np.uint32)
    return t[VLA_ACTION](
        header=header,
        image_stamp=header.stamp,
        action=np.asarray(action, dtype=np.float32),
        token_ids=np.zeros(0, dtype=np.int32),
        precision="",
        decoding="expert",
        threshold=0.0,
        draft_tokens=0,
        accepted_tokens=0,
        kalman_filled=u32,
        target_passes=0,
        fallback=False,
        fallback_reason="",
        stage_names=[],
        stage_ms=np.zeros(0, dtype=np.float32),
        total_ms=0.0,
    )


def write_episodes(bag_dir: Path, episodes: Iterable[Episode], storage: str = "mcap") -> None:
    """Write episodes into a new bag at `bag_dir`, one at a time (the iterable may be a generator)."""
    with BagWriter(bag_dir, storage=storage) as writer:
        for ep in episodes:
            writer.write(ep)


# -- reading ----------------------------------------------------------------------------------------
@dataclass
class TopicMap:
    """Which topics of a bag hold what. Defaults fit the bags `vla-accel collect-demos` writes.

    Set `wrist_camera`, `instruction`, `action` to None for bags that lack them. `image_format`
    "auto" accepts sensor_msgs/Image and sensor_msgs/CompressedImage per topic; "raw" or
    "compressed" insist on one. `image_size` (H, W) rejects frames of any other size.
    """

    camera: str = CAMERA_TOPICS["corner"]
    wrist_camera: str | None = CAMERA_TOPICS["wrist"]
    joint_states: str = JOINT_STATES_TOPIC
    instruction: str | None = INSTRUCTION_TOPIC
    action: str | None = EXPERT_ACTION_TOPIC
    episode: str | None = EPISODE_TOPIC  # absent from the bag -> the whole bag is one episode
    image_format: str = "auto"
    image_size: tuple[int, int] | None = None
    joint_names: list[str] | None = None  # select/reorder joints by name
    default_instruction: str = ""
    task: str = ""

    def cameras(self) -> dict[str, str]:
        cams = {"corner": self.camera}
        if self.wrist_camera:
            cams["wrist"] = self.wrist_camera
        return cams


@dataclass
class BagStep:
    """One frame of the main camera with the latest of everything else (what replay feeds a policy)."""

    stamp_ns: int
    episode: int  # -1: between an end and the next start marker
    task: str
    seed: int
    images: dict[str, np.ndarray]
    joint_names: list[str]
    joint_positions: np.ndarray
    joint_velocities: np.ndarray | None
    instruction: str
    reference_action: np.ndarray | None  # first action stamped at/after this frame, before the next
    episode_end: bool = False
    success: bool | None = None  # set on an episode's last step when an end marker says so


@dataclass
class ReadStats:
    """What reading a bag kept and skipped, so a caller can report incomplete data instead of hiding it."""

    frames: int = 0
    skipped_incomplete: int = 0  # frames before a joint state / every camera had arrived
    episodes: int = 0
    notes: list[str] = field(default_factory=list)


# Order of processing of messages that share one stamp: state first, the frame, then what follows it.
_START, _INSTR, _JOINTS, _SECONDARY, _PRIMARY, _ACTION, _END = range(7)


def open_reader(path: Path) -> Reader:
    """An open rosbags Reader of `path` (directory, .mcap or .db3); BagError says why a bag is unusable."""
    if not path.exists():
        raise BagError(f"bag not found: {path} does not exist")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        files = sorted(p.name for p in path.iterdir())[:10]
        raise BagError(f"{path} is not a rosbag2 bag: no metadata.yaml (contains {files})")
    try:
        reader = Reader(path)
        reader.open()
    except Exception as exc:
        if path.is_file() and path.suffix not in (".mcap", ".db3"):
            raise BagError(f"{path} is not a rosbag2 bag (expected a bag directory, .mcap or .db3)") from exc
        hint = ""
        if "magic" in str(exc).lower() or "footer" in str(exc).lower():
            hint = " (an interrupted recording? `mcap recover` or `ros2 bag reindex` can rebuild its index)"
        raise BagError(f"corrupt or truncated bag {path}: {type(exc).__name__}: {exc}{hint}") from exc
    return reader


def _check_topics(reader: Reader, path: Path, tm: TopicMap) -> dict[str, str]:
    """Map each wanted topic to its message type; raise BagError for missing or mistyped topics."""
    if reader.message_count == 0:
        raise BagError(f"bag {path} is empty (0 messages)")
    topics = {name: info.msgtype or "<mixed types>" for name, info in reader.topics.items()}
    present = ", ".join(f"{n} [{ty}]" for n, ty in sorted(topics.items()))
    allowed_img = {"auto": (IMAGE, COMPRESSED_IMAGE), "raw": (IMAGE,), "compressed": (COMPRESSED_IMAGE,)}
    if tm.image_format not in allowed_img:
        raise ValueError(f"image_format must be auto, raw or compressed, got {tm.image_format!r}")
    wanted: list[tuple[str, tuple[str, ...], str]] = [
        (topic, allowed_img[tm.image_format], f"{cam} camera") for cam, topic in tm.cameras().items()
    ]
    wanted.append((tm.joint_states, (JOINT_STATE,), "joint states"))
    if tm.instruction:
        wanted.append((tm.instruction, (STRING,), "instruction"))
    if tm.action:
        wanted.append((tm.action, ACTION_TYPES, "reference action"))
    types: dict[str, str] = {}
    for topic, allowed, role in wanted:
        if topic not in topics:
            raise BagError(f"bag {path} has no {role} topic {topic!r}; topics in the bag: {present}")
        if topics[topic] not in allowed:
            raise BagError(
                f"topic {topic!r} ({role}) in bag {path} has type {topics[topic]}, expected one of "
                f"{', '.join(allowed)}"
            )
        if reader.topics[topic].msgcount == 0:
            raise BagError(f"{role} topic {topic!r} in bag {path} has no messages")
        types[topic] = topics[topic]
    if tm.episode and tm.episode in topics:
        if topics[tm.episode] != STRING:
            raise BagError(f"episode topic {tm.episode!r} has type {topics[tm.episode]}, expected {STRING}")
        types[tm.episode] = STRING
    return types


def decode_image(msg: Any, msgtype: str, topic: str) -> np.ndarray:
    """HxWx3 uint8 RGB from a sensor_msgs/Image (rgb8, bgr8, mono8) or CompressedImage (JPEG/PNG)."""
    if msgtype == COMPRESSED_IMAGE:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(msg.data.tobytes())) as im:
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise BagError(f"cannot decode compressed image ({msg.format!r}) on {topic}: {exc}") from exc
    enc = msg.encoding.lower()
    if enc not in RAW_ENCODINGS:
        raise BagError(
            f"image encoding {msg.encoding!r} on {topic} is not supported (supported: "
            f"{', '.join(RAW_ENCODINGS)}, or sensor_msgs/CompressedImage JPEG/PNG)"
        )
    ch = RAW_ENCODINGS[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = msg.data
    if h <= 0 or w <= 0 or step < w * ch or data.size < step * h:
        raise BagError(f"malformed image on {topic}: {h}x{w} {enc}, step {step}, {data.size} bytes of data")
    img = data[: step * h].reshape(h, step)[:, : w * ch].reshape(h, w, ch)
    if enc == "bgr8":
        img = img[..., ::-1]
    elif enc == "mono8":
        img = np.repeat(img, 3, axis=2)
    return img


class _RawImage:
    """The fields of a sensor_msgs/Image that decoding needs."""

    __slots__ = ("height", "width", "encoding", "step", "data")

    def __init__(self, height: int, width: int, encoding: str, step: int, data: np.ndarray) -> None:
        self.height, self.width, self.encoding, self.step, self.data = height, width, encoding, step, data


class _RawJointState:
    __slots__ = ("name", "position", "velocity")

    def __init__(self, name: list[str], position: np.ndarray, velocity: np.ndarray) -> None:
        self.name, self.position, self.velocity = name, position, velocity


class _RawAction:
    __slots__ = ("action",)

    def __init__(self, action: np.ndarray) -> None:
        self.action = action


def _skip_header(raw: bytes) -> int | None:
    """Offset after std_msgs/Header in little-endian CDR; None when not parseable here."""
    if len(raw) < 16 or raw[0] != 0 or raw[1] != 1:  # CDR_LE encapsulation
        return None
    (n,) = struct.unpack_from("<I", raw, 12)  # after stamp sec/nanosec
    return 16 + n


def _align4(pos: int) -> int:
    return 4 + ((pos - 4 + 3) & ~3)  # CDR alignment counts from after the 4-byte encapsulation


def _fast_decode(raw: bytes, msgtype: str) -> Any:
    """Direct parse of the two bulky message types (~10x faster than the generic deserializer).

    Only fields without 8-byte alignment are read, so padding conventions cannot shift them. Returns
    None whenever anything does not add up; the generic deserializer then decides.
    """
    pos = _skip_header(raw)
    if pos is None:
        return None
    size = len(raw)
    if msgtype == IMAGE:
        pos = _align4(pos)
        if pos + 12 > size:
            return None
        height, width, n = struct.unpack_from("<III", raw, pos)
        pos += 12
        if pos + n > size or n == 0:
            return None
        encoding = raw[pos : pos + n - 1].decode("ascii", "replace")
        pos = _align4(pos + n + 1)  # + is_bigendian byte
        if pos + 8 > size:
            return None
        step, count = struct.unpack_from("<II", raw, pos)
        pos += 8
        if not 0 <= size - (pos + count) <= 7:  # ROS 2 pads to 8 bytes
            return None
        return _RawImage(height, width, encoding, step, np.frombuffer(raw, np.uint8, count, pos))
    if msgtype == JOINT_STATE:
        return _fast_joint_state(raw, pos)
    if msgtype == VLA_ACTION:
        pos = _align4(pos) + 8  # image_stamp
        if pos + 4 > size:
            return None
        (count,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + 4 * count > size:
            return None
        return _RawAction(np.frombuffer(raw, "<f4", count, pos).astype(np.float32))
    return None


def _fast_joint_state(raw: bytes, pos: int) -> Any:
    size = len(raw)
    pos = _align4(pos)
    if pos + 4 > size:
        return None
    (n_names,) = struct.unpack_from("<I", raw, pos)
    pos += 4
    names = []
    for _ in range(n_names):
        pos = _align4(pos)
        if pos + 4 > size:
            return None
        (n,) = struct.unpack_from("<I", raw, pos)
        if n == 0 or pos + 4 + n > size:
            return None
        names.append(raw[pos + 4 : pos + 3 + n].decode("utf-8", "replace"))
        pos += 4 + n
    arrays = []
    for _ in range(2):  # position, velocity; effort is not needed
        pos = _align4(pos)
        if pos + 4 > size:
            return None
        (count,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if count == 0:
            # Whether an empty float64 sequence is padded to 8 differs between writers: stop here.
            if arrays:
                arrays.append(np.zeros(0))
                break
            return None
        pos = 4 + ((pos - 4 + 7) & ~7)
        if pos + 8 * count > size:
            return None
        arrays.append(np.frombuffer(raw, "<f8", count, pos).astype(np.float64))
        pos += 8 * count
    return _RawJointState(names, arrays[0], arrays[1])


def deserialize(raw: bytes, msgtype: str) -> Any:
    """CDR bytes -> message: direct parsers for bulky types, else rosbags' deserializer.

    ROS 2's own serializer (rmw_serialize, as in bags recorded on a robot) pads messages to 8 bytes;
    rosbags rejects more than 3 trailing bytes, so up to 7 are accepted here.
    """
    fast = _fast_decode(raw, msgtype)
    if fast is not None:
        return fast
    store = typestore()
    try:
        return store.deserialize_cdr(raw, msgtype)
    except Exception as exc:
        if "size mismatch" not in str(exc):
            raise
        msgdef = store.get_msgdef(msgtype)
        func = msgdef.deserialize_cdr_le if raw[1] else msgdef.deserialize_cdr_be
        msg, pos = func(memoryview(raw)[4:], 0, msgdef.cls, store)
        if len(raw) - (pos + 4) > 7:
            raise
        return msg


def action_values(msg: Any, msgtype: str) -> np.ndarray:
    """The action vector of a VlaAction (its `action`) or Float32/64MultiArray (its `data`), copied."""
    values = msg.action if msgtype == VLA_ACTION else msg.data
    return np.asarray(values, dtype=np.float32).copy()


def select_joints(names: list[str], values: np.ndarray, wanted: list[str] | None, topic: str) -> np.ndarray:
    """`values` of the joints `wanted`, in that order (None: all, as the message has them); BagError
    names the joints the message lacks."""
    if wanted is None:
        return values
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise BagError(f"joint state on {topic} lacks joints {missing}; it has {names}")
    return values[[index[n] for n in wanted]]


def iter_steps(
    bag_dir: Path | str, topic_map: TopicMap | None = None, stats: ReadStats | None = None
) -> Iterator[BagStep]:
    """Steps of a bag in bag-time order, one per frame of the main camera.

    Frames that arrive before a joint state (and before every mapped camera) are skipped and counted
    in `stats`. Raises BagError for unusable bags, also part-way through a corrupt one.
    """
    tm = topic_map or TopicMap()
    stats = stats if stats is not None else ReadStats()
    path = Path(bag_dir)
    reader = open_reader(path)
    try:
        types = _check_topics(reader, path, tm)
        yield from _steps(reader, path, tm, types, stats)
    finally:
        reader.close()


def _steps(
    reader: Reader, path: Path, tm: TopicMap, types: dict[str, str], stats: ReadStats
) -> Iterator[BagStep]:
    cams = tm.cameras()
    primary = tm.camera
    role = {topic: cam for cam, topic in cams.items()}
    sizes: dict[str, tuple[int, int]] = {}
    conns = [c for c in reader.connections if c.topic in types]

    latest: dict[str, Any] = {"images": {}, "joints": None, "names": [], "vel": None}
    instruction = tm.default_instruction
    has_markers = bool(tm.episode and tm.episode in types)
    episode, task, seed = (-1, tm.task, -1) if has_markers else (0, tm.task, -1)
    counter = 0
    pending: BagStep | None = None

    def kind_of(topic: str, msg: Any) -> int:
        if topic == tm.episode:
            return _END if msg.get("event") == "end" else _START
        if topic == tm.instruction:
            return _INSTR
        if topic == tm.joint_states:
            return _JOINTS
        if topic == primary:
            return _PRIMARY
        if topic in role:
            return _SECONDARY
        return _ACTION

    def decode(conn: Any, stamp: int, raw: bytes) -> Any:
        try:
            msg = deserialize(raw, types[conn.topic])
        except Exception as exc:
            raise BagError(f"corrupt message on {conn.topic} at {stamp} ns in {path}: {exc}") from exc
        if conn.topic == tm.episode:
            try:
                marker = json.loads(msg.data)
                if not isinstance(marker, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                raise BagError(f"bad episode marker on {conn.topic} at {stamp} ns: {msg.data!r}") from exc
            return marker
        return msg

    def image(topic: str, msg: Any) -> np.ndarray:
        img = decode_image(msg, types[topic], topic)
        hw = (img.shape[0], img.shape[1])
        want = tuple(tm.image_size) if tm.image_size else sizes.setdefault(topic, hw)
        if hw != want:
            what = "expected" if tm.image_size else "earlier frames on this topic are"
            raise BagError(f"wrong image size on {topic}: {hw[0]}x{hw[1]}, {what} {want[0]}x{want[1]}")
        return img

    def groups() -> Iterator[tuple[int, list[tuple[int, str, Any]]]]:
        group: list[tuple[int, str, Any]] = []
        current = None
        try:
            for conn, stamp, raw in reader.messages(connections=conns):
                if stamp != current and group:
                    yield current, sorted(group, key=lambda g: g[0])
                    group = []
                current = stamp
                msg = decode(conn, stamp, raw)
                group.append((kind_of(conn.topic, msg), conn.topic, msg))
        except BagError:
            raise
        except (Exception, sqlite3.Error, struct.error) as exc:
            raise BagError(f"corrupt or truncated bag {path}: {type(exc).__name__}: {exc}") from exc
        if group:
            yield current, sorted(group, key=lambda g: g[0])

    for stamp, group in groups():
        for kind, topic, msg in group:
            if kind == _START:
                if pending is not None:
                    yield pending
                    pending = None
                episode = _as_int(msg.get("episode"), counter)
                counter = max(counter, episode) + 1
                task, seed = str(msg.get("task", tm.task)), _as_int(msg.get("seed"), -1)
                stats.episodes += 1
            elif kind == _END:
                if pending is not None:
                    pending.episode_end = True
                    success = msg.get("success")
                    pending.success = None if success is None else bool(success)
                    yield pending
                    pending = None
                episode = -1
            elif kind == _INSTR:
                instruction = msg.data
            elif kind == _JOINTS:
                names = list(msg.name)
                pos = np.asarray(msg.position, np.float64)
                if pos.size == 0 or (names and pos.size != len(names)):
                    raise BagError(
                        f"malformed joint state on {topic} at {stamp} ns: {len(names)} names, "
                        f"{pos.size} positions"
                    )
                latest["joints"] = select_joints(names, pos, tm.joint_names, topic)
                vel = np.asarray(msg.velocity, np.float64)
                latest["vel"] = (
                    select_joints(names, vel, tm.joint_names, topic) if vel.size == len(names) else None
                )
                latest["names"] = list(tm.joint_names) if tm.joint_names else names
            elif kind == _SECONDARY:
                latest["images"][role[topic]] = image(topic, msg)
            elif kind == _PRIMARY:
                if pending is not None:
                    yield pending
                    pending = None
                frame = image(topic, msg)
                if latest["joints"] is None or len(latest["images"]) < len(cams) - 1:
                    stats.skipped_incomplete += 1
                    continue
                stats.frames += 1
                pending = BagStep(
                    stamp_ns=stamp,
                    episode=episode,
                    task=task,
                    seed=seed,
                    images={**latest["images"], "corner": frame},
                    joint_names=latest["names"],
                    joint_positions=latest["joints"],
                    joint_velocities=latest["vel"],
                    instruction=instruction,
                    reference_action=None,
                )
            elif kind == _ACTION:
                if pending is not None and pending.reference_action is None:
                    pending.reference_action = action_values(msg, types[topic])
    if pending is not None:
        yield pending
    if not has_markers:
        stats.episodes = 1 if stats.frames else 0


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def read_episodes(bag_dir: Path | str, topics: TopicMap | None = None) -> list[Episode]:
    """All episodes of a bag (frames outside episode markers are dropped). Raises BagError."""
    tm = topics or TopicMap()
    stats = ReadStats()
    cams = list(tm.cameras())
    episodes: list[Episode] = []
    cur: dict[str, Any] | None = None

    def finish(c: dict[str, Any]) -> None:
        n_joint = {len(q) for q in c["q"]}
        if len(n_joint) != 1:
            raise BagError(
                f"joint_states in {bag_dir} change their number of joints within episode {c['episode']} "
                f"({sorted(n_joint)}); set TopicMap.joint_names to pick joints by name"
            )
        acts = c["a"]
        if tm.action and all(a is not None for a in acts) and len({a.size for a in acts}) == 1:
            actions = np.stack(acts).astype(np.float32)
        elif tm.action and any(a is not None for a in acts):
            dims = {a.size for a in acts if a is not None}
            if len(dims) != 1:
                raise BagError(f"reference actions in {bag_dir} change length in an episode: {sorted(dims)}")
            # Frames without an action of their own (e.g. the bag ends first) get NaN, not a guess.
            dim = dims.pop()
            actions = np.stack([a if a is not None else np.full(dim, np.nan, np.float32) for a in acts])
        else:
            actions = np.zeros((len(acts), 0), dtype=np.float32)
        vel = c["dq"]
        episodes.append(
            Episode(
                task=c["task"],
                seed=c["seed"],
                instruction=c["instruction"],
                success=bool(c["success"]),
                images={cam: np.stack(c["img"][cam]) for cam in cams},
                joint_positions=np.stack(c["q"]).astype(np.float32),
                actions=actions.astype(np.float32),
                stamps_ns=np.asarray(c["t"], dtype=np.int64),
                joint_names=c["names"],
                joint_velocities=(
                    np.stack(vel).astype(np.float32) if all(v is not None for v in vel) else None
                ),
            )
        )

    for step in iter_steps(bag_dir, tm, stats):
        if step.episode < 0:
            continue
        if cur is None or cur["episode"] != step.episode:
            if cur is not None:
                finish(cur)
            cur = {
                "episode": step.episode,
                "task": step.task,
                "seed": step.seed,
                "instruction": step.instruction,
                "names": step.joint_names,
                "success": False,
                "img": {c: [] for c in cams},
                "q": [],
                "dq": [],
                "a": [],
                "t": [],
            }
        for cam in cams:
            cur["img"][cam].append(step.images[cam])
        cur["q"].append(step.joint_positions)
        cur["dq"].append(step.joint_velocities)
        cur["a"].append(step.reference_action)
        cur["t"].append(step.stamp_ns)
        if step.episode_end:
            cur["success"] = bool(step.success)
            finish(cur)
            cur = None
    if cur is not None:
        finish(cur)
    if not episodes:
        skipped = stats.skipped_incomplete
        detail = f" ({skipped} frames lacked a joint state or a camera)" if skipped else ""
        raise BagError(f"bag {bag_dir} holds no complete camera frame inside an episode{detail}")
    return episodes
