"""Bad data into every subscription callback of every node: no crash, no command from bad data.

CI runs a sample of a few hundred messages (seconds); `vla-accel fuzz` runs >= 10,000 and writes
docs/RELIABILITY.md. A mutation check makes sure the oracle bites: with the controller's image-age check
switched off, the same sample must report commands from bad data.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.serialization import deserialize_message, serialize_message
from ros_fixtures import unique_domain_id
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction

from vla_accel_ros.evaluation.fuzz_report import FuzzReport, JointReference, is_hold, within_limits
from vla_accel_ros.evaluation.fuzzing import JOINT_GUARD_DEFECTS, BadMessages, png, truncated_png
from vla_accel_ros.evaluation.reliability import write_doc_section
from vla_accel_ros.ros import convert

SAMPLE = 300
TYPES = [
    Image,
    CompressedImage,
    JointState,
    String,
    AccelConfig,
    KalmanPrediction,
    VlaAction,
    KinematicState,
    PoseStamped,
]


@pytest.fixture
def fuzz_env(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("VLA_ACCEL_FUZZ_DOMAIN", str(unique_domain_id()))
    return os.environ.get("VLA_ACCEL_TEST_MODEL")


def _now() -> int:
    return 1_700_000_000 * 10**9


def test_generator_is_seeded_and_every_message_survives_the_wire():
    labels = []
    for _ in range(2):
        gen = BadMessages(seed=7, now_ns=_now)
        run = []
        for i in range(400):
            cls = TYPES[i % len(TYPES)]
            case = gen.make(cls, "sim/episode" if cls is String and (i // len(TYPES)) % 2 else "instruction")
            assert type(case.msg) is cls
            run.append(case.label)
            try:
                deserialize_message(serialize_message(case.msg), cls)
            except UnicodeEncodeError:
                pass  # the driver counts these as unsendable
        labels.append(run)
    assert labels[0] == labels[1]
    kinds = Counter(label.split(".")[0] for label in labels[0])
    assert set(kinds) >= {"image", "compressed", "joint_state", "instruction", "episode", "accel_config"}
    assert set(kinds) >= {"kalman_prediction", "vla_action", "kinematic_state", "ee_pose"}


def test_image_and_joint_defects_are_refused_where_the_nodes_convert_them():
    """Content defects die in convert; stamp defects are the nodes' job (covered by the run below)."""
    gen = BadMessages(seed=3, now_ns=_now)
    refused = Counter()
    for i in range(600):
        cls = (Image, CompressedImage, JointState)[i % 3]
        case = gen.make(cls)
        assert case.must_refuse or case.label in JOINT_GUARD_DEFECTS
        msg = deserialize_message(serialize_message(case.msg), cls)
        defect = case.label.split(".", 1)[1]
        if "stamp" in defect or defect in ("too_small", "wrong_length") or case.label in JOINT_GUARD_DEFECTS:
            continue  # stamps: the nodes; too small or another joint count: the policy runtime; jumps and
            # joint limits: the joint_trajectory controller's guard (the run below)
        with pytest.raises(convert.ConversionError):
            if cls is Image:
                convert.image_to_numpy(msg)
            elif cls is CompressedImage:
                convert.compressed_to_numpy(msg)
            else:
                convert.joint_state_to_arrays(msg, [f"joint_{i}" for i in range(9)])
        refused[case.label] += 1
    assert refused["compressed.decompression_bomb"] > 0 and refused["joint_state.huge"] > 0


def test_ee_pose_defects_are_refused_where_the_controller_converts_them():
    """Corrupt positions and orientations die in convert.pose_position; frame and stamps are the
    controller's (the run below); a pose outside the box is a reading, for the box to judge."""
    gen = BadMessages(seed=5, now_ns=_now)
    seen = Counter()
    for _ in range(300):
        case = gen.make(PoseStamped, "ee_pose")
        msg = deserialize_message(serialize_message(case.msg), PoseStamped)
        defect = case.label.split(".", 1)[1]
        seen[defect] += 1
        assert case.must_refuse == (defect != "outside_box")
        if defect in ("non_finite", "huge", "non_unit_quaternion", "non_finite_quaternion"):
            with pytest.raises(convert.ConversionError):
                convert.pose_position(msg)
        elif defect == "wrong_frame":
            assert msg.header.frame_id != "base_link"
        elif "stamp" not in defect:
            assert convert.pose_position(msg).shape == (3,)
    assert {"outside_box", "non_unit_quaternion", "wrong_frame", "huge", "stale_stamp"} <= set(seen)


def _trajectory(positions) -> JointTrajectory:
    return JointTrajectory(
        joint_names=["a", "b", "g"], points=[JointTrajectoryPoint(positions=[float(v) for v in positions])]
    )


def test_the_oracle_reads_joint_trajectory_commands():
    """A hold keeps the arm joints at the last good joint state; a command stays inside the joint
    limits and within one accepted step of that state."""
    ref = JointReference(
        names=("a", "b", "g"),
        lower=(-2.0, -2.0, 0.0),
        upper=(2.0, 2.0, 0.04),
        arm=frozenset({"a", "b"}),
        good={"a": 1.99, "b": 0.0, "g": 0.02},
        max_step=0.05,
    )
    assert is_hold(_trajectory([1.99, 0.0, 0.04]), ref)  # the gripper is absolute: not a move
    assert not is_hold(_trajectory([1.98, 0.0, 0.04]), ref) and not is_hold(_trajectory([1.99, 0.0]), ref)
    assert not is_hold(_trajectory([1.99, 0.0, 0.04]))  # without the reference: cannot tell
    assert within_limits(_trajectory([1.95, 0.05, 0.0]), ref)
    assert not within_limits(_trajectory([2.01, 0.0, 0.0]), ref)  # beyond a joint limit
    assert not within_limits(_trajectory([1.99, 0.3, 0.0]), ref)  # a jump from the last good state
    assert not within_limits(_trajectory([1.99, math.nan, 0.0]), ref)
    wrong = JointTrajectory(joint_names=["b", "a", "g"], points=_trajectory([0, 0, 0]).points)
    assert not within_limits(wrong, ref) and not is_hold(wrong, ref)


def test_the_controller_takes_no_stale_future_or_corrupt_ee_pose():
    """On a pose at the box's edge an outward action is refused; a bad pose after it (stamped a minute
    ago, a minute ahead, or with a non-unit quaternion, each at the box's centre) must not unlock it."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions

    from vla_accel_ros.ros.controller_node import ControllerNode
    from vla_accel_ros.ros.fuzz_controller_inputs import action, good_input
    from vla_accel_ros.ros.fuzz_targets import Spy, Target, callback_of

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=unique_domain_id(), signal_handler_options=SignalHandlerOptions.NO)
    box = dict(dry_run=False, max_rate_hz=1000.0, workspace_min=[0.0] * 3, workspace_max=[0.5] * 3)
    node = ControllerNode(
        context=context, parameter_overrides=[Parameter(k, value=v) for k, v in box.items()]
    )
    try:
        target = Target("controller_box", node)
        arm = Spy(node, "arm/command")
        on_pose, on_action = callback_of(node, "ee_pose"), callback_of(node, "vla/action_raw")
        now = node.get_clock().now().nanoseconds
        good_input(target, now)
        on_action(action(now, -0.1))  # inward: passes
        assert len(arm.msgs) == 1 and not is_hold(arm.msgs[0])
        minute = 60 * 10**9
        bad_poses = []
        for stamp, quaternion in ((now - minute, 1.0), (now + minute, 1.0), (now, 2.0)):
            pose = PoseStamped(header=convert.header(stamp, "base_link"))
            pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = 0.25, 0.25, 0.25
            pose.pose.orientation.w = quaternion
            bad_poses.append(pose)
        for pose in bad_poses:
            good_input(target, node.get_clock().now().nanoseconds)
            on_pose(pose)
            on_action(action(node.get_clock().now().nanoseconds, 0.1))  # outward: refused at the edge
        assert all(is_hold(m) for m in arm.msgs[1:]), [list(m.action) for m in arm.msgs]
        assert node._ee[0] == pytest.approx(0.4995)
    finally:
        node.destroy_node()
        context.try_shutdown()


def test_png_helpers():
    ok = CompressedImage(format="png", data=png(16, 16))
    assert convert.compressed_to_numpy(ok).shape == (16, 16, 3)
    import random

    rng = random.Random(0)
    for _ in range(20):
        with pytest.raises(convert.ConversionError):
            convert.compressed_to_numpy(CompressedImage(format="png", data=truncated_png(rng)))


def test_stamp_problem():
    now = _now()
    assert convert.stamp_problem(now, now, None, 0.5) is None
    assert convert.stamp_problem(now + 10**8, now, now, 0.5) is None  # a little ahead: clock skew
    assert "back" in convert.stamp_problem(now - 1, now, now, 0.5)
    assert "future" in convert.stamp_problem(now + 10**9, now, None, 0.5)


def test_report_and_doc_sections(tmp_path):
    report = FuzzReport(seed=1, messages=3)
    report.per_topic["n /t"] += 3
    report.responsive = {"n": True}
    assert report.ok and "**3** bad messages" in report.markdown()
    report.crash("n", "/t", "image.empty", ValueError("boom"))
    assert not report.ok and json.loads(json.dumps(report.to_dict()))["crash_count"] == 1
    doc = tmp_path / "R.md"
    write_doc_section(doc, "fuzz", "Fuzz", "body-1")
    write_doc_section(doc, "soak", "Soak", "body-2")
    write_doc_section(doc, "fuzz", "Fuzz", "body-3")
    text = doc.read_text()
    assert "body-3" in text and "body-1" not in text and "body-2" in text and text.count("## Fuzz") == 1
    assert text.startswith("# Reliability") and text.index("## Fuzz") < text.index("## Soak")


def test_every_callback_survives_a_fuzz_sample_and_no_bad_data_reaches_the_arm(fuzz_env, tmp_path):
    from vla_accel_ros.cli import main

    out, doc = tmp_path / "fuzz.json", tmp_path / "RELIABILITY.md"
    argv = ["fuzz", "--messages", str(SAMPLE), "--seed", "11", "--json", str(out), "--doc", str(doc)]
    if fuzz_env:
        argv += ["--checkpoint", fuzz_env]
    rc = main(argv)
    data = json.loads(out.read_text())
    assert data["crash_count"] == 0, data["crashes"]
    assert data["commands_from_bad_data_count"] == 0, data["commands_from_bad_data"]
    assert data["non_finite_outputs"] == []
    assert all(data["responsive"].values()) and len(data["responsive"]) == 9, data["responsive"]
    assert rc == 0 and data["ok"]
    assert data["messages"] + data["unsendable"] == SAMPLE
    # Every subscription of every node got bad data (35 callbacks: the controller with each output type,
    # its joint_states for joint_trajectory and its ee_pose with a workspace box), plus the mixed steps.
    plain = [k for k in data["per_topic"] if "among good inputs" not in k]
    assert len(plain) == 35, sorted(plain)
    assert {
        "controller_joints /fuzz/controller_joints/joint_states",
        "controller_box /fuzz/controller_box/ee_pose",
    } <= set(plain)
    assert data["mixed_steps"] == int(SAMPLE * 0.2)
    assert data["mixed_controller_steps"] == int(SAMPLE * 0.05)
    mixed = {k for k in data["per_topic"] if "among good inputs" in k}
    assert {
        "controller_joints joint_states (among good inputs)",
        "controller_box ee_pose (among good inputs)",
    } <= mixed
    assert any(k.startswith("ee_pose.") for k in data["per_label"])
    assert any(k in data["per_label"] for k in JOINT_GUARD_DEFECTS)
    assert "Bad data (fuzz)" in doc.read_text()


def test_the_oracle_catches_a_controller_that_trusts_stale_actions(fuzz_env, monkeypatch):
    from vla_accel_ros.control.command_gate import CommandGate
    from vla_accel_ros.ros.fuzz_driver import run_fuzz

    monkeypatch.setattr(CommandGate, "image_problem", lambda *a: None)
    report = run_fuzz(SAMPLE, seed=11, model=fuzz_env, log=lambda _s: None)
    assert not report.crashes
    bad = [c for c in report.commands_from_bad_data if "image_" in c and "stamp" in c]
    assert bad, report.commands_from_bad_data
    assert not report.ok and math.isfinite(report.duration_s)


def test_the_oracle_catches_a_controller_that_trusts_bad_joint_states_and_poses(fuzz_env, monkeypatch):
    """Mutations of the new paths: a joint_trajectory controller without the joint_states jump check, and
    a controller that takes any ee_pose as current: the same sample must report commands from both."""
    from vla_accel_ros.ros import fuzz_targets
    from vla_accel_ros.ros.controller_node import ControllerNode
    from vla_accel_ros.ros.fuzz_driver import run_fuzz

    monkeypatch.setitem(fuzz_targets.JOINT_SPACE, "max_joint_state_jump", 0.0)  # 0: no jump check

    def any_pose(node, msg):  # the controller before its ee_pose checks: any position, received = fresh
        p = msg.pose.position
        node._ee, node._ee_ns = np.array([p.x, p.y, p.z]), node.get_clock().now().nanoseconds

    monkeypatch.setattr(ControllerNode, "_on_ee_pose", any_pose)
    report = run_fuzz(SAMPLE, seed=11, model=fuzz_env, log=lambda _s: None)
    assert not report.crashes
    bad = report.commands_from_bad_data
    assert any("controller_joints commanded after a bad joint_states" in c for c in bad), bad
    assert any("controller_box commanded after a bad ee_pose" in c for c in bad), bad
