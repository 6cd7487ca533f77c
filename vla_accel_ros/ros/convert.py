"""ROS messages <-> numpy arrays and the algorithm dataclasses, with validation.

Every check that decides whether a message may be acted on lives here, so nodes only catch
`ConversionError` (a ValueError whose message names the problem), report it and drop the message.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray, Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from vla_accel_ros.control.action_space import ActionSpace
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction

IMAGE_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
# Largest decoded compressed image (pixels): far above any camera, far below what exhausts memory.
MAX_DECODED_PIXELS = 8192 * 8192
# No joint of any arm is this far from zero (rad or m): such a value is a broken driver, not a pose.
MAX_ABS_JOINT_POSITION = 1e4
# No end effector is this far from its frame's origin (m; the workspace box's own range): a broken pose.
MAX_ABS_EE_POSITION = 1e3
# tf2's tolerance on |q|^2 - 1: a quaternion further from unit length is no rotation (tf2 refuses it too).
QUATERNION_TOLERANCE = 0.01
MAX_STAMP_NS = (2**31 - 1) * 1_000_000_000  # builtin_interfaces/Time.sec is an int32


class ConversionError(ValueError):
    """A message that cannot be converted; the message names the problem."""


# --- stamps -----------------------------------------------------------------------------------------


def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str = "") -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def stamp_problem(stamp_ns: int, now_ns: int, last_ns: int | None, tolerance_s: float) -> str | None:
    """Why a sensor stamp must not be used (None if it may): it goes back from the last accepted one, or
    lies more than `tolerance_s` ahead of the node's clock (one such stamp would make every later, correct
    one look like it goes back, and would never go stale)."""
    if last_ns is not None and stamp_ns < last_ns:
        return f"stamp goes back by {(last_ns - stamp_ns) * 1e-9:.3f} s"
    ahead_s = (stamp_ns - now_ns) * 1e-9
    if ahead_s > tolerance_s:
        return f"stamp is {ahead_s:.3f} s in the future (clock skew above {tolerance_s:g} s?)"
    return None


def episode_event(text: str) -> tuple[str | None, int]:
    """sim/episode JSON -> (event, stamp_ns); ConversionError for anything but an object with a sane stamp."""
    try:
        event = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as err:
        raise ConversionError(f"episode event is not JSON: {err}") from err
    if not isinstance(event, dict):
        raise ConversionError(f"episode event is not a JSON object: {type(event).__name__}")
    stamp = event.get("stamp_ns", 0)
    if isinstance(stamp, bool) or not isinstance(stamp, int) or not 0 <= stamp <= MAX_STAMP_NS:
        raise ConversionError(f"episode event stamp_ns {str(stamp)[:40]!r} is not a valid stamp")
    kind = event.get("event")
    return (kind if isinstance(kind, str) else None), stamp


# --- images -----------------------------------------------------------------------------------------


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, mono8) -> H x W x 3 uint8 RGB (a copy)."""
    channels = IMAGE_ENCODINGS.get(msg.encoding)
    if channels is None:
        raise ConversionError(
            f"image encoding {msg.encoding!r} not supported (use one of {', '.join(IMAGE_ENCODINGS)})"
        )
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty image ({w} x {h})")
    if step < w * channels:
        raise ConversionError(f"image step {step} is smaller than width {w} x {channels} channel(s)")
    size = len(msg.data)
    if size != step * h:
        raise ConversionError(f"image data has {size} bytes, step {step} x height {h} = {step * h}")
    rows = np.frombuffer(msg.data, dtype=np.uint8)  # array.array('B'): no copy
    pixels = rows.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return pixels.copy()


def numpy_to_image(image: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """H x W x 3 uint8 RGB -> sensor_msgs/Image rgb8."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ConversionError(f"expected an H x W x 3 uint8 array, got {getattr(image, 'shape', image)!r}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ConversionError("empty image")
    h, w = image.shape[:2]
    msg = Image(
        header=header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3
    )
    msg.data = np.ascontiguousarray(image).tobytes()
    return msg


def compressed_to_numpy(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, ...) -> H x W x 3 uint8 RGB."""
    from PIL import Image as PilImage  # Pillow: only nodes configured for compressed images need it

    if len(msg.data) == 0:
        raise ConversionError("empty compressed image")
    bomb = (PilImage.DecompressionBombError, PilImage.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PilImage.DecompressionBombWarning)
            with PilImage.open(io.BytesIO(bytes(msg.data))) as img:
                w, h = img.size
                rgb = None if w * h > MAX_DECODED_PIXELS else np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, *bomb) as err:
        raise ConversionError(f"cannot decode compressed image (format {msg.format[:40]!r}): {err}") from err
    if rgb is None:
        raise ConversionError(f"compressed image declares {w} x {h} pixels, over {MAX_DECODED_PIXELS}")
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ConversionError(f"decoded image has shape {rgb.shape}")
    return rgb


def numpy_to_compressed(image: np.ndarray, stamp_ns: int, frame_id: str, fmt: str = "png") -> CompressedImage:
    """H x W x 3 uint8 RGB -> CompressedImage (png or jpeg); for tests and recorders."""
    from PIL import Image as PilImage

    buf = io.BytesIO()
    PilImage.fromarray(image, mode="RGB").save(buf, format=fmt.upper())
    return CompressedImage(header=header(stamp_ns, frame_id), format=fmt, data=buf.getvalue())


# --- joint states -----------------------------------------------------------------------------------


def joint_state_to_arrays(
    msg: JointState, expected_names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """JointState -> (names, positions float64); NaN/inf, length mismatches and unexpected names refused."""
    names = list(msg.name)
    positions = np.asarray(msg.position, dtype=np.float64)
    if positions.size == 0:
        raise ConversionError("joint state has no positions")
    if names and len(names) != positions.size:
        raise ConversionError(f"joint state has {len(names)} names but {positions.size} positions")
    if not np.isfinite(positions).all():
        bad = [names[i] if names else str(i) for i in np.flatnonzero(~np.isfinite(positions))]
        raise ConversionError(f"joint state position is NaN or inf for {', '.join(bad)}")
    if (np.abs(positions) > MAX_ABS_JOINT_POSITION).any():
        i = int(np.argmax(np.abs(positions)))
        raise ConversionError(
            f"joint state position {positions[i]:.3g} of {names[i] if names else i} is not physical "
            f"(|q| > {MAX_ABS_JOINT_POSITION:g})"
        )
    if expected_names is not None:
        if positions.size != len(expected_names):
            raise ConversionError(
                f"joint state has {positions.size} positions, expected {len(expected_names)}"
            )
        if names and names != list(expected_names):
            raise ConversionError(
                f"joint names {names} differ from the first message's {list(expected_names)}"
            )
    return names, positions


def arrays_to_joint_state(
    names: Sequence[str], positions: np.ndarray, velocities: np.ndarray | None, stamp_ns: int
) -> JointState:
    msg = JointState(header=header(stamp_ns))
    msg.name = list(names)
    msg.position = [float(v) for v in positions]
    if velocities is not None:
        msg.velocity = [float(v) for v in velocities]
    return msg


# --- actions ----------------------------------------------------------------------------------------


def action_array(values: Sequence[float], what: str = "action") -> np.ndarray:
    """float32 action vector; empty or non-finite is refused."""
    a = np.asarray(values, dtype=np.float32).reshape(-1)
    if a.size == 0:
        raise ConversionError(f"{what} is empty")
    if not np.isfinite(a).all():
        raise ConversionError(f"{what} contains NaN or inf: {a.tolist()}")
    return a


def action_result_to_msg(result: Any, stamp_ns: int, image_stamp_ns: int, frame_id: str = "") -> VlaAction:
    """ActionResult (vla_accel_ros.policy.runtime) -> VlaAction; `fallback` is None or the reason."""
    msg = VlaAction(header=header(stamp_ns, frame_id), image_stamp=ns_to_stamp(image_stamp_ns))
    msg.action = [float(v) for v in np.asarray(result.action, dtype=np.float32).reshape(-1)]
    msg.token_ids = [int(v) for v in np.asarray(result.token_ids).reshape(-1)]
    msg.precision = str(result.precision)
    msg.decoding = str(result.decoding)
    msg.threshold = float(result.threshold)
    msg.draft_tokens = int(result.draft_tokens)
    msg.accepted_tokens = int(result.accepted_tokens)
    msg.kalman_filled = [int(v) for v in result.kalman_filled]
    msg.target_passes = int(result.target_passes)
    msg.fallback = bool(result.fallback)
    msg.fallback_reason = result.fallback or ""
    timings = dict(result.timings_ms)
    msg.stage_names = list(timings)
    msg.stage_ms = [float(v) for v in timings.values()]
    msg.total_ms = float(sum(timings.values()))
    return msg


def vla_action_fields(msg: VlaAction) -> dict[str, Any]:
    """VlaAction -> keyword arguments of ActionResult (validated action)."""
    if len(msg.stage_names) != len(msg.stage_ms):
        raise ConversionError(
            f"VlaAction has {len(msg.stage_names)} stage names but {len(msg.stage_ms)} values"
        )
    return {
        "action": action_array(msg.action),
        "token_ids": np.asarray(msg.token_ids, dtype=np.int64),
        "precision": msg.precision,
        "decoding": msg.decoding,
        "threshold": float(msg.threshold),
        "draft_tokens": int(msg.draft_tokens),
        "accepted_tokens": int(msg.accepted_tokens),
        "kalman_filled": [int(v) for v in msg.kalman_filled],
        "target_passes": int(msg.target_passes),
        "fallback": (msg.fallback_reason or "fallback") if msg.fallback else None,
        "timings_ms": {n: float(v) for n, v in zip(msg.stage_names, msg.stage_ms, strict=True)},
    }


def with_action(msg: VlaAction, action: np.ndarray, stamp_ns: int) -> VlaAction:
    """A copy of `msg` carrying `action` and a new header stamp (image_stamp and statistics kept)."""
    out = VlaAction()
    for name in VlaAction.get_fields_and_field_types():
        setattr(out, name, getattr(msg, name))
    out.header = header(stamp_ns, msg.header.frame_id)
    out.action = [float(v) for v in np.asarray(action, dtype=np.float32).reshape(-1)]
    return out


def twist_from_action(
    action: np.ndarray, linear_scale: float, angular_scale: float, stamp_ns: int, frame_id: str
) -> TwistStamped:
    """Delta action (dx, dy, dz[, droll, dpitch, dyaw], gripper) -> TwistStamped velocity.

    linear = xyz * linear_scale (m/s per action unit); angular = rpy * angular_scale for 7-D actions,
    zero for 4-D ones. The gripper has no Twist field: it goes to the gripper driver separately.
    """
    a = action_array(action)
    if a.size not in (4, 7):
        raise ConversionError(f"a Twist needs a 4-D or 7-D delta action, got {a.size} values")
    angular = a[3:6] * angular_scale if a.size == 7 else np.zeros(3)
    return _twist(a[:3] * linear_scale, angular, stamp_ns, frame_id)


def twist_for_space(action: np.ndarray, space: ActionSpace, rate_hz: float, stamp_ns: int) -> TwistStamped:
    """Action of a declared end-effector space -> TwistStamped in its frame (velocities from units/scales)."""
    a = action_array(action)
    if a.size != space.dim:
        raise ConversionError(f"action has {a.size} values, the action space {space.dim}")
    linear, angular = space.twist(a, rate_hz)
    return _twist(linear, angular, stamp_ns, space.frame)


def gripper_command(action: np.ndarray, space: ActionSpace) -> Float64MultiArray:
    """The gripper dim of an action -> its joint position (gripper_open/closed_position) as the one-value
    Float64MultiArray a ros2_control forward_command_controller (position interface) takes."""
    a = action_array(action)
    if space.gripper_dim is None or a.size != space.dim:
        raise ConversionError(f"action has {a.size} values, the action space {space.dim} (gripper needed)")
    return Float64MultiArray(data=[space.gripper_position(float(a[space.gripper_dim]))])


def gripper_value(msg: Float64MultiArray, open_position: float, closed_position: float) -> float:
    """A gripper command (one joint position) -> the sim arms' normalized gripper value (-1 open, +1
    closed; inverse of gripper_command for that convention), clamped to [-1, 1]."""
    if len(msg.data) != 1:
        raise ConversionError(f"a gripper command holds one position, got {len(msg.data)} values")
    position = float(msg.data[0])
    if not math.isfinite(position):
        raise ConversionError(f"gripper command position is not finite: {position}")
    t = (position - open_position) / (closed_position - open_position)
    return float(min(1.0, max(-1.0, 2.0 * t - 1.0)))


def _twist(linear: np.ndarray, angular: np.ndarray, stamp_ns: int, frame_id: str) -> TwistStamped:
    msg = TwistStamped(header=header(stamp_ns, frame_id))
    msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = (float(v) for v in linear)
    msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = (float(v) for v in angular)
    return msg


def joint_trajectory(
    action: np.ndarray,
    space: ActionSpace,
    current: dict[str, float],
    duration_s: float,
    keep_gripper: bool = False,
) -> JointTrajectory:
    """One-point JointTrajectory (ros2_control JointTrajectoryController) reaching current + delta * scale
    after `duration_s`. The header stamp is zero: the controller starts it on receipt (no clock coupling)."""
    a = action_array(action)
    if a.size != space.dim:
        raise ConversionError(f"action has {a.size} values, the action space {space.dim}")
    try:
        positions = space.joint_targets(a, current, keep_gripper)
    except KeyError as err:
        raise ConversionError(f"no joint_states position for joint {err.args[0]!r}") from err
    sec, nanosec = divmod(round(duration_s * 1e9), 1_000_000_000)
    point = JointTrajectoryPoint(positions=positions, time_from_start=Duration(sec=sec, nanosec=nanosec))
    return JointTrajectory(joint_names=list(space.joint_names), points=[point])


def pose_position(msg: PoseStamped) -> np.ndarray:
    """End-effector position (x, y, z) of a PoseStamped. Refused: a non-finite or non-physical position,
    and a non-unit orientation (the pose is corrupt even where only its position is used)."""
    p, q = msg.pose.position, msg.pose.orientation
    xyz = np.array([p.x, p.y, p.z], dtype=np.float64)
    if not np.isfinite(xyz).all():
        raise ConversionError(f"end-effector pose position is not finite: {xyz.tolist()}")
    if (np.abs(xyz) > MAX_ABS_EE_POSITION).any():
        raise ConversionError(
            f"end-effector pose position {xyz.tolist()} is not physical (|x| > {MAX_ABS_EE_POSITION:g} m)"
        )
    norm2 = q.x * q.x + q.y * q.y + q.z * q.z + q.w * q.w
    if not (math.isfinite(norm2) and abs(norm2 - 1.0) <= QUATERNION_TOLERANCE):
        raise ConversionError(
            f"end-effector pose orientation ({q.x:g}, {q.y:g}, {q.z:g}, {q.w:g}) is not a unit quaternion"
        )
    return xyz


def action_from_twist(
    msg: TwistStamped, linear_scale: float, gripper: float, angular_scale: float | None = None
) -> np.ndarray:
    """TwistStamped -> delta action (inverse of twist_for_space; the gripper is given): 4-D (dx, dy, dz,
    gripper), or with `angular_scale` (rad/s per action unit) 7-D (dx, dy, dz, droll, dpitch, dyaw,
    gripper), the layout of the LIBERO arm's OSC_POSE actions."""
    for name, scale in (("linear", linear_scale), ("angular", angular_scale)):
        if scale is not None and not (math.isfinite(scale) and scale > 0):
            raise ConversionError(f"{name} scale must be a finite number > 0, got {scale}")
    lin = msg.twist.linear
    values = [lin.x / linear_scale, lin.y / linear_scale, lin.z / linear_scale]
    if angular_scale is not None:
        ang = msg.twist.angular
        values += [ang.x / angular_scale, ang.y / angular_scale, ang.z / angular_scale]
    return action_array(np.array([*values, gripper], dtype=np.float32), "twist")


# --- kinematics and control -------------------------------------------------------------------------


@dataclass(frozen=True)
class JointDerivativesView:
    """The joint derivatives a KinematicState carries, decoupled from the estimator that made them."""

    names: list[str]
    velocity: np.ndarray | None
    acceleration: np.ndarray | None
    jerk: np.ndarray | None


def kinematic_state_msg(values: Any, joints: JointDerivativesView | None, stamp_ns: int) -> KinematicState:
    """ProxyValues (vla_accel_ros.kinematics) + joint derivatives -> KinematicState."""
    msg = KinematicState(header=header(stamp_ns))
    msg.translation_speed = _finite(values.translation_speed, "translation_speed")
    msg.angular_jerk = _finite(values.angular_jerk, "angular_jerk")
    msg.motion_fineness = _finite(values.motion_fineness, "motion_fineness")
    msg.sensitivity = _finite(values.sensitivity, "sensitivity")
    msg.fluctuation = _finite(values.fluctuation, "fluctuation")
    if joints is not None:
        msg.joint_names = list(joints.names)
        for name in ("velocity", "acceleration", "jerk"):
            arr = getattr(joints, name)
            setattr(msg, f"joint_{name}", [] if arr is None else [float(v) for v in arr])
    return msg


def kalman_prediction_msg(
    mean: np.ndarray, variance: np.ndarray, history_length: int, valid: bool, stamp_ns: int
) -> KalmanPrediction:
    """`mean` may hold NaN in dimensions that must not be filled (KalmanCompensator.prediction)."""
    msg = KalmanPrediction(header=header(stamp_ns))
    # A filter without history predicts with infinite variance: clamp so the float32 field stays finite.
    msg.action = [float(v) for v in np.asarray(mean, dtype=np.float64)]
    msg.variance = [
        float(min(v, 3.0e38)) for v in np.nan_to_num(np.asarray(variance, dtype=np.float64), nan=3.0e38)
    ]
    msg.history_length = int(history_length)
    msg.valid = bool(valid)
    return msg


def kalman_action(msg: KalmanPrediction) -> np.ndarray | None:
    """The predicted action if the prediction is valid, else None; NaN marks a dimension not to fill."""
    if not msg.valid:
        return None
    a = np.asarray(msg.action, dtype=np.float32).reshape(-1)
    if a.size == 0:
        raise ConversionError("Kalman prediction is empty")
    if np.isinf(a).any():
        raise ConversionError(f"Kalman prediction contains inf: {a.tolist()}")
    return a


def accel_config_msg(
    precision: str, decoding: str, threshold: float, reason: str, stamp_ns: int
) -> AccelConfig:
    return AccelConfig(
        header=header(stamp_ns),
        precision=precision,
        decoding=decoding,
        threshold=_finite(threshold, "threshold"),
        reason=reason,
    )


def _finite(value: float, what: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise ConversionError(f"{what} is not finite: {value!r}")
    return v
