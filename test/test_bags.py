"""rosbag2 demonstration bags: exact round trips, foreign-bag topic mapping, and bad bags."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.enums import StoragePlugin

from vla_accel_ros.data.bag_io import (
    IMAGE,
    JOINT_STATE,
    BagError,
    ReadStats,
    TopicMap,
    _fast_decode,
    deserialize,
    iter_steps,
    read_episodes,
    typestore,
    write_episodes,
)

TS = typestore()
T = TS.types


# -- helpers to write arbitrary (foreign or broken) bags ---------------------------------------------
def _header(stamp: int, frame: str = "cam") -> object:
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id=frame
    )


def raw_image(stamp: int, img: np.ndarray, encoding: str = "rgb8") -> object:
    h, w = img.shape[:2]
    return T["sensor_msgs/msg/Image"](
        header=_header(stamp),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=img.strides[0],
        data=np.ascontiguousarray(img).reshape(-1),
    )


def compressed_image(stamp: int, img: np.ndarray, fmt: str = "png") -> object:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt.upper())
    return T["sensor_msgs/msg/CompressedImage"](
        header=_header(stamp), format=fmt, data=np.frombuffer(buf.getvalue(), dtype=np.uint8)
    )


def joint_state(stamp: int, names: list[str], q: np.ndarray) -> object:
    return T["sensor_msgs/msg/JointState"](
        header=_header(stamp, "base"),
        name=names,
        position=np.asarray(q, np.float64),
        velocity=np.zeros(0),
        effort=np.zeros(0),
    )


def string(text: str) -> object:
    return T["std_msgs/msg/String"](data=text)


def write_bag(path: Path, messages: list[tuple[str, str, int, object]], storage: str = "mcap") -> Path:
    """messages: (topic, msgtype, stamp_ns, message object or raw bytes)."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=9, storage_plugin=plugin)
    writer.open()
    conns: dict[str, object] = {}
    for topic, msgtype, stamp, msg in messages:
        if topic not in conns:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=TS)
        data = msg if isinstance(msg, bytes) else TS.serialize_cdr(msg, msgtype)
        writer.write(conns[topic], stamp, data)
    writer.close()
    return path


JOINTS, STRING = JOINT_STATE, "std_msgs/msg/String"
NAMES = ["a", "b"]


def simple_bag(path: Path, encoding: str = "rgb8", sizes: tuple[int, ...] = (8, 8, 8)) -> Path:
    """A minimal foreign bag: one camera, joint states, no markers, no instruction, no actions."""
    rng = np.random.default_rng(1)
    msgs = []
    for i, s in enumerate(sizes):
        stamp = (i + 1) * 10**8
        ch = 1 if encoding == "mono8" else 3
        img = rng.integers(0, 256, (s, s, ch) if ch == 3 else (s, s), dtype=np.uint8)
        msgs.append(("/joint_states", JOINTS, stamp, joint_state(stamp, NAMES, [i, -i])))
        msgs.append(("/cam", IMAGE, stamp, raw_image(stamp, img, encoding)))
    return write_bag(path, msgs)


SIMPLE_MAP = TopicMap(camera="/cam", wrist_camera=None, instruction=None, action=None)


# -- round trips ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_is_exact(tmp_path: Path, make_episodes, storage: str) -> None:
    episodes = make_episodes(n=3, steps=4)
    write_episodes(tmp_path / "bag", (ep for ep in episodes), storage=storage)  # a generator streams
    meta = (tmp_path / "bag" / "metadata.yaml").read_text()
    assert f"storage_identifier: {storage}" in meta
    back = read_episodes(tmp_path / "bag")
    assert len(back) == len(episodes)
    for a, b in zip(episodes, back, strict=True):
        assert (a.task, a.seed, a.instruction, a.success) == (b.task, b.seed, b.instruction, b.success)
        assert set(b.images) == {"corner", "wrist"}
        for cam in a.images:
            assert b.images[cam].dtype == np.uint8
            np.testing.assert_array_equal(a.images[cam], b.images[cam])
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.joint_positions, b.joint_positions)
        np.testing.assert_array_equal(a.joint_velocities, b.joint_velocities)
        np.testing.assert_array_equal(a.stamps_ns, b.stamps_ns)
        assert b.joint_names == a.joint_names
        assert b.actions.dtype == np.float32 and b.joint_positions.dtype == np.float32


def test_bag_layout_topics_and_markers(tmp_path: Path, make_episodes) -> None:
    episodes = make_episodes(n=2, steps=3)
    write_episodes(tmp_path / "bag", episodes)
    with Reader(tmp_path / "bag") as reader:
        topics = {name: info.msgtype for name, info in reader.topics.items()}
        assert topics == {
            "/camera/image_raw": IMAGE,
            "/wrist_camera/image_raw": IMAGE,
            "/joint_states": JOINTS,
            "/instruction": STRING,
            "/expert_action": "vla_accel_ros/msg/VlaAction",
            "/episode": STRING,
        }
        conns = [c for c in reader.connections if c.topic == "/episode"]
        raws = [(t, raw) for _, t, raw in reader.messages(conns)]
    markers = [(t, json.loads(TS.deserialize_cdr(raw, STRING).data)) for t, raw in raws]
    assert [m["event"] for _, m in markers] == ["start", "end", "start", "end"]
    assert markers[0][1] == {"task": "reach-v3", "seed": 100, "episode": 0, "success": True, "event": "start"}
    # Sim-time stamps: episode i starts at i * 1000 s, steps at 80 Hz.
    assert markers[2][0] == 1000 * 10**9 and markers[1][0] == 2 * 12_500_000


def test_iter_steps_order_and_episode_flags(tmp_path: Path, make_episodes) -> None:
    episodes = make_episodes(n=2, steps=3)
    write_episodes(tmp_path / "bag", episodes)
    steps = list(iter_steps(tmp_path / "bag"))
    assert [s.episode for s in steps] == [0] * 3 + [1] * 4
    assert np.all(np.diff([s.stamp_ns for s in steps]) > 0)
    assert [s.episode_end for s in steps] == [False, False, True, False, False, False, True]
    assert steps[2].success is True and steps[-1].success is False
    np.testing.assert_array_equal(steps[4].reference_action, episodes[1].actions[1])
    np.testing.assert_array_equal(steps[4].images["wrist"], episodes[1].images["wrist"][1])
    assert steps[4].instruction == episodes[1].instruction and steps[4].seed == 101


def test_write_rejects_overlapping_stamps(tmp_path: Path, make_episodes) -> None:
    a, b = make_episodes(n=2)
    b.stamps_ns = a.stamps_ns[-1] + np.arange(len(b))  # starts on a's last stamp
    with pytest.raises(ValueError, match="not after the previous episode"):
        write_episodes(tmp_path / "bag", [a, b])


def test_vla_action_deserializes_with_rclpy(tmp_path: Path, make_episodes, monkeypatch) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(10 + os.getpid() % 80))
    from rclpy.serialization import deserialize_message
    from vla_accel_ros.msg import VlaAction

    episodes = make_episodes(n=1, steps=3)
    write_episodes(tmp_path / "bag", episodes)
    with Reader(tmp_path / "bag") as reader:
        conns = [c for c in reader.connections if c.topic == "/expert_action"]
        raws = [(t, raw) for _, t, raw in reader.messages(conns)]
    assert len(raws) == 3
    for i, (stamp, raw) in enumerate(raws):
        msg = deserialize_message(bytes(raw), VlaAction)
        np.testing.assert_array_equal(np.asarray(msg.action, np.float32), episodes[0].actions[i])
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp
        assert msg.decoding == "expert" and not msg.fallback


def test_fast_decoders_agree_with_rclpy_serialization(monkeypatch) -> None:
    """The direct CDR parsers read what ROS 2 itself writes (e.g. bags recorded on a robot)."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(10 + os.getpid() % 80))
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image, JointState
    from vla_accel_ros.msg import VlaAction

    img = Image(height=2, width=3, encoding="bgr8", step=9, data=bytes(range(18)))
    img.header.frame_id = "odd_len"
    fast = _fast_decode(serialize_message(img), IMAGE)
    assert (fast.height, fast.width, fast.encoding, fast.step) == (2, 3, "bgr8", 9)
    assert fast.data.tobytes() == bytes(range(18))

    for velocity in ([0.5, 0.25, 0.125], []):
        js = JointState(name=["a", "bb", "ccc"], position=[1.0, 2.0, 3.0], velocity=velocity)
        js.header.frame_id = "x"
        raw = serialize_message(js)
        fast = _fast_decode(raw, JOINT_STATE)
        assert fast.name == ["a", "bb", "ccc"]
        np.testing.assert_array_equal(fast.position, [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(fast.velocity, velocity)

    act = VlaAction(action=[0.25, -1.0, 0.5, 1.0], token_ids=[1, 2], precision="bf16")
    fast = _fast_decode(serialize_message(act), "vla_accel_ros/msg/VlaAction")
    np.testing.assert_array_equal(fast.action, np.array([0.25, -1.0, 0.5, 1.0], np.float32))

    # No direct parser applies (empty positions): the generic path must accept ROS 2's padding too.
    raw = serialize_message(JointState(name=[], position=[], velocity=[1.5]))
    assert _fast_decode(raw, JOINT_STATE) is None
    np.testing.assert_array_equal(deserialize(raw, JOINT_STATE).velocity, [1.5])


def test_mcap_readable_by_independent_reader(tmp_path: Path, make_episodes) -> None:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    episodes = make_episodes(n=1, steps=3)
    write_episodes(tmp_path / "bag", episodes)
    with open(tmp_path / "bag" / "bag.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        states = [m.position for _, _, _, m in reader.iter_decoded_messages(topics=["/joint_states"])]
    np.testing.assert_array_equal(np.asarray(states, np.float32), episodes[0].joint_positions)


# -- foreign bags through a TopicMap ----------------------------------------------------------------------
def test_topic_map_with_compressed_images_and_lagging_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (12, 10, 3), dtype=np.uint8) for _ in range(4)]
    ms = 10**6
    compressed = "sensor_msgs/msg/CompressedImage"
    msgs = [("/cam/compressed", compressed, 5 * ms, compressed_image(5 * ms, frames[0]))]
    for i in range(1, 4):  # the first frame above comes before any joint state: skipped
        t = i * 100 * ms
        msgs.append(("/robot/joint_states", JOINTS, t - ms, joint_state(t - ms, ["j2", "j1"], [i, 10 * i])))
        msgs.append(("/cam/compressed", compressed, t, compressed_image(t, frames[i])))
        # Commands come 30 ms after the frame they answer (real inference latency).
        cmd = T["std_msgs/msg/Float32MultiArray"](
            layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
            data=np.array([i, -i], np.float32),
        )
        msgs.append(("/cmd", "std_msgs/msg/Float32MultiArray", t + 30 * ms, cmd))
    write_bag(tmp_path / "foreign", msgs)
    tm = TopicMap(
        camera="/cam/compressed",
        wrist_camera=None,
        joint_states="/robot/joint_states",
        instruction=None,
        action="/cmd",
        image_format="compressed",
        joint_names=["j1", "j2"],
        default_instruction="stack it",
        task="real",
    )
    stats = ReadStats()
    steps = list(iter_steps(tmp_path / "foreign", tm, stats))
    assert stats.skipped_incomplete == 1 and len(steps) == 3
    (ep,) = read_episodes(tmp_path / "foreign", tm)  # no /episode markers: one episode
    assert ep.instruction == "stack it" and ep.task == "real" and not ep.success
    np.testing.assert_array_equal(ep.images["corner"], np.stack(frames[1:]))  # PNG is lossless
    np.testing.assert_array_equal(ep.joint_positions, [[10, 1], [20, 2], [30, 3]])  # reordered by name
    np.testing.assert_array_equal(ep.actions, [[1, -1], [2, -2], [3, -3]])  # each frame's own command
    assert ep.joint_names == ["j1", "j2"] and set(ep.images) == {"corner"}


def test_jpeg_images_decode_close_to_source(tmp_path: Path) -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    img[:, :8] = (200, 30, 30)
    msgs = [
        ("/joint_states", JOINTS, 1, joint_state(1, NAMES, [0, 0])),
        ("/cam", "sensor_msgs/msg/CompressedImage", 2, compressed_image(2, img, "jpeg")),
    ]
    write_bag(tmp_path / "jpg", msgs)
    (ep,) = read_episodes(tmp_path / "jpg", SIMPLE_MAP)
    assert np.abs(ep.images["corner"][0].astype(int) - img).mean() < 6


@pytest.mark.parametrize("encoding", ["bgr8", "mono8"])
def test_bgr8_and_mono8_become_rgb(tmp_path: Path, encoding: str) -> None:
    simple_bag(tmp_path / "b", encoding=encoding)
    with Reader(tmp_path / "b") as reader:
        conn = next(c for c in reader.connections if c.topic == "/cam")
        src = TS.deserialize_cdr(next(reader.messages([conn]))[2], IMAGE).data.reshape(8, 8, -1)
    (ep,) = read_episodes(tmp_path / "b", SIMPLE_MAP)
    got = ep.images["corner"][0]
    assert got.shape == (8, 8, 3)
    expected = src[..., ::-1] if encoding == "bgr8" else np.repeat(src, 3, axis=2)
    np.testing.assert_array_equal(got, expected)


# -- bad bags ----------------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="does not exist"):
        read_episodes(tmp_path / "nope")


def test_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "notes.txt").write_text("hi")
    with pytest.raises(BagError, match="not a rosbag2 bag.*metadata.yaml"):
        read_episodes(tmp_path / "dir")
    (tmp_path / "file.txt").write_text("hi")
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        read_episodes(tmp_path / "file.txt")


def test_truncated_mcap(tmp_path: Path, make_episodes) -> None:
    write_episodes(tmp_path / "bag", make_episodes(n=2, steps=4))
    data = tmp_path / "bag" / "bag.mcap"
    raw = data.read_bytes()
    data.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(BagError, match="corrupt or truncated"):
        read_episodes(tmp_path / "bag")


def test_corrupt_sqlite3_and_metadata(tmp_path: Path, make_episodes) -> None:
    write_episodes(tmp_path / "db", make_episodes(n=1), storage="sqlite3")
    (tmp_path / "db" / "db.db3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(BagError, match="corrupt or truncated"):
        read_episodes(tmp_path / "db")
    write_episodes(tmp_path / "meta", make_episodes(n=1))
    (tmp_path / "meta" / "metadata.yaml").write_text("rosbag2_bagfile_information: [unclosed")
    with pytest.raises(BagError, match="corrupt or truncated"):
        read_episodes(tmp_path / "meta")


def test_empty_bag(tmp_path: Path) -> None:
    write_bag(tmp_path / "empty", [])
    with pytest.raises(BagError, match="empty"):
        read_episodes(tmp_path / "empty")


def test_missing_topic_names_it_and_lists_present(tmp_path: Path, make_episodes) -> None:
    write_episodes(tmp_path / "bag", make_episodes(n=1, cameras=("corner",)))
    with pytest.raises(BagError, match="wrist camera topic '/wrist_camera/image_raw'") as err:
        read_episodes(tmp_path / "bag")
    assert "/camera/image_raw" in str(err.value) and "/joint_states" in str(err.value)
    assert len(read_episodes(tmp_path / "bag", TopicMap(wrist_camera=None))) == 1


def test_topic_of_unexpected_type(tmp_path: Path) -> None:
    msgs = [
        ("/joint_states", STRING, 1, string("not joints")),
        ("/cam", IMAGE, 2, raw_image(2, np.zeros((4, 4, 3), np.uint8))),
    ]
    write_bag(tmp_path / "b", msgs)
    with pytest.raises(BagError, match="'/joint_states'.*std_msgs/msg/String.*JointState"):
        read_episodes(tmp_path / "b", SIMPLE_MAP)


def test_unsupported_encoding(tmp_path: Path) -> None:
    img = np.zeros((4, 4, 4), np.uint8)
    msgs = [
        ("/joint_states", JOINTS, 1, joint_state(1, NAMES, [0, 0])),
        ("/cam", IMAGE, 2, raw_image(2, img, "rgba8")),
    ]
    write_bag(tmp_path / "b", msgs)
    with pytest.raises(BagError, match="encoding 'rgba8'.*not supported"):
        read_episodes(tmp_path / "b", SIMPLE_MAP)


def test_wrong_image_size(tmp_path: Path) -> None:
    simple_bag(tmp_path / "ok")
    with pytest.raises(BagError, match="wrong image size on /cam: 8x8, expected 64x64"):
        read_episodes(
            tmp_path / "ok",
            TopicMap(camera="/cam", wrist_camera=None, instruction=None, action=None, image_size=(64, 64)),
        )
    simple_bag(tmp_path / "mixed", sizes=(8, 8, 6))
    with pytest.raises(BagError, match="wrong image size on /cam: 6x6"):
        read_episodes(tmp_path / "mixed", SIMPLE_MAP)


def test_corrupt_message_bytes(tmp_path: Path) -> None:
    good = TS.serialize_cdr(raw_image(2, np.zeros((4, 4, 3), np.uint8)), IMAGE)
    msgs = [("/joint_states", JOINTS, 1, joint_state(1, NAMES, [0, 0])), ("/cam", IMAGE, 2, bytes(good[:20]))]
    write_bag(tmp_path / "b", msgs)
    with pytest.raises(BagError, match="corrupt message on /cam"):
        read_episodes(tmp_path / "b", SIMPLE_MAP)
