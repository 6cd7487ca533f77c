"""`vla-accel record`: every message received before SIGINT/SIGTERM is in a readable bag; it replays."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import QoSProfile
from ros_fixtures import ros_harness
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from vla_accel_ros.msg import VlaAction

from vla_accel_ros.data.bag_io import deserialize
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.qos import instruction_qos, vla_qos

N = 12


class Output:
    """Lines of a child process, collected by a thread; waits poll with a deadline."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def wait_for(self, pred: Callable[[str], bool], timeout_s: float, spin: Callable[[], None]) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if any(pred(line) for line in list(self.lines)):
                return True
            spin()
        return any(pred(line) for line in list(self.lines))

    def text(self) -> str:
        return "\n".join(self.lines)

    def join(self, timeout_s: float = 10.0) -> None:
        """Wait for the last lines of a process that has exited."""
        self._thread.join(timeout_s)


def start_recorder(ros, out: Path, *topics: str) -> tuple[subprocess.Popen, Output]:
    from ros_fixtures import ros_test_env

    cmd = [sys.executable, "-m", "vla_accel_ros.cli", "record", "--out", str(out), "--topics", *topics]
    proc = subprocess.Popen(
        cmd, env=ros_test_env(ros.domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return proc, Output(proc)


def recorded_count(n: int) -> Callable[[str], bool]:
    return lambda line: line == f"[record] {n} messages"


def stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_every_message_before_the_signal_is_in_the_bag(sig, monkeypatch, tmp_path):
    out = tmp_path / "bag"
    with ros_harness(monkeypatch) as ros:
        proc, output = start_recorder(ros, out, "/test/chatter", "/vla/action_raw")
        try:
            qos = QoSProfile(depth=100)  # reliable, keeps all N until acknowledged
            chatter = ros.publisher(String, "/test/chatter", qos, timeout_s=30)
            actions = ros.publisher(VlaAction, "/vla/action_raw", qos, timeout_s=30)
            for i in range(N):
                chatter.publish(String(data=f"msg {i}"))
                actions.publish(VlaAction(action=[float(i), 0.5, -0.5, 1.0], precision="fp32"))
            assert output.wait_for(recorded_count(2 * N), 30, lambda: ros.spin_for(0.05)), output.text()
        finally:
            rc = stop(proc, sig)
    assert rc == 0, output.text()
    assert f"[record] wrote {out}: {2 * N} messages" in output.text()
    with Reader(out) as reader:
        got: dict[str, list] = {}
        for conn, _, raw in reader.messages():
            got.setdefault(conn.topic, []).append(deserialize(raw, conn.msgtype))
        types = {c.topic: c.msgtype for c in reader.connections}
    assert types == {"/test/chatter": "std_msgs/msg/String", "/vla/action_raw": "vla_accel_ros/msg/VlaAction"}
    assert [m.data for m in got["/test/chatter"]] == [f"msg {i}" for i in range(N)]
    assert [float(m.action[0]) for m in got["/vla/action_raw"]] == [float(i) for i in range(N)]


def test_existing_output_is_refused(tmp_path, capsys):
    from vla_accel_ros.cli import main

    (tmp_path / "bag").mkdir()
    assert main(["record", "--out", str(tmp_path / "bag")]) == 2
    assert "exists already" in capsys.readouterr().err


def test_a_recorded_graph_replays(monkeypatch, tmp_path):
    """Camera, wrist camera, joint states and a latched instruction from a test node -> bag -> replay."""
    pytest.importorskip("torch")
    from test_replay import INSTRUCTION, JOINTS, tiny_config

    out = tmp_path / "bag"
    steps = 3
    rng = np.random.default_rng(0)
    with ros_harness(monkeypatch) as ros:
        # Latched before the recorder starts: it must still get the instruction (QoS adapted).
        instr = ros.probe.create_publisher(String, "/instruction", instruction_qos())
        instr.publish(String(data=INSTRUCTION))
        proc, output = start_recorder(
            ros, out, "/camera/image_raw", "/wrist_camera/image_raw", "/joint_states", "/instruction"
        )
        try:
            pubs = {
                topic: ros.publisher(cls, topic, vla_qos(), timeout_s=30)
                for topic, cls in (
                    ("/joint_states", JointState),
                    ("/wrist_camera/image_raw", Image),
                    ("/camera/image_raw", Image),
                )
            }
            assert output.wait_for(recorded_count(1), 30, lambda: ros.spin_for(0.05)), output.text()
            count = 1
            for i in range(steps):
                stamp = (i + 1) * 10**8
                msgs = {
                    "/joint_states": convert.arrays_to_joint_state(JOINTS, rng.normal(size=9), None, stamp),
                    "/wrist_camera/image_raw": convert.numpy_to_image(
                        rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), stamp, "wrist"
                    ),
                    "/camera/image_raw": convert.numpy_to_image(
                        rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), stamp, "corner"
                    ),
                }
                for topic, msg in msgs.items():  # one at a time: bag order = the order of a real step
                    pubs[topic].publish(msg)
                    count += 1
                    assert output.wait_for(recorded_count(count), 30, lambda: ros.spin_for(0.02)), (
                        output.text()
                    )
        finally:
            rc = stop(proc, signal.SIGINT)
    assert rc == 0, output.text()

    import torch

    from vla_accel_ros.cli import main
    from vla_accel_ros.policy.checkpoint import save_checkpoint
    from vla_accel_ros.policy.model import VlaModel

    torch.manual_seed(0)
    ck = tmp_path / "ck"
    save_checkpoint(VlaModel(tiny_config()).eval(), ck)
    replay_out = tmp_path / "replay"
    rc = main(
        [
            "replay",
            str(out),
            "--checkpoint",
            str(ck),
            "--methods",
            "ar",
            "--action-topic",
            "none",
            "--out",
            str(replay_out),
            "--quiet",
            "--no-plots",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    metrics = json.loads((replay_out / "metrics.json").read_text())
    assert metrics["steps"] == steps and metrics["methods"]["ar"]["steps"] == steps


# -- playing a bag into the graph (vla-accel up --replay) ------------------------------------------
def test_bag_player_publishes_what_the_nodes_subscribe_to(monkeypatch, tmp_path):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    from ros_fixtures import ros_test_env
    from rosgraph_msgs.msg import Clock
    from test_replay import episodes

    from vla_accel_ros.data.bag_io import write_episodes

    eps = episodes(n=2, steps=3)
    bag = tmp_path / "bag"
    write_episodes(bag, eps)
    deep = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)
    latched = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    with ros_harness(monkeypatch) as ros:
        got = {
            "image": ros.collect(Image, "/camera/image_raw", deep),
            "wrist": ros.collect(Image, "/wrist_camera/image_raw", deep),
            "joints": ros.collect(JointState, "/joint_states", deep),
            "instruction": ros.collect(String, "/instruction", latched),
            "episode": ros.collect(String, "/sim/episode", latched),
            "executed": ros.collect(VlaAction, "/arm/executed_action", QoSProfile(depth=100)),
            "clock": ros.collect(Clock, "/clock", deep),
        }
        cmd = [
            sys.executable,
            "-m",
            "vla_accel_ros.ros.bag_player",
            str(bag),
            "--rate",
            "20",
            "--linger",
            "0",
            "--wait-subscribers",
            "60",  # discovery under load can take seconds; frames sent before it are lost
        ]
        proc = subprocess.Popen(
            cmd, env=ros_test_env(ros.domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = Output(proc)
        try:
            done = lambda: proc.poll() is not None and len(got["image"]) == 6 and len(got["executed"]) == 4  # noqa: E731
            assert ros.spin_until(done, 60), output.text()
            ros.spin_until(lambda: len(got["episode"]) == 4, 5)
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGINT)
    assert proc.returncode == 0, output.text()
    stamps = [int(s) for e in eps for s in e.stamps_ns]
    assert [convert.stamp_to_ns(m.header.stamp) for m in got["image"]] == stamps
    assert [convert.stamp_to_ns(m.header.stamp) for m in got["joints"]] == stamps
    assert [convert.stamp_to_ns(m.clock) for m in got["clock"]] == stamps
    np.testing.assert_array_equal(convert.image_to_numpy(got["wrist"][4]), eps[1].images["wrist"][1])
    np.testing.assert_allclose(got["joints"][0].position, eps[0].joint_positions[0], rtol=1e-6)
    assert got["instruction"][-1].data == eps[1].instruction
    events = [json.loads(m.data) for m in got["episode"]]
    assert [(e["event"], e["episode"]) for e in events] == [
        ("start", 0),
        ("end", 0),
        ("start", 1),
        ("end", 1),
    ]
    # The action executed after frame t arrives stamped with frame t+1, within each episode only.
    want = [(e.stamps_ns[t + 1], e.actions[t]) for e in eps for t in range(2)]
    for msg, (stamp, action) in zip(got["executed"], want, strict=True):
        assert convert.stamp_to_ns(msg.header.stamp) == stamp
        np.testing.assert_allclose(msg.action, action, rtol=1e-6)


def test_up_replay_hook_runs_the_bag_player(tmp_path):
    from vla_accel_ros.ros.launcher import GraphConfig, process_specs, replay_process

    spec = replay_process(tmp_path / "bag", rate=2.0)
    assert spec.argv[1:4] == ["-m", "vla_accel_ros.ros.bag_player", str(tmp_path / "bag")]
    assert spec.argv[spec.argv.index("--rate") + 1] == "2.0"
    names = [s.name for s in process_specs(GraphConfig(use_sim_time=True, extra=[spec]), None)]
    assert names == ["inference_node", "kinematics_node", "controller_node", "bag_player"]
    # Namespaced or remapped graph: the player publishes where the nodes listen.
    cfg = GraphConfig(use_sim_time=True, namespace="arm1", remaps=["joint_states:=js"], extra=[spec])
    player = process_specs(cfg, None)[-1]
    tail = player.argv[player.argv.index("--ros-args") :]
    assert tail == ["--ros-args", "-r", "__ns:=/arm1", "-r", "joint_states:=js"]
    assert player.argv[: len(spec.argv)] == spec.argv


def test_bag_player_refuses_a_bad_bag(tmp_path):
    from vla_accel_ros.ros.bag_player import main as player_main

    (tmp_path / "bag").mkdir()
    assert player_main([str(tmp_path / "bag")]) == 2


def test_bag_player_takes_the_namespace_of_its_ros_args(monkeypatch, tmp_path):
    """`ros2 launch` and `vla-accel up --namespace` pass --ros-args: the player's topics follow them."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    from ros_fixtures import ros_test_env
    from test_replay import episodes

    from vla_accel_ros.data.bag_io import write_episodes

    bag = tmp_path / "bag"
    write_episodes(bag, episodes(n=1, steps=40))  # 80 Hz stamps: 0.5 s of frames at --rate 1
    with ros_harness(monkeypatch) as ros:
        deep = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        latched = QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        joints = ros.collect(JointState, "/arm1/joint_states", deep)
        for topic in ("/arm1/camera/image_raw", "/arm1/wrist_camera/image_raw"):
            ros.collect(Image, topic, deep)  # the player waits for a subscriber on every topic
        for topic in ("/arm1/instruction", "/arm1/sim/episode"):
            ros.collect(String, topic, latched)
        ros.collect(VlaAction, "/arm1/arm/executed_action", QoSProfile(depth=10))
        cmd = [sys.executable, "-m", "vla_accel_ros.ros.bag_player", str(bag), "--rate", "1"]
        cmd += ["--linger", "0", "--wait-subscribers", "60", "--ros-args", "-r", "__ns:=/arm1"]
        proc = subprocess.Popen(
            cmd, env=ros_test_env(ros.domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = Output(proc)
        try:
            # Best-effort, like a camera driver: frames sent while this reader is still matching the player's
            # writer are lost (both of two frames sent 1 ms apart were, once, in CI), so the 40 frames are
            # spread over half a second; any one arriving under /arm1 proves the namespace was taken.
            assert ros.spin_until(lambda: proc.poll() is not None and len(joints) >= 1, 90), output.text()
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGINT)
    assert proc.returncode == 0, output.text()
    output.join()
    assert "played 40 frames" in output.text(), output.text()
