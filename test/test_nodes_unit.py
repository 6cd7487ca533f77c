"""Each node in one process, driven by a probe node; fakes stand in for the policy and the simulator.

The safety cases: a bad input, a stale or backwards stamp, a missing instruction, an unknown mode or a
bad parameter gives a WARN/ERROR on /diagnostics and no command; the watchdog holds the arm.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.parameter import Parameter
from ros_fixtures import diagnostics_from, ros_harness
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from test_action_space import ARM, JOINT8, OPENVLA
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction

from vla_accel_ros.control.action_space import LIBERO, META_WORLD, ActionSpace
from vla_accel_ros.params import ParameterError
from vla_accel_ros.policy.tokenizer import ActionTokenizer
from vla_accel_ros.ros import convert as C
from vla_accel_ros.ros.controller_node import ControllerNode
from vla_accel_ros.ros.diagnostics import ERROR, OK, WARN, level_of
from vla_accel_ros.ros.inference_node import InferenceNode
from vla_accel_ros.ros.kinematics_node import KinematicsNode
from vla_accel_ros.ros.qos import (
    camera_qos,
    command_qos,
    episode_qos,
    instruction_qos,
    joint_states_qos,
    vla_qos,
)
from vla_accel_ros.ros.sim_arm_node import SimArmNode

JOINTS = [f"right_j{i}" for i in range(7)] + ["r_close", "l_close"]


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def now_ns(ros) -> int:
    return ros.probe.get_clock().now().nanoseconds


def params(**values) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


class Diagnostics:
    """Collects /diagnostics and waits for a status of one node."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.msgs = ros.collect(DiagnosticArray, "/diagnostics", vla_qos())

    def wait(self, node: str, level: int, fragment: str, timeout_s: float = 6.0):
        def match():
            return next(
                (
                    s
                    for s in diagnostics_from(self.msgs, node)
                    if level_of(s) == level and fragment in s.message
                ),
                None,
            )

        assert self.ros.spin_until(lambda: match() is not None, timeout_s), (
            f"no {level} status of {node} with {fragment!r}; got "
            f"{[(level_of(s), s.message) for s in diagnostics_from(self.msgs, node)]}"
        )
        return match()


# --- inference node -----------------------------------------------------------------------------------


@dataclass
class FakeInput:
    images: dict
    joint_positions: np.ndarray
    instruction: str


@dataclass
class FakePolicy:
    """The runtime Policy's interface, with a recorded call log."""

    action_dim: int = 4
    cameras: list = field(default_factory=lambda: ["corner", "wrist"])
    # The runtime's action tokenizer (its bins bound a Kalman fill): [-1, 1] in every dim, as the builtin.
    actions: ActionTokenizer = field(default_factory=lambda: ActionTokenizer([-1.0] * 4, [1.0] * 4, 300))
    precisions: list = field(default_factory=lambda: ["int8", "fp32"])  # lowest first, top last
    delay_s: float = 0.0
    calls: list = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def act(self, inp, precision="fp32", decoding="ar", threshold=0.0, kalman_action=None):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.delay_s)
        self.in_flight -= 1
        self.calls.append(
            dict(
                inp=inp,
                precision=precision,
                decoding=decoding,
                threshold=threshold,
                kalman_action=kalman_action,
            )
        )
        return SimpleNamespace(
            action=np.array([0.1, 0.0, -0.1, 0.5], dtype=np.float32),
            token_ids=np.array([1, 2, 3, 4]),
            precision=precision,
            decoding=decoding,
            threshold=threshold,
            draft_tokens=0,
            accepted_tokens=0,
            kalman_filled=[],
            target_passes=1,
            fallback=None,
            timings_ms={"prefill": 1.0, "decode": 0.5},
        )


class Feeder:
    """Probe publishers for the inference node's inputs."""

    def __init__(self, ros) -> None:
        self.ros = ros
        self.cams = {
            "corner": ros.publisher(Image, "camera/image_raw", camera_qos()),
            "wrist": ros.publisher(Image, "wrist_camera/image_raw", camera_qos()),
        }
        self.joints = ros.publisher(JointState, "joint_states", joint_states_qos())
        self.instruction = ros.probe.create_publisher(String, "instruction", instruction_qos())
        self.config = ros.publisher(AccelConfig, "vla/accel_config", vla_qos())
        self.prediction = ros.publisher(KalmanPrediction, "vla/kalman_prediction", vla_qos())

    def say(self, text: str = "reach the red goal") -> None:
        self.instruction.publish(String(data=text))

    def joint_state(self, stamp_ns: int, positions=None) -> None:
        pos = np.linspace(-0.5, 0.5, 9) if positions is None else positions
        self.joints.publish(
            C.arrays_to_joint_state(JOINTS, np.asarray(pos, dtype=np.float64), None, stamp_ns)
        )

    def images(self, stamp_ns: int, corner: Image | None = None) -> None:
        img = np.full((8, 8, 3), 100, dtype=np.uint8)
        self.cams["corner"].publish(corner or C.numpy_to_image(img, stamp_ns, "corner"))
        self.cams["wrist"].publish(C.numpy_to_image(img + 1, stamp_ns, "wrist"))

    def step(self, stamp_ns: int, **kw) -> None:
        self.joint_state(stamp_ns, kw.pop("positions", None))
        self.images(stamp_ns, **kw)


def start_inference(ros, policy=None, loader=None, **overrides):
    policy = policy or FakePolicy()
    values = {"trigger": "image", "sync_timeout_s": 0.0, **overrides}
    node = InferenceNode(
        policy_loader=loader or (lambda p: (policy, FakeInput)),
        context=ros.context,
        parameter_overrides=params(**values),
    )
    ros.add(node)
    return node, policy


def ready_inference(ros, **kw):
    """An inference node that has loaded its policy and received an instruction, with the probes that feed
    its inputs and collect its actions: where every test of one decision step starts."""
    node, policy = start_inference(ros, **kw)
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    feed = Feeder(ros)
    feed.say()
    assert ros.spin_until(lambda: node._policy is not None and node._instruction is not None)
    return node, policy, actions, feed


def test_inference_acts_on_fresh_inputs_and_stamps_the_camera_time(ros):
    node, policy, actions, feed = ready_inference(ros)
    stamp = now_ns(ros)
    feed.step(stamp)
    assert ros.spin_until(lambda: actions, 5.0)
    msg = actions[0]
    assert C.stamp_to_ns(msg.image_stamp) == stamp
    assert C.stamp_to_ns(msg.header.stamp) >= stamp
    assert list(msg.action) == pytest.approx([0.1, 0.0, -0.1, 0.5])
    assert (msg.precision, msg.decoding, msg.fallback) == ("fp32", "ar", False)
    assert list(msg.stage_names) == ["prefill", "decode"] and msg.total_ms == pytest.approx(1.5)
    call = policy.calls[0]
    assert set(call["inp"].images) == {"corner", "wrist"} and call["inp"].images["wrist"][0, 0, 0] == 101
    assert call["inp"].instruction == "reach the red goal" and call["inp"].joint_positions.shape == (9,)
    assert call["kalman_action"] is None


@pytest.mark.parametrize(
    "bad,fragment",
    [
        (Image(height=8, width=8, encoding="16UC1", step=16, data=bytes(128)), "not supported"),
        (Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)), "100 bytes"),
    ],
)
def test_inference_drops_bad_images_with_a_warning(ros, bad, fragment):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros)
    feed.step(now_ns(ros), corner=bad)
    status = diags.wait("inference_node", WARN, "bad image from corner")
    assert fragment in status.message
    assert not actions and not policy.calls
    feed.step(now_ns(ros))  # a good frame afterwards is acted on
    assert ros.spin_until(lambda: actions, 5.0)


def test_inference_refuses_nan_joint_state(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros, sync_timeout_s=0.0)
    pos = np.zeros(9)
    pos[3] = math.nan
    feed.step(now_ns(ros), positions=pos)
    diags.wait("inference_node", WARN, "bad joint state")
    diags.wait("inference_node", WARN, "no joint state")  # the step ran and published nothing
    assert not actions and not policy.calls


def test_inference_refuses_stale_images(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros, max_image_age_s=0.5)
    feed.step(now_ns(ros) - 5_000_000_000)
    status = diags.wait("inference_node", WARN, "stale image")
    assert "5.0" in status.message or "s old" in status.message
    assert not actions and not policy.calls


def test_inference_refuses_backwards_joint_state_stamps(ros):
    diags = Diagnostics(ros)
    node, _ = start_inference(ros)
    feed = Feeder(ros)
    t = now_ns(ros)
    feed.joint_state(t)
    assert ros.spin_until(lambda: node._joints.stamp_ns is not None)
    feed.joint_state(t - 1_000_000_000)
    status = diags.wait("inference_node", WARN, "bad joint state")
    assert "goes back" in status.message
    assert node._joints.stamp_ns == t


def test_inference_without_instruction_publishes_nothing(ros):
    diags = Diagnostics(ros)
    node, policy = start_inference(ros)
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    feed = Feeder(ros)
    assert ros.spin_until(lambda: node._policy is not None)
    feed.step(now_ns(ros))
    diags.wait("inference_node", WARN, "no instruction")
    assert not actions and not policy.calls


def test_a_plain_volatile_publisher_reaches_the_instruction(ros):
    """`ros2 topic pub` publishes reliable and volatile, which a latched subscription does not match:
    the node's plain subscription takes it."""
    from rclpy.qos import QoSProfile

    node, _ = start_inference(ros)
    plain = ros.probe.create_publisher(String, "instruction", QoSProfile(depth=10))

    def delivered() -> bool:  # volatile: a message sent before discovery is gone, so send until it lands
        plain.publish(String(data="open the drawer"))
        return node._instruction == "open the drawer"

    assert ros.spin_until(delivered)


def test_vla_accel_instruct_waits_for_the_node_and_is_acknowledged(ros):
    from vla_accel_ros.ros.instruct import send_instruction

    node, _ = start_inference(ros)
    results = []
    send = lambda: results.append(send_instruction("push the puck", timeout_s=30.0))  # noqa: E731
    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert ros.spin_until(lambda: not sender.is_alive() and node._instruction == "push the puck")
    finally:
        sender.join()
    assert results[0].acknowledged and results[0].subscribers >= 1


def test_vla_accel_instruct_without_a_graph_publishes_nothing_and_fails():
    from vla_accel_ros.cli import main

    assert main(["instruct", "--timeout", "0.3", "reach the goal"]) == 1
    assert main(["instruct", "  "]) == 2


def test_inference_unknown_precision_falls_back_and_is_flagged(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros)
    feed.config.publish(C.accel_config_msg("w1a1", "ar", 0.0, "test", now_ns(ros)))
    assert ros.spin_until(lambda: node._config is not None and node._instruction is not None)
    feed.step(now_ns(ros))
    assert ros.spin_until(lambda: actions, 5.0)
    assert actions[0].fallback and "w1a1" in actions[0].fallback_reason
    assert actions[0].precision == "fp32" and policy.calls[0]["precision"] == "fp32"
    diags.wait("inference_node", WARN, "unknown precision")


def test_inference_passes_the_accel_config_and_a_valid_kalman_prediction(ros):
    node, policy, actions, feed = ready_inference(ros)
    t = now_ns(ros)
    feed.config.publish(C.accel_config_msg("int8", "kerv", 7.0, "test", t))
    feed.prediction.publish(
        C.kalman_prediction_msg(np.array([0.2, 0.1, 0.0, 0.5]), np.full(4, 0.01), 5, True, t)
    )
    assert ros.spin_until(lambda: node._config is not None and node._prediction is not None)
    feed.step(t)
    assert ros.spin_until(lambda: actions, 5.0)
    call = policy.calls[0]
    assert (call["precision"], call["decoding"], call["threshold"]) == ("int8", "kerv", 7.0)
    assert np.allclose(call["kalman_action"], [0.2, 0.1, 0.0, 0.5])
    assert (actions[0].precision, actions[0].decoding, actions[0].threshold) == ("int8", "kerv", 7.0)


def test_inference_image_trigger_waits_for_the_prediction_of_the_same_step(ros):
    node, policy, actions, feed = ready_inference(ros, sync_timeout_s=3.0)
    t0 = now_ns(ros)
    feed.prediction.publish(C.kalman_prediction_msg(np.zeros(4), np.full(4, np.inf), 0, False, t0))
    assert ros.spin_until(lambda: node._prediction is not None)
    t1 = t0 + 50_000_000
    feed.step(t1)  # the prediction on hand is older than these frames: wait for the step's own
    assert ros.spin_until(lambda: node._waiting_since is not None, 3.0)
    assert not policy.calls
    feed.prediction.publish(C.kalman_prediction_msg(np.zeros(4), np.full(4, 0.01), 3, False, t1))
    assert ros.spin_until(lambda: actions, 3.0)
    assert C.stamp_to_ns(actions[0].image_stamp) == t1 and len(policy.calls) == 1


def test_inference_timer_runs_one_call_at_a_time_and_counts_skipped_ticks(ros):
    slow = FakePolicy(delay_s=0.12)
    node, _ = start_inference(
        ros, policy=slow, trigger="timer", control_rate_hz=20.0, max_image_age_s=30.0, max_state_age_s=30.0
    )
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    feed = Feeder(ros)
    feed.say()
    feed.step(now_ns(ros))
    assert ros.spin_until(lambda: len(actions) >= 5, 10.0)
    assert slow.max_in_flight == 1
    assert node._worker.skipped > 0


def test_inference_timer_meets_its_rate(ros):
    node, _ = start_inference(
        ros, trigger="timer", control_rate_hz=20.0, max_image_age_s=30.0, max_state_age_s=30.0
    )
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    feed = Feeder(ros)
    feed.say()
    feed.step(now_ns(ros))
    assert ros.spin_until(lambda: len(actions) >= 1, 10.0)
    t0, n0 = time.monotonic(), len(actions)
    ros.spin_until(lambda: len(actions) - n0 >= 20, 5.0)
    rate = (len(actions) - n0) / (time.monotonic() - t0)
    assert 14.0 <= rate <= 22.0, rate


def test_inference_load_failure_is_reported_and_the_node_stays_up(ros):
    diags = Diagnostics(ros)

    def broken(_p):
        raise RuntimeError("checkpoint is corrupt")

    node, _ = start_inference(ros, loader=broken)
    status = diags.wait("inference_node", ERROR, "load failed: checkpoint is corrupt")
    assert status is not None
    n = len(diags.msgs)
    assert ros.spin_until(lambda: len(diags.msgs) > n, 3.0)  # still publishing


def test_inference_loading_does_not_block_the_executor(ros):
    diags = Diagnostics(ros)
    gate = threading.Event()

    def slow_loader(_p):
        gate.wait(10.0)
        return FakePolicy(), FakeInput

    node, _ = start_inference(ros, loader=slow_loader)
    diags.wait("inference_node", WARN, "loading model")
    gate.set()
    diags.wait("inference_node", OK, "running")


def test_inference_rejects_out_of_range_parameters_at_start_up(ros):
    with pytest.raises(ParameterError, match="control_rate_hz"):
        InferenceNode(
            policy_loader=lambda p: (FakePolicy(), FakeInput),
            context=ros.context,
            parameter_overrides=params(control_rate_hz=0.0),
        )


# --- controller node ----------------------------------------------------------------------------------


def raw_action(stamp_ns: int, action=(0.2, 0.0, -0.2, 1.0), image_stamp_ns: int | None = None) -> VlaAction:
    msg = VlaAction(header=C.header(stamp_ns), image_stamp=C.ns_to_stamp(image_stamp_ns or stamp_ns - 1000))
    msg.action = [float(v) for v in action]
    msg.precision, msg.decoding, msg.total_ms = "fp32", "ar", 3.0
    return msg


def start_controller(ros, **overrides):
    node = ControllerNode(context=ros.context, parameter_overrides=params(**overrides))
    ros.add(node)
    pub = ros.publisher(VlaAction, "vla/action_raw", vla_qos())
    return node, pub


def test_controller_passes_safe_actions_to_the_arm(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(ros, dry_run=False)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    safe = ros.collect(VlaAction, "vla/action_safe", vla_qos())
    markers = ros.collect(MarkerArray, "vla/markers", vla_qos())
    t = now_ns(ros)
    pub.publish(raw_action(t, image_stamp_ns=t - 5_000_000))
    assert ros.spin_until(lambda: commands and safe and markers, 5.0)
    assert list(commands[0].action) == pytest.approx([0.2, 0.0, -0.2, 1.0])
    assert C.stamp_to_ns(commands[0].image_stamp) == t - 5_000_000
    arrow, prediction, panel = markers[0].markers
    assert arrow.type == Marker.ARROW and arrow.points[1].x == pytest.approx(0.02)  # 0.2 x marker_scale 0.1
    assert prediction.action == Marker.DELETE  # no Kalman prediction yet
    assert panel.type == Marker.TEXT_VIEW_FACING and "fp32 ar" in panel.text and "3.0 ms" in panel.text
    status = diags.wait("controller_node", OK, "commanding the arm")
    values = {kv.key: kv.value for kv in status.values}
    assert values["commands"] == "1" and float(values["camera_to_command_ms"]) >= 5.0


def test_controller_clips_to_the_limits(ros):
    node, pub = start_controller(ros, dry_run=False, action_max=[0.1, 1.0, 1.0, 1.0])
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    pub.publish(raw_action(now_ns(ros), action=(0.5, 0.0, 0.0, 1.0)))
    assert ros.spin_until(lambda: commands, 5.0)
    assert commands[0].action[0] == pytest.approx(0.1)


def space_params(space: ActionSpace) -> dict:
    """Controller parameter overrides declaring `space` (clip to [-1, 1] in every dim, a decoder that
    emits [-1, 1], joint limits +-3 for joint_trajectory)."""
    return dict(
        action_names=list(space.names),
        action_kinds=list(space.kinds),
        action_units=list(space.units),
        action_scales=list(space.scales),
        action_frame=space.frame or "base_link",
        gripper_open_value=space.gripper_open_value,
        gripper_closed_value=space.gripper_closed_value,
        **({"joint_names": list(space.joint_names)} if space.joint_names else {}),
        action_min=[-1.0] * space.dim,
        action_max=[1.0] * space.dim,
        decoder_action_min=[-1.0] * space.dim,
        decoder_action_max=[1.0] * space.dim,
        **(
            {
                "joint_position_min": [-3.0] * len(space.joint_names),
                "joint_position_max": [3.0] * len(space.joint_names),
            }
            if space.joint_names
            else {}
        ),
    )


JOINT_POSITIONS = dict.fromkeys(ARM, 0.5) | {"finger_joint": 0.01}


def publish_joint_states(ros, node, positions=JOINT_POSITIONS) -> None:
    pub = ros.publisher(JointState, "joint_states", joint_states_qos())
    pub.publish(
        C.arrays_to_joint_state(list(positions), np.array(list(positions.values())), None, now_ns(ros))
    )
    assert ros.spin_until(lambda: node._gate.joints.stamp_ns is not None, 5.0)


COMMANDS = {"vla_action": VlaAction, "twist": TwistStamped, "joint_trajectory": JointTrajectory}


@pytest.mark.parametrize("output", list(COMMANDS))
def test_controller_dry_run_never_commands_the_arm(ros, output):
    """Not for accepted actions, refusals, nor watchdog holds, whatever the output type."""
    space = JOINT8 if output == "joint_trajectory" else OPENVLA
    node, pub = start_controller(
        ros, output_type=output, max_rate_hz=1000.0, **space_params(space)
    )  # dry_run defaults to true
    commands = ros.collect(COMMANDS[output], "arm/command", command_qos())
    safe = ros.collect(VlaAction, "vla/action_safe", vla_qos())
    if output == "joint_trajectory":
        publish_joint_states(ros, node)
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    for i in range(3):
        pub.publish(raw_action(now_ns(ros), action=[0.1] * (space.dim - 1) + [1.0]))
        # Wait until the controller has handled it, accepted or dropped by the rate limit: a fast machine
        # delivers two actions within 1 / max_rate_hz, and which of the three pass is not what this tests.
        assert ros.spin_until(lambda n=i + 1: node._counts["actions"] >= n, 5.0)
    # Accepted actions are still published for monitoring; each of the three is accepted or rate limited.
    assert ros.spin_until(lambda: len(safe) >= 1 and len(safe) + node._counts["rate_limited"] == 3, 5.0)
    pub.publish(raw_action(now_ns(ros), action=[math.nan] * space.dim))  # refused
    assert ros.spin_until(lambda: node._counts["holds"] >= 2, 5.0)  # a safety hold, then the watchdog's
    ros.spin_for(0.3)
    assert not commands and node._counts["commands"] == 0


def test_controller_rate_limit_drops_commands_that_come_too_fast(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(ros, dry_run=False, max_rate_hz=1.0)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    pub.publish(raw_action(now_ns(ros)))
    pub.publish(raw_action(now_ns(ros), action=(0.0, 0.0, 0.0, 1.0)))
    diags.wait("controller_node", WARN, "rate limited")
    assert len(commands) == 1 and commands[0].action[0] == pytest.approx(0.2)


@pytest.mark.parametrize(
    "action,fragment",
    [
        ((0.1, math.nan, 0.0, 1.0), "non-finite"),
        ((0.1, 0.0, 1.0), "shape"),
        ((0.9, 0.9, 0.9, 1.0), "max_translation"),
    ],
)
def test_controller_refuses_unsafe_actions(ros, action, fragment):
    diags = Diagnostics(ros)
    node, pub = start_controller(ros, dry_run=False, max_translation=1.0)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    safe = ros.collect(VlaAction, "vla/action_safe", vla_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    pub.publish(raw_action(now_ns(ros), action=action))
    status = diags.wait("controller_node", WARN, "action refused")
    assert fragment in status.message
    assert not commands and not safe


def test_controller_watchdog_holds_then_resumes(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(ros, dry_run=False, watchdog_timeout_s=0.3)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    pub.publish(raw_action(now_ns(ros), action=(0.2, 0.1, 0.0, 0.8)))
    assert ros.spin_until(lambda: len(commands) >= 1, 5.0)
    # No more actions: one hold per watchdog period, zero motion with the gripper kept.
    assert ros.spin_until(lambda: len(commands) >= 3, 5.0)
    holds = commands[1:]
    assert all(list(h.action) == pytest.approx([0.0, 0.0, 0.0, 0.8]) for h in holds)
    assert all(h.fallback_reason == "watchdog hold" for h in holds)
    gaps = [
        C.stamp_to_ns(b.header.stamp) - C.stamp_to_ns(a.header.stamp)
        for a, b in zip(holds[:-1], holds[1:], strict=True)
    ]
    assert all(g >= 0.29e9 for g in gaps)
    diags.wait("controller_node", ERROR, "holding")
    # Actions return at 20 Hz: commands pass again and the status goes back to OK.
    ros.probe.create_timer(0.05, lambda: pub.publish(raw_action(now_ns(ros))))
    assert ros.spin_until(lambda: any(list(c.action)[0] == pytest.approx(0.2) for c in commands[3:]), 5.0)
    diags.wait("controller_node", OK, "commanding the arm")
    assert not node.holding


def test_controller_no_hold_before_the_first_action(ros):
    node, _ = start_controller(ros, dry_run=False, watchdog_timeout_s=0.1)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    ros.spin_for(0.5)
    assert not commands


def two_mode_controller(ros, **overrides):
    """A controller whose table picks int4 below sensitivity 0.5 and fp32 above, switching at once, with
    probes that publish KinematicState and collect the AccelConfig it decides."""
    node, _ = start_controller(
        ros,
        precision_modes=["int4", "fp32"],
        precision_table_bounds=[0.5],
        precision_table_modes=["int4"],
        downgrade_after=1,
        **overrides,
    )
    configs = ros.collect(AccelConfig, "vla/accel_config", vla_qos())
    kin = ros.publisher(KinematicState, "vla/kinematics", vla_qos())
    return node, configs, kin


def test_controller_decides_the_accel_config_from_kinematics(ros):
    _, configs, kin = two_mode_controller(
        ros, decoding="kerv", r_min=5.0, r_max=15.0, fluctuation_lo=0.0, fluctuation_hi=1.0
    )
    t = now_ns(ros)
    kin.publish(KinematicState(header=C.header(t), sensitivity=0.1, fluctuation=0.0))
    assert ros.spin_until(lambda: len(configs) >= 1, 5.0)
    kin.publish(KinematicState(header=C.header(t + 1), sensitivity=0.9, fluctuation=2.0))
    assert ros.spin_until(lambda: len(configs) >= 2, 5.0)
    low, high = configs
    assert (low.precision, low.decoding, low.threshold) == ("int4", "kerv", pytest.approx(15.0))
    assert (high.precision, high.threshold) == ("fp32", pytest.approx(5.0))
    assert C.stamp_to_ns(low.header.stamp) == t and C.stamp_to_ns(high.header.stamp) == t + 1
    assert "S=0.90" in high.reason


def test_controller_episode_start_resets_to_the_top_mode(ros):
    _, configs, kin = two_mode_controller(ros, use_sim_episode=True)
    episodes = ros.probe.create_publisher(String, "sim/episode", episode_qos())
    kin.publish(KinematicState(header=C.header(now_ns(ros)), sensitivity=0.1))
    assert ros.spin_until(lambda: configs and configs[-1].precision == "int4", 5.0)
    episodes.publish(String(data=json.dumps({"event": "start", "episode": 1, "stamp_ns": 12345})))
    assert ros.spin_until(lambda: len(configs) >= 2, 5.0)
    assert configs[-1].precision == "fp32" and C.stamp_to_ns(configs[-1].header.stamp) == 12345


def test_controller_twist_output(ros):
    # The default (Meta-World) space: 0.01 m per unit and step at control_rate_hz 10 -> 0.1 m/s per unit.
    node, pub = start_controller(ros, dry_run=False, output_type="twist")
    twists = ros.collect(TwistStamped, "arm/command", command_qos())
    pub.publish(raw_action(now_ns(ros), action=(0.2, -0.4, 0.0, 1.0)))
    assert ros.spin_until(lambda: twists, 5.0)
    lin = twists[0].twist.linear
    assert (lin.x, lin.y, lin.z) == pytest.approx((0.02, -0.04, 0.0))
    assert twists[0].header.frame_id == META_WORLD.frame


SEVEN = (0.5, 0.0, -0.5, 0.2, 0.0, -0.4, 1.0)


@pytest.mark.parametrize(
    "output, space, action",
    [
        ("vla_action", OPENVLA, SEVEN),
        ("twist", OPENVLA, SEVEN),
        ("vla_action", JOINT8, (0.4, 0, 0, 0, 0, 0, -0.4, -1.0)),
        ("joint_trajectory", JOINT8, (0.4, 0, 0, 0, 0, 0, -0.4, -1.0)),
    ],
)
def test_controller_output_types_follow_the_declared_space(ros, output, space, action):
    node, pub = start_controller(ros, dry_run=False, output_type=output, **space_params(space))
    commands = ros.collect(COMMANDS[output], "arm/command", command_qos())
    if output == "joint_trajectory":
        publish_joint_states(ros, node)
    pub.publish(raw_action(now_ns(ros), action=action))
    assert ros.spin_until(lambda: commands, 5.0)
    cmd = commands[0]
    if output == "vla_action":
        assert list(cmd.action) == pytest.approx(action)
    elif output == "twist":  # 0.02 m and 0.1 rad per unit and step, at 10 Hz, in tool0
        assert cmd.header.frame_id == "tool0"
        assert (cmd.twist.linear.x, cmd.twist.linear.z) == pytest.approx((0.1, -0.1))
        assert (cmd.twist.angular.x, cmd.twist.angular.z) == pytest.approx((0.2, -0.4))
    else:  # 0.05 rad per unit from the current 0.5; gripper -1 = closed = 0.0 m; 1 / control_rate_hz
        assert list(cmd.joint_names) == [*ARM, "finger_joint"]
        assert list(cmd.points[0].positions) == pytest.approx([0.52, 0.5, 0.5, 0.5, 0.5, 0.5, 0.48, 0.0])
        assert cmd.points[0].time_from_start.nanosec == 100_000_000


def test_controller_joint_trajectory_holds_at_the_current_positions(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(
        ros,
        dry_run=False,
        output_type="joint_trajectory",
        max_joint_delta=0.5,
        watchdog_timeout_s=5.0,  # no watchdog hold among the commands checked
        **space_params(JOINT8),
    )
    commands = ros.collect(JointTrajectory, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0]))  # no joint_states yet: refused
    assert "no joint_states received" in diags.wait("controller_node", WARN, "action refused").message
    publish_joint_states(ros, node)
    pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0]))
    assert ros.spin_until(lambda: len(commands) == 1, 5.0)
    pub.publish(raw_action(now_ns(ros), action=[0.9] + [0.0] * 6 + [1.0]))  # max_joint_delta 0.9 > 0.5
    assert ros.spin_until(lambda: len(commands) == 2, 5.0)
    assert list(commands[1].points[0].positions) == pytest.approx([0.5] * 7 + [0.04])  # stays, gripper kept
    status = diags.wait("controller_node", WARN, "max_joint_delta 0.9 > 0.5 (over by 0.4)")
    assert {kv.key: kv.value for kv in status.values}["last_violation"] == "max_joint_delta"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (dict(output_type="joint_trajectory"), "cannot take end-effector deltas"),
        (dict(output_type="twist", **space_params(JOINT8)), "'twist' needs end-effector dims"),
        (
            dict(output_type="joint_trajectory", **{**space_params(JOINT8), "joint_names": ARM[:3]}),
            "joint_names",
        ),
        (dict(action_units=["m", "m", "m"]), "action_units: 3 values, action_names has 4"),
        (dict(action_kinds=["translation"] * 3 + ["claw"]), r"action_kinds\[3\]"),
        (dict(action_units=["m", "m", "furlong", "normalized"]), r"action_units\[2\]: 'furlong'"),
        (dict(workspace_min=[0.0, 0.0, 0.0], workspace_max=[1.0, 1.0]), "workspace_max"),
        (dict(workspace_min=[0.0] * 3, workspace_max=[1.0] * 3, **space_params(JOINT8)), "translation dims"),
    ],
)
def test_controller_refuses_to_start_with_a_bad_action_space(ros, overrides, fragment):
    with pytest.raises(ParameterError, match=fragment):
        ControllerNode(context=ros.context, parameter_overrides=params(**overrides))


def ee_pose(ros, xyz, frame="base_link") -> PoseStamped:
    msg = PoseStamped(header=C.header(now_ns(ros), frame))
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = xyz
    return msg


def test_controller_workspace_box_holds_and_reports_the_excess(ros):
    diags = Diagnostics(ros)
    box = dict(workspace_min=[0.0, 0.0, 0.0], workspace_max=[0.5, 0.5, 0.5])
    node, pub = start_controller(ros, dry_run=False, max_rate_hz=1000.0, watchdog_timeout_s=5.0, **box)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    pub.publish(raw_action(now_ns(ros)))  # a box without an end-effector pose: nothing moves
    assert "no ee_pose" in diags.wait("controller_node", WARN, "action refused").message
    poses = ros.publisher(PoseStamped, "ee_pose", vla_qos())
    poses.publish(ee_pose(ros, (0.25, 0.25, 0.25)))
    assert ros.spin_until(lambda: node._ee is not None, 5.0)
    pub.publish(raw_action(now_ns(ros), action=(0.5, 0.0, 0.0, 1.0)))
    assert ros.spin_until(lambda: len(commands) == 1, 5.0)
    poses.publish(ee_pose(ros, (0.497, 0.25, 0.25)))  # 0.5 x 0.01 m would end 2 mm outside
    assert ros.spin_until(lambda: node._ee[0] == pytest.approx(0.497), 5.0)
    pub.publish(raw_action(now_ns(ros), action=(0.5, 0.0, 0.0, 1.0)))
    pub.publish(raw_action(now_ns(ros), action=(0.5, 0.0, 0.0, 1.0)))
    status = diags.wait("controller_node", WARN, "workspace 0.002 > 0 (over by 0.002)")
    values = {kv.key: kv.value for kv in status.values}
    assert values["last_violation"] == "workspace" and float(
        values["last_violation_excess"]
    ) == pytest.approx(0.002)
    assert ros.spin_until(lambda: len(commands) == 2, 5.0)
    ros.spin_for(0.2)
    assert len(commands) == 2  # one hold per run of refusals
    assert (
        list(commands[1].action) == pytest.approx([0, 0, 0, 1.0])
        and commands[1].fallback_reason == "safety hold"
    )
    poses.publish(ee_pose(ros, (0.25, 0.25, 0.25), frame="tool0"))  # another frame: not used
    diags.wait("controller_node", WARN, "bad ee_pose")
    assert node._ee[0] == pytest.approx(0.497)


def test_controller_refuses_a_bad_run_time_parameter_and_keeps_the_old_value(ros):
    node, _ = start_controller(ros)
    result = node.set_parameters([Parameter("max_translation", value=-1.0)])[0]
    assert not result.successful and "max_translation" in result.reason
    assert node._params.values.max_translation == pytest.approx(1.8)


def test_controller_rejects_out_of_range_parameters_at_start_up(ros):
    with pytest.raises(ParameterError, match="watchdog_timeout_s"):
        ControllerNode(context=ros.context, parameter_overrides=params(watchdog_timeout_s=100.0))


# --- kinematics node ----------------------------------------------------------------------------------


def start_kinematics(ros, **overrides):
    node = KinematicsNode(context=ros.context, parameter_overrides=params(**overrides))
    ros.add(node)
    states = ros.collect(KinematicState, "vla/kinematics", vla_qos())
    predictions = ros.collect(KalmanPrediction, "vla/kalman_prediction", vla_qos())
    executed = ros.publisher(VlaAction, "arm/executed_action", vla_qos())
    return node, states, predictions, executed


def executed_action(stamp_ns: int, action, filled=()) -> VlaAction:
    msg = VlaAction(header=C.header(stamp_ns), action=[float(v) for v in action])
    msg.kalman_filled = list(filled)
    return msg


def test_kinematics_publishes_proxies_and_predictions_with_the_action_stamp(ros):
    node, states, predictions, executed = start_kinematics(ros)
    t = now_ns(ros)
    for i in range(3):
        executed.publish(executed_action(t + i, [0.1 * (i + 1), 0.0, 0.0, 0.5]))
    assert ros.spin_until(lambda: len(predictions) >= 3, 5.0)
    assert [C.stamp_to_ns(s.header.stamp) for s in states] == [t, t + 1, t + 2]
    assert [p.valid for p in predictions] == [False, True, True]
    assert predictions[-1].history_length == 3
    assert predictions[-1].action[0] == pytest.approx(0.4, abs=0.05)  # constant velocity: next is ~0.4
    assert states[-1].translation_speed == pytest.approx(0.3, rel=1e-5)


def test_kinematics_drops_bad_joint_states_and_keeps_going(ros):
    diags = Diagnostics(ros)
    node, states, _, executed = start_kinematics(ros)
    js = ros.publisher(JointState, "joint_states", joint_states_qos())
    t = now_ns(ros)
    pos = np.zeros(9)
    for i in range(3):
        js.publish(C.arrays_to_joint_state(JOINTS, pos + 0.01 * i, None, t + i * 100_000_000))
    assert ros.spin_until(
        lambda: node._derivatives is not None and node._derivatives.acceleration is not None
    )
    nan = pos.copy()
    nan[0] = math.nan
    js.publish(C.arrays_to_joint_state(JOINTS, nan, None, t + 300_000_000))
    diags.wait("kinematics_node", WARN, "bad joint state")
    js.publish(C.arrays_to_joint_state(JOINTS[:7], pos[:7], None, t + 400_000_000))
    status = diags.wait("kinematics_node", WARN, "bad joint state")
    js.publish(C.arrays_to_joint_state(JOINTS, pos, None, t))  # backwards
    diags.wait("kinematics_node", WARN, "not increasing")
    assert node._dropped_joint_states == 3 and status is not None
    js.publish(C.arrays_to_joint_state(JOINTS, pos + 0.03, None, t + 500_000_000))
    executed.publish(executed_action(t, [0.1, 0.0, 0.0, 0.0]))
    assert ros.spin_until(lambda: states, 5.0)
    assert len(states[0].joint_velocity) == 9 and states[0].joint_velocity[0] == pytest.approx(
        0.01 / 0.3, rel=1e-3
    )


def test_kinematics_resets_at_episode_start_and_ignores_the_old_episode(ros):
    node, states, predictions, executed = start_kinematics(ros)
    episodes = ros.probe.create_publisher(String, "sim/episode", episode_qos())
    t = now_ns(ros)
    for i in range(3):
        executed.publish(executed_action(t + i, [0.1, 0.0, 0.0, 0.0]))
    assert ros.spin_until(lambda: len(predictions) >= 3, 5.0)
    episodes.publish(String(data=json.dumps({"event": "start", "episode": 1, "stamp_ns": t + 10})))
    assert ros.spin_until(lambda: len(predictions) >= 4, 5.0)
    assert not predictions[3].valid and predictions[3].history_length == 0
    assert C.stamp_to_ns(predictions[3].header.stamp) == t + 10
    executed.publish(executed_action(t + 5, [0.9, 0.0, 0.0, 0.0]))  # late message of the old episode
    executed.publish(executed_action(t + 20, [0.1, 0.0, 0.0, 0.0]))
    assert ros.spin_until(lambda: len(predictions) >= 5, 5.0)
    ros.spin_for(0.2)
    assert len(predictions) == 5 and predictions[4].history_length == 1


def test_kinematics_cools_down_after_a_kalman_fill(ros):
    node, _, predictions, executed = start_kinematics(ros, cooldown_steps=2)
    t = now_ns(ros)
    plan = [(), (), (), (1,), (), (), ()]
    for i, filled in enumerate(plan):
        executed.publish(executed_action(t + i, [0.1 * i, 0.0, 0.0, 0.0], filled))
    assert ros.spin_until(lambda: len(predictions) >= len(plan), 5.0)
    # valid after 2 actions; the fill at step 3 disables the next 2 predictions' use.
    assert [p.valid for p in predictions] == [False, True, True, False, False, True, True]


# --- simulated arm node -------------------------------------------------------------------------------


class FakeArm:
    action_dim = 4

    def __init__(self, task: str, image_size: int, max_steps: int, succeed_at: int | None = None) -> None:
        self.task, self.image_size, self.succeed_at = task, image_size, succeed_at
        self.max_steps = max_steps or 200  # 0: the task's own limit (a Meta-World task's)
        self.instruction = f"do {task}"
        self.actions: list[np.ndarray] = []
        self.seeds: list[int] = []
        self.steps, self.success = 0, False
        self.pos = np.zeros(9)

    def reset(self, seed: int):
        self.seeds.append(seed)
        self.steps, self.success = 0, False
        self.pos = np.zeros(9)
        return self._obs()

    def step(self, action):
        self.actions.append(np.array(action))
        self.steps += 1
        self.pos[:3] += np.asarray(action[:3]) * 0.01
        self.success = self.succeed_at is not None and self.steps >= self.succeed_at
        return self._obs()

    @property
    def done(self) -> bool:
        return self.success or self.steps >= self.max_steps

    def _obs(self):
        img = np.full((self.image_size, self.image_size, 3), self.steps % 256, dtype=np.uint8)
        return SimpleNamespace(
            images={"corner": img, "wrist": img},
            joint_names=JOINTS,
            joint_positions=self.pos.copy(),
            joint_velocities=np.zeros(9),
            success=self.success,
        )


class FakeArm7(FakeArm):
    action_dim = 7  # a LIBERO-like arm: (dx, dy, dz, droll, dpitch, dyaw, gripper)


def start_sim(ros, succeed_at=None, arm_cls=FakeArm, **overrides):
    arms: dict[str, FakeArm] = {}

    def factory(task, size, steps):
        arms[task] = arm_cls(task, size, steps, succeed_at)
        return arms[task]

    values = {"image_size": 8, **overrides}
    images = ros.collect(Image, "camera/image_raw", camera_qos())
    events = ros.collect(String, "sim/episode", episode_qos())
    executed = ros.collect(VlaAction, "arm/executed_action", vla_qos())
    node = SimArmNode(arm_factory=factory, context=ros.context, parameter_overrides=params(**values))
    ros.add(node)
    return node, arms, images, events, executed


def command(image_stamp_ns: int, action=(0.5, 0.0, 0.0, 1.0)) -> VlaAction:
    msg = VlaAction(image_stamp=C.ns_to_stamp(image_stamp_ns), action=[float(v) for v in action])
    msg.precision = "fp32"
    return msg


def test_sim_arm_publishes_the_first_observation_and_the_instruction(ros):
    node, arms, images, events, _ = start_sim(ros, task="push", seed_start=7)
    instructions = ros.collect(String, "instruction", instruction_qos())
    assert ros.spin_until(lambda: images and instructions and events, 5.0)
    start = json.loads(events[0].data)
    assert (start["event"], start["task"], start["seed"], start["episode"]) == ("start", "push-v3", 7, 0)
    assert instructions[0].data == "do push-v3" and arms["push-v3"].seeds == [7]
    assert images[0].encoding == "rgb8" and images[0].width == 8
    assert C.stamp_to_ns(images[0].header.stamp) >= start["stamp_ns"]


def test_sim_arm_steps_in_lockstep_and_drops_stale_commands(ros):
    node, arms, images, events, executed = start_sim(ros)
    cmd = ros.publisher(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: images, 5.0)
    first = C.stamp_to_ns(images[-1].header.stamp)
    cmd.publish(command(node._obs_stamp_ns))
    assert ros.spin_until(lambda: executed, 5.0)
    arm = arms["reach-v3"]
    assert len(arm.actions) == 1 and arm.actions[0][0] == pytest.approx(0.5)
    assert list(executed[0].action) == pytest.approx([0.5, 0.0, 0.0, 1.0]) and executed[0].precision == "fp32"
    stepped = C.stamp_to_ns(executed[0].header.stamp)
    assert stepped > first
    assert ros.spin_until(lambda: C.stamp_to_ns(images[-1].header.stamp) == stepped, 5.0)
    cmd.publish(command(first))  # computed on the previous observation
    ros.spin_for(0.3)
    assert len(arm.actions) == 1 and node._stale_commands == 1


def test_sim_arm_ends_episodes_and_moves_to_the_next_seed(ros):
    node, arms, _, events, _ = start_sim(ros, max_steps=2, seed_start=100, episodes=2)
    cmd = ros.publisher(VlaAction, "arm/command", command_qos())
    for _ in range(4):
        stamp = node._obs_stamp_ns
        cmd.publish(command(stamp))
        assert ros.spin_until(lambda s=stamp: node._obs_stamp_ns != s, 5.0)
    assert ros.spin_until(lambda: sum(json.loads(e.data)["event"] == "end" for e in events) == 2, 5.0)
    records = [json.loads(e.data) for e in events]
    assert [(r["event"], r["seed"]) for r in records] == [
        ("start", 100),
        ("end", 100),
        ("start", 101),
        ("end", 101),
    ]
    assert records[1]["steps"] == 2 and records[1]["success"] is False
    assert node._finished and arms["reach-v3"].seeds == [100, 101]
    cmd.publish(command(node._obs_stamp_ns))
    ros.spin_for(0.2)
    assert len(arms["reach-v3"].actions) == 4


def test_sim_arm_success_ends_the_episode(ros):
    node, arms, _, events, _ = start_sim(ros, succeed_at=1, max_steps=50)
    cmd = ros.publisher(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: events, 5.0)
    cmd.publish(command(node._obs_stamp_ns))
    assert ros.spin_until(lambda: len(events) >= 3, 5.0)
    end = json.loads(events[1].data)
    assert (end["event"], end["success"], end["steps"]) == ("end", True, 1)


def test_sim_arm_holds_after_the_timeout(ros):
    diags = Diagnostics(ros)
    node, arms, _, _, executed = start_sim(ros, hold_timeout_s=0.2)
    cmd = ros.publisher(VlaAction, "arm/command", command_qos())
    cmd.publish(command(node._obs_stamp_ns, action=(0.3, 0.3, 0.0, 0.7)))
    assert ros.spin_until(lambda: len(executed) >= 2, 5.0)
    hold = arms["reach-v3"].actions[1]
    assert list(hold) == pytest.approx([0.0, 0.0, 0.0, 0.7])
    diags.wait("sim_arm_node", WARN, "hold")


def test_sim_arm_twist_commands(ros):
    node, arms, _, _, executed = start_sim(ros, command_type="twist", twist_linear_scale=0.1)
    cmd = ros.publisher(TwistStamped, "arm/command", command_qos())
    twist = C.twist_from_action(np.array([0.5, -0.2, 0.0, 1.0]), 0.1, 0.5, now_ns(ros), "base_link")
    cmd.publish(twist)
    assert ros.spin_until(lambda: executed, 5.0)
    assert list(arms["reach-v3"].actions[0]) == pytest.approx([0.5, -0.2, 0.0, 0.0])


def test_sim_arm_twist_takes_rotation_and_the_gripper_command_on_a_7d_arm(ros):
    diags = Diagnostics(ros)
    node, arms, _, _, executed = start_sim(
        ros, arm_cls=FakeArm7, command_type="twist", twist_linear_scale=1.0, twist_angular_scale=10.0
    )
    grip = ros.publisher(Float64MultiArray, "gripper/commands", command_qos())
    cmd = ros.publisher(TwistStamped, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm is not None, 5.0)
    # the controller's gripper command (0.0 m = closed) comes before its twist
    grip.publish(Float64MultiArray(data=[0.0]))
    assert ros.spin_until(lambda: node._gripper_command is not None, 5.0)
    action = np.array([0.2, 0.0, -0.4, 0.1, -0.3, 0.5, 1.0])
    cmd.publish(C.twist_for_space(action, LIBERO, 20.0, now_ns(ros)))
    assert ros.spin_until(lambda: executed, 5.0)
    assert list(arms["reach-v3"].actions[0]) == pytest.approx(action.tolist(), abs=1e-6)
    grip.publish(Float64MultiArray(data=[float("nan")]))  # refused: the last good command stays
    diags.wait("sim_arm_node", WARN, "bad gripper command")
    assert node._gripper_command == 1.0
