"""Message <-> numpy conversions: round trips, and refusals that name the problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from test_action_space import ARM, JOINT8, OPENVLA
from vla_accel_ros.msg import VlaAction

from vla_accel_ros.control.action_space import LIBERO, META_WORLD
from vla_accel_ros.kinematics import KinematicProxies, ProxyCalibration
from vla_accel_ros.policy.runtime import ActionResult
from vla_accel_ros.ros import convert as C

STAMP = 1_700_000_000_123_456_789


def _rgb(h=6, w=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_stamps_round_trip():
    assert C.stamp_to_ns(C.ns_to_stamp(STAMP)) == STAMP
    t = C.ns_to_stamp(STAMP)
    assert (t.sec, t.nanosec) == (1_700_000_000, 123_456_789)


def test_rgb8_round_trip_keeps_pixels_stamp_and_frame():
    img = _rgb()
    msg = C.numpy_to_image(img, STAMP, "cam")
    assert (msg.height, msg.width, msg.step, msg.encoding) == (6, 5, 15, "rgb8")
    assert C.stamp_to_ns(msg.header.stamp) == STAMP and msg.header.frame_id == "cam"
    back = C.image_to_numpy(msg)
    assert back.dtype == np.uint8 and np.array_equal(back, img)


def test_bgr8_and_mono8_come_out_as_rgb():
    img = _rgb()
    msg = C.numpy_to_image(img, STAMP, "cam")
    bgr = Image(height=6, width=5, encoding="bgr8", step=15, data=img[:, :, ::-1].tobytes())
    assert np.array_equal(C.image_to_numpy(bgr), img)
    gray = img[:, :, 0]
    mono = Image(height=6, width=5, encoding="mono8", step=5, data=gray.tobytes())
    out = C.image_to_numpy(mono)
    assert out.shape == (6, 5, 3) and all(np.array_equal(out[:, :, c], gray) for c in range(3))
    assert msg.encoding == "rgb8"


def test_row_padding_is_dropped():
    img = _rgb()
    padded = np.zeros((6, 20), dtype=np.uint8)
    padded[:, :15] = img.reshape(6, 15)
    msg = Image(height=6, width=5, encoding="rgb8", step=20, data=padded.tobytes())
    assert np.array_equal(C.image_to_numpy(msg), img)


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"encoding": "32FC1"}, "encoding '32FC1' not supported"),
        ({"data": b"\x00" * 10}, "10 bytes"),
        ({"height": 0, "data": b""}, "empty image"),
        ({"step": 10}, "step 10 is smaller"),
    ],
)
def test_bad_images_are_refused_with_the_reason(kwargs, fragment):
    base = {"height": 6, "width": 5, "encoding": "rgb8", "step": 15, "data": _rgb().tobytes()}
    msg = Image(**{**base, **kwargs})
    with pytest.raises(C.ConversionError, match=fragment):
        C.image_to_numpy(msg)


def test_numpy_to_image_refuses_wrong_arrays():
    with pytest.raises(C.ConversionError):
        C.numpy_to_image(np.zeros((4, 4), dtype=np.uint8), STAMP, "")
    with pytest.raises(C.ConversionError):
        C.numpy_to_image(np.zeros((4, 4, 3), dtype=np.float32), STAMP, "")


def test_compressed_png_is_lossless_and_jpeg_close():
    img = _rgb(16, 16)
    png = C.numpy_to_compressed(img, STAMP, "cam", "png")
    assert np.array_equal(C.compressed_to_numpy(png), img)
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], (32, 1, 3))
    jpeg = C.numpy_to_compressed(smooth, STAMP, "cam", "jpeg")
    out = C.compressed_to_numpy(jpeg)
    assert out.shape == smooth.shape and np.abs(out.astype(int) - smooth).mean() < 4


def test_bad_compressed_images_are_refused():
    with pytest.raises(C.ConversionError, match="empty"):
        C.compressed_to_numpy(CompressedImage(format="png"))
    with pytest.raises(C.ConversionError, match="cannot decode"):
        C.compressed_to_numpy(CompressedImage(format="jpeg", data=b"not an image at all"))


def test_joint_state_to_arrays_and_back():
    names = [f"j{i}" for i in range(9)]
    positions = np.linspace(-1, 1, 9)
    msg = C.arrays_to_joint_state(names, positions, positions * 2, STAMP)
    got_names, got = C.joint_state_to_arrays(msg, expected_names=names)
    assert got_names == names and np.allclose(got, positions) and got.dtype == np.float64
    assert list(msg.velocity) == pytest.approx(list(positions * 2))


@pytest.mark.parametrize(
    "names,positions,expected,fragment",
    [
        (["a", "b"], [0.0, math.nan], None, "NaN or inf for b"),
        (["a", "b"], [0.0, math.inf], None, "NaN or inf"),
        (["a", "b", "c"], [0.0, 1.0], None, "3 names but 2 positions"),
        ([], [], None, "no positions"),
        (["a", "b"], [0.0, 1.0], ["a", "b", "c"], "expected 3"),
        (["a", "x"], [0.0, 1.0], ["a", "b"], "differ"),
    ],
)
def test_bad_joint_states_are_refused(names, positions, expected, fragment):
    msg = JointState(name=names, position=positions)
    with pytest.raises(C.ConversionError, match=fragment):
        C.joint_state_to_arrays(msg, expected_names=expected)


def _result(**kw):
    base = dict(
        action=np.array([0.1, -0.2, 0.3, 1.0], dtype=np.float32),
        token_ids=np.array([300, 301, 302, 303]),
        precision="fp32",
        decoding="kerv",
        threshold=7.5,
        draft_tokens=4,
        accepted_tokens=3,
        kalman_filled=[2],
        target_passes=2,
        fallback=None,
        timings_ms={"preprocess": 0.5, "prefill": 10.0, "decode": 4.0},
    )
    base.update(kw)
    return ActionResult(**base)


def test_action_result_round_trips_through_vla_action():
    result = _result()
    msg = C.action_result_to_msg(result, STAMP + 5, STAMP, "base_link")
    assert C.stamp_to_ns(msg.image_stamp) == STAMP and C.stamp_to_ns(msg.header.stamp) == STAMP + 5
    assert msg.total_ms == pytest.approx(14.5) and not msg.fallback
    back = ActionResult(**C.vla_action_fields(msg))
    assert np.allclose(back.action, result.action) and list(back.token_ids) == [300, 301, 302, 303]
    assert (back.precision, back.decoding, back.kalman_filled, back.fallback) == ("fp32", "kerv", [2], None)
    assert back.timings_ms == pytest.approx(result.timings_ms)
    assert (back.draft_tokens, back.accepted_tokens, back.target_passes) == (4, 3, 2)


def test_fallback_reason_survives():
    msg = C.action_result_to_msg(_result(fallback="precision 'w4a4' unavailable"), STAMP, STAMP)
    assert msg.fallback and msg.fallback_reason == "precision 'w4a4' unavailable"
    assert C.vla_action_fields(msg)["fallback"] == "precision 'w4a4' unavailable"


def test_bad_vla_actions_are_refused():
    with pytest.raises(C.ConversionError, match="NaN"):
        C.vla_action_fields(VlaAction(action=[0.0, math.nan, 0.0, 0.0]))
    with pytest.raises(C.ConversionError, match="empty"):
        C.vla_action_fields(VlaAction())
    with pytest.raises(C.ConversionError, match="stage names"):
        C.vla_action_fields(VlaAction(action=[0.0] * 4, stage_names=["a"], stage_ms=[]))


def test_with_action_keeps_statistics_and_replaces_action_and_stamp():
    msg = C.action_result_to_msg(_result(), STAMP + 5, STAMP)
    out = C.with_action(msg, np.array([0.0, 0.0, 0.0, 1.0]), STAMP + 9)
    assert list(out.action) == [0.0, 0.0, 0.0, 1.0] and C.stamp_to_ns(out.header.stamp) == STAMP + 9
    assert C.stamp_to_ns(out.image_stamp) == STAMP and out.accepted_tokens == 3
    assert list(msg.action) == pytest.approx([0.1, -0.2, 0.3, 1.0])  # the original is untouched


def test_twist_from_action_and_back():
    four = np.array([0.5, -1.0, 0.25, 0.7], dtype=np.float32)
    msg = C.twist_from_action(four, 0.1, 0.5, STAMP, "base_link")
    assert (msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z) == pytest.approx((0.05, -0.1, 0.025))
    assert msg.twist.angular.x == 0.0 and msg.header.frame_id == "base_link"
    assert np.allclose(C.action_from_twist(msg, 0.1, gripper=0.7), four)
    seven = np.array([0, 0, 0, 0.2, -0.4, 1.0, 1.0], dtype=np.float32)
    msg7 = C.twist_from_action(seven, 0.1, 0.5, STAMP, "tool0")
    assert (msg7.twist.angular.x, msg7.twist.angular.y, msg7.twist.angular.z) == pytest.approx(
        (0.1, -0.2, 0.5)
    )
    with pytest.raises(C.ConversionError, match="4-D or 7-D"):
        C.twist_from_action(np.zeros(5), 0.1, 0.5, STAMP, "")
    with pytest.raises(C.ConversionError, match="NaN"):
        C.twist_from_action(np.array([math.nan, 0, 0, 0]), 0.1, 0.5, STAMP, "")


def test_seven_d_twist_back_to_an_action():
    seven = np.array([0.2, 0, -0.4, 0.1, -0.3, 0.5, -1.0], dtype=np.float32)
    msg = C.twist_for_space(seven, LIBERO, 20.0, STAMP)  # 1.0 m/s and 10 rad/s per unit
    assert (msg.twist.angular.y, msg.twist.linear.z) == pytest.approx((-3.0, -0.4))
    assert np.allclose(C.action_from_twist(msg, 1.0, gripper=-1.0, angular_scale=10.0), seven)
    assert C.action_from_twist(msg, 1.0, gripper=-1.0).size == 4  # a 4-D arm ignores the rotation
    with pytest.raises(C.ConversionError, match="angular scale"):
        C.action_from_twist(msg, 1.0, gripper=0.0, angular_scale=0.0)


def test_gripper_command_back_to_the_sim_arms_value():
    for value in (-1.0, 0.0, 1.0):
        msg = C.gripper_command(np.array([0, 0, 0, value]), META_WORLD)
        assert C.gripper_value(msg, 0.04, 0.0) == pytest.approx(value)
    assert C.gripper_value(Float64MultiArray(data=[0.5]), 0.04, 0.0) == -1.0  # clamped: wider than open
    with pytest.raises(C.ConversionError, match="one position"):
        C.gripper_value(Float64MultiArray(data=[0.0, 0.0]), 0.04, 0.0)
    with pytest.raises(C.ConversionError, match="not finite"):
        C.gripper_value(Float64MultiArray(data=[math.nan]), 0.04, 0.0)


def test_twist_for_a_declared_space():
    msg = C.twist_for_space(np.array([0.2, -0.4, 0.0, 1.0]), META_WORLD, 10.0, STAMP)
    assert (msg.twist.linear.x, msg.twist.linear.y) == pytest.approx((0.02, -0.04))
    assert msg.header.frame_id == "base_link" and C.stamp_to_ns(msg.header.stamp) == STAMP
    msg = C.twist_for_space(np.array([0, 0, 0.5, 0.1, 0, -0.2, 1.0]), OPENVLA, 10.0, STAMP)
    assert msg.twist.linear.z == pytest.approx(0.1) and msg.header.frame_id == "tool0"
    assert (msg.twist.angular.x, msg.twist.angular.z) == pytest.approx((0.1, -0.2))
    with pytest.raises(C.ConversionError, match="7 values, the action space 4"):
        C.twist_for_space(np.zeros(7), META_WORLD, 10.0, STAMP)


def test_joint_trajectory_one_point_from_the_current_positions():
    current = dict.fromkeys(ARM, 0.5) | {"finger_joint": 0.02}
    msg = C.joint_trajectory(np.array([1.0, 0, 0, 0, 0, 0, -1.0, 1.0]), JOINT8, current, 0.1)
    assert list(msg.joint_names) == [*ARM, "finger_joint"] and len(msg.points) == 1
    point = msg.points[0]
    assert list(point.positions) == pytest.approx([0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.45, 0.04])  # +1 = open
    assert (point.time_from_start.sec, point.time_from_start.nanosec) == (0, 100_000_000)
    assert C.stamp_to_ns(msg.header.stamp) == 0  # the controller starts it on receipt
    kept = C.joint_trajectory(np.zeros(8), JOINT8, current, 2.5, keep_gripper=True)
    assert kept.points[0].positions[7] == pytest.approx(0.02) and kept.points[0].time_from_start.sec == 2
    with pytest.raises(C.ConversionError, match="no joint_states position for joint 'finger_joint'"):
        C.joint_trajectory(np.zeros(8), JOINT8, dict.fromkeys(ARM, 0.0), 0.1)
    with pytest.raises(C.ConversionError, match="NaN"):
        C.joint_trajectory(np.full(8, math.nan), JOINT8, current, 0.1)


def test_pose_position_refuses_non_finite():
    msg = PoseStamped()
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = 0.4, -0.1, 0.3
    assert C.pose_position(msg).tolist() == pytest.approx([0.4, -0.1, 0.3])
    msg.pose.position.y = math.inf
    with pytest.raises(C.ConversionError, match="not finite"):
        C.pose_position(msg)


def test_kinematic_state_from_the_proxies():
    proxies = KinematicProxies(ProxyCalibration(mu95=1.0, nu95=0.5, phi95=0.5), 4)
    proxies.update(np.array([0.1, 0.0, 0.0, 0.0]))
    values = proxies.update(np.array([0.5, 0.2, 0.0, 1.0]))
    joints = C.JointDerivativesView(["a", "b"], np.array([1.0, 2.0]), None, None)
    msg = C.kinematic_state_msg(values, joints, STAMP)
    assert msg.sensitivity == pytest.approx(values.sensitivity, rel=1e-6)
    assert msg.fluctuation == pytest.approx(values.fluctuation, rel=1e-6)
    assert msg.translation_speed == pytest.approx(values.translation_speed, rel=1e-6)
    assert list(msg.joint_names) == ["a", "b"] and list(msg.joint_velocity) == [1.0, 2.0]
    assert list(msg.joint_acceleration) == [] and C.stamp_to_ns(msg.header.stamp) == STAMP


def test_kalman_prediction_clamps_infinite_variance_and_reads_back():
    msg = C.kalman_prediction_msg(np.zeros(4), np.full(4, np.inf), 0, False, STAMP)
    assert all(math.isfinite(v) for v in msg.variance) and not msg.valid
    assert C.kalman_action(msg) is None
    msg = C.kalman_prediction_msg(np.array([0.1, 0.2, 0.3, 0.4]), np.full(4, 0.01), 5, True, STAMP)
    assert np.allclose(C.kalman_action(msg), [0.1, 0.2, 0.3, 0.4]) and msg.history_length == 5


def test_accel_config_refuses_non_finite_threshold():
    msg = C.accel_config_msg("fp32", "kerv", 7.0, "S=0.7>0.5", STAMP)
    assert (msg.precision, msg.decoding, msg.threshold, msg.reason) == ("fp32", "kerv", 7.0, "S=0.7>0.5")
    with pytest.raises(C.ConversionError, match="threshold"):
        C.accel_config_msg("fp32", "kerv", math.nan, "", STAMP)
