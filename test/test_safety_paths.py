"""Issue 19: the paths by which bad data could still reach the arm, each closed and tested.

- Kalman fills are clipped into the decoder's range; a finite action beyond it is refused, not clipped.
- `sim/episode` is followed only in simulation (`use_sim_episode`).
- The gripper memory moves only for commanded actions (not for one the rate limit drops).
- joint_trajectory: joint position limits and a jump check on consecutive joint_states.
- Run-time changes of dry_run or a limit hold the arm first; dry_run=false at run time is refused unless
  allow_runtime_arming.
- Input sizes: a pixel cap on images, a length cap on instructions (and no whole instruction in logs).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rclpy.parameter import Parameter
from ros_fixtures import ros_harness
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from test_action_space import ARM, JOINT8
from test_nodes_unit import (
    JOINT_POSITIONS,
    Diagnostics,
    now_ns,
    publish_joint_states,
    raw_action,
    ready_inference,
    space_params,
    start_controller,
    two_mode_controller,
)
from trajectory_msgs.msg import JointTrajectory
from vla_accel_ros.msg import KinematicState, VlaAction

from vla_accel_ros.control.command_gate import CommandGate, Outcome
from vla_accel_ros.control.decoder_range import DecoderRange
from vla_accel_ros.control.joint_guard import JointLimits
from vla_accel_ros.params import ControllerParams, ParameterError
from vla_accel_ros.params.files import config_dir
from vla_accel_ros.params.yaml_io import read_params_files
from vla_accel_ros.policy.tokenizer import ActionTokenizer
from vla_accel_ros.ros import convert as C
from vla_accel_ros.ros.diagnostics import ERROR, WARN
from vla_accel_ros.ros.qos import command_qos, episode_qos, joint_states_qos

MS = 10**6
T0 = 1_000 * 10**9


def gate_for(**values) -> CommandGate:
    return CommandGate.from_table(ControllerParams.from_mapping({"dry_run": False, **values}))


def offer(gate: CommandGate, action, ms: int):
    now = T0 + ms * MS
    return gate.offer(np.asarray(action, dtype=np.float64), now, now - 5 * MS, joint_states_stamp_ns=now)


# --- 1. the decoder's range -----------------------------------------------------------------------------


def test_decoder_range_is_what_the_bins_decode_and_a_fill_is_clipped_into_it():
    tok = ActionTokenizer([-1.0, 0.0], [1.0, 0.5], vocab_size=300, n_bins=256)
    r = DecoderRange.from_tokenizer(tok)
    assert r.low[0] > -1.0 and r.high[0] < 1.0 and r.high[1] < 0.5  # bin centres lie inside q01/q99
    clipped = r.clip(np.array([1e6, math.nan]))
    assert clipped[0] == pytest.approx(r.high[0]) and math.isnan(clipped[1])  # NaN: the target decides


def test_gate_refuses_a_finite_action_beyond_the_decoder_range_instead_of_clipping_it():
    gate = gate_for(action_max=[0.5, 1.0, 1.0, 1.0])
    assert offer(gate, (0.1, 0.0, 0.0, 1.0), 0).accepted
    within = offer(gate, (0.9, 0.0, 0.0, 1.0), 100)  # inside the decoder range, over the clip: clipped
    assert within.accepted and within.action[0] == pytest.approx(0.5)
    absurd = offer(gate, (40.0, 0.0, 0.0, 1.0), 200)
    assert absurd.outcome is Outcome.REFUSE and absurd.hold and "decoder_range[0]" in absurd.reason
    off = gate_for(decoder_action_min=[], decoder_action_max=[])  # [] = no such check: clipped again
    assert offer(off, (40.0, 0.0, 0.0, 1.0), 0).accepted


def test_decoder_range_parameters_must_match_the_action_dim():
    with pytest.raises(ParameterError, match="decoder_action_min: 3 values"):
        ControllerParams.from_mapping({"decoder_action_min": [-1.0] * 3, "decoder_action_max": [1.0] * 3})
    with pytest.raises(ParameterError, match="give both"):
        ControllerParams.from_mapping({"decoder_action_min": []})


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def test_inference_clips_a_kalman_fill_to_the_decoder_range(ros):
    node, policy, actions, feed = ready_inference(ros)
    t = now_ns(ros)
    feed.config.publish(C.accel_config_msg("fp32", "kerv", 7.0, "test", t))
    feed.prediction.publish(
        C.kalman_prediction_msg(np.array([5.0, -0.2, math.nan, -7.0]), np.full(4, 0.01), 5, True, t)
    )
    assert ros.spin_until(lambda: node._config is not None and node._prediction is not None)
    feed.step(t)
    assert ros.spin_until(lambda: actions, 5.0)
    fill = policy.calls[0]["kalman_action"]
    high = DecoderRange.from_tokenizer(policy.actions).high[0]
    assert fill[0] == pytest.approx(high) and fill[1] == pytest.approx(-0.2) and math.isnan(fill[2])
    assert fill[3] == pytest.approx(-high)


# --- 2. sim/episode only in simulation -------------------------------------------------------------------


def test_controller_ignores_sim_episode_unless_use_sim_episode(ros):
    node, configs, kin = two_mode_controller(ros)  # the default: a robot
    assert "/sim/episode" not in {s.topic_name for s in node.subscriptions}
    episodes = ros.probe.create_publisher(String, "sim/episode", episode_qos())
    kin.publish(KinematicState(header=C.header(now_ns(ros)), sensitivity=0.1))
    assert ros.spin_until(lambda: configs and configs[-1].precision == "int4", 5.0)
    episodes.publish(String(data=json.dumps({"event": "start", "episode": 1, "stamp_ns": 12345})))
    ros.spin_for(0.3)  # nothing may come: a stray start event resets nothing
    assert len(configs) == 1 and configs[-1].precision == "int4"


def test_the_simulated_graphs_follow_sim_episode():
    sections = read_params_files([str(config_dir() / "vla_accel.yaml"), str(config_dir() / "sim.yaml")])
    assert sections["controller_node"]["use_sim_episode"] is True
    assert ControllerParams.from_mapping({}).use_sim_episode is False
    launch = config_dir().parent / "launch"
    for name in ("sim.launch.py", "replay.launch.py"):
        assert '"use_sim_episode": "true"' in (launch / name).read_text()


# --- 3. gripper memory after the rate limit -------------------------------------------------------------


def test_a_rate_limited_action_does_not_move_the_gripper_memory():
    gate = gate_for(max_gripper_change=0.5, max_rate_hz=5.0)  # one command per 200 ms
    assert offer(gate, (0.0, 0.0, 0.0, 0.0), 0).accepted
    dropped = offer(gate, (0.0, 0.0, 0.0, 0.5), 50)
    assert dropped.outcome is Outcome.RATE_LIMITED and gate.guard.last_gripper == 0.0
    jump = offer(gate, (0.0, 0.0, 0.0, 1.0), 300)  # 1.0 from the last *commanded* 0.0
    assert jump.outcome is Outcome.REFUSE and "max_gripper_change" in jump.reason
    assert gate.hold_action()[3] == 0.0


# --- 4. joint_trajectory: joint limits and jumps ---------------------------------------------------------


def joint_gate(**values) -> CommandGate:
    overrides = {**space_params(JOINT8), "output_type": "joint_trajectory", "max_rate_hz": 1000.0}
    return gate_for(**{**overrides, **values})


def test_joint_trajectory_needs_joint_limits():
    overrides = {**space_params(JOINT8), "output_type": "joint_trajectory"}
    del overrides["joint_position_min"], overrides["joint_position_max"]
    with pytest.raises(ParameterError, match="joint_trajectory needs joint position limits"):
        ControllerParams.from_mapping(overrides)
    with pytest.raises(ParameterError, match="joint_position_min/max"):
        ControllerParams.from_mapping({**overrides, "joint_position_min": [0.0], "joint_position_max": [1.0]})


def test_gate_refuses_a_joint_target_outside_the_limits():
    gate = joint_gate(joint_position_max=[0.52] + [3.0] * 7)
    names = list(JOINT_POSITIONS)
    assert gate.observe_joint_states(names, list(JOINT_POSITIONS.values()), T0) is None
    assert offer(gate, [0.2] + [0.0] * 6 + [1.0], 1).accepted  # 0.5 + 0.2 * 0.05 = 0.51
    over = offer(gate, [1.0] + [0.0] * 6 + [1.0], 2)  # 0.55 > 0.52: refused, not clipped
    assert over.outcome is Outcome.REFUSE and over.hold and f"{ARM[0]} 0.55" in over.reason


def test_gate_holds_after_a_joint_states_jump_until_they_are_steady():
    gate = joint_gate(max_joint_state_jump=0.1, watchdog_timeout_s=1.0)
    names, pos = list(JOINT_POSITIONS), np.array(list(JOINT_POSITIONS.values()))
    assert gate.observe_joint_states(names, pos, T0) is None
    assert offer(gate, [0.1] * 7 + [1.0], 1).accepted
    jumped = pos.copy()
    jumped[0] += 0.5  # a second publisher of the same joint names
    assert f"{ARM[0]} moved 0.5" in gate.observe_joint_states(names, jumped, T0 + 2 * MS)
    assert gate.joints.positions[ARM[0]] == 0.5  # the jumped value is not used
    refused = offer(gate, [0.1] * 7 + [1.0], 3)
    assert refused.outcome is Outcome.REFUSE and refused.hold and "jumped" in refused.reason
    assert gate.observe_joint_states(names, jumped, T0 + 500 * MS) is not None  # settling: not used yet
    assert gate.observe_joint_states(names, jumped, T0 + 1100 * MS) is None  # steady for a period
    assert offer(gate, [0.1] * 7 + [1.0], 1101).accepted


def test_joint_limits_reject_bad_tables():
    with pytest.raises(ValueError, match="one of each per joint"):
        JointLimits(("a", "b"), (0.0,), (1.0, 1.0))
    with pytest.raises(ValueError, match="lower <= upper"):
        JointLimits(("a",), (1.0,), (0.0,))


def test_controller_node_holds_at_the_trusted_positions_after_a_joint_states_jump(ros):
    diags = Diagnostics(ros)
    node, pub = start_controller(
        ros,
        dry_run=False,
        output_type="joint_trajectory",
        watchdog_timeout_s=5.0,
        max_rate_hz=1000.0,
        **space_params(JOINT8),
    )
    commands = ros.collect(JointTrajectory, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    publish_joint_states(ros, node)
    pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0]))
    assert ros.spin_until(lambda: len(commands) == 1, 5.0)
    spoof = ros.publisher(JointState, "joint_states", joint_states_qos())
    names = list(JOINT_POSITIONS)
    values = np.array(list(JOINT_POSITIONS.values()))
    values[2] = 2.0  # 1.5 rad away from the last joint state
    spoof.publish(C.arrays_to_joint_state(names, values, None, now_ns(ros)))
    diags.wait("controller_node", WARN, "bad joint state")
    pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0]))
    assert ros.spin_until(lambda: len(commands) == 2, 5.0)
    assert list(commands[1].points[0].positions) == pytest.approx([0.5] * 7 + [0.04])  # held where it was
    assert "jumped" in diags.wait("controller_node", WARN, "action refused").message
    assert list(commands[1].joint_names) == [*ARM, "finger_joint"]


@pytest.mark.parametrize("age_s", [2.0, -2.0], ids=["stale", "future"])
def test_controller_refuses_joint_states_stamped_outside_a_watchdog_period(ros, age_s):
    """Even with the jump check off, a stale (or replayed) or future-stamped joint state is not trusted."""
    diags = Diagnostics(ros)
    node, pub = start_controller(
        ros,
        dry_run=False,
        output_type="joint_trajectory",
        watchdog_timeout_s=0.5,
        max_joint_state_jump=0.0,
        **space_params(JOINT8),
    )
    commands = ros.collect(JointTrajectory, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    old = ros.publisher(JointState, "joint_states", joint_states_qos())
    values = np.array(list(JOINT_POSITIONS.values()))
    old.publish(C.arrays_to_joint_state(list(JOINT_POSITIONS), values, None, now_ns(ros) - int(age_s * 1e9)))
    status = diags.wait("controller_node", WARN, "bad joint state")
    assert ("old" if age_s > 0 else "future") in status.message, status.message
    assert node._gate.joints.stamp_ns is None  # not taken as the arm's positions
    pub.publish(raw_action(now_ns(ros), action=[0.1] * 7 + [1.0]))
    assert "no joint_states received" in diags.wait("controller_node", WARN, "action refused").message
    assert not [c for c in commands if list(c.points[0].positions)[:7] != pytest.approx([0.5] * 7)]


# --- 5. run-time changes of dry_run and the limits -------------------------------------------------------


def test_a_run_time_limit_change_holds_first_and_dry_run_false_needs_allow_runtime_arming(ros):
    node, pub = start_controller(ros, dry_run=False, max_rate_hz=1000.0, watchdog_timeout_s=5.0)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    pub.publish(raw_action(now_ns(ros), action=(0.2, 0.0, 0.0, 0.8)))
    assert ros.spin_until(lambda: len(commands) == 1, 5.0)
    assert node.set_parameters([Parameter("max_translation", value=0.5)])[0].successful
    assert ros.spin_until(lambda: len(commands) == 2, 5.0)
    assert commands[1].fallback_reason == "parameter change: max_translation"
    assert list(commands[1].action) == pytest.approx([0.0, 0.0, 0.0, 0.8]) and node.holding
    # Back to dry run mid-motion: a hold goes out before the arm stops being commanded.
    assert node.set_parameters([Parameter("dry_run", value=True)])[0].successful
    assert ros.spin_until(lambda: len(commands) == 3, 5.0)
    assert commands[2].fallback_reason == "parameter change: dry_run"
    # Arming at run time: refused with a reason, dry_run stays true.
    result = node.set_parameters([Parameter("dry_run", value=False)])[0]
    assert not result.successful and "allow_runtime_arming" in result.reason
    assert node._params.values.dry_run is True and node.get_parameter("dry_run").value is True
    pub.publish(raw_action(now_ns(ros), action=(0.2, 0.0, 0.0, 0.8)))
    assert ros.spin_until(lambda: node._counts["actions"] == 2, 5.0)
    ros.spin_for(0.2)
    assert len(commands) == 3


def test_allow_runtime_arming_accepts_a_run_time_dry_run_false(ros):
    node, pub = start_controller(ros, allow_runtime_arming=True, max_rate_hz=1000.0)
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    assert ros.spin_until(lambda: node._arm_pub.get_subscription_count() >= 1)
    assert node.set_parameters([Parameter("dry_run", value=False)])[0].successful
    assert ros.spin_until(lambda: commands, 5.0)  # the hold of the change, now live
    assert commands[0].fallback_reason == "parameter change: dry_run"
    pub.publish(raw_action(now_ns(ros), action=(0.2, 0.0, 0.0, 0.8)))
    assert ros.spin_until(lambda: len(commands) == 2, 5.0)
    # The switch itself cannot be flipped at run time.
    assert not node.set_parameters([Parameter("allow_runtime_arming", value=True)])[0].successful


# --- 6. input sizes -------------------------------------------------------------------------------------


def test_inference_refuses_an_image_over_the_pixel_cap_and_sends_nothing(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros, max_image_pixels=32)  # the feeder's frames: 64
    feed.step(now_ns(ros))
    status = diags.wait("inference_node", WARN, "bad image from corner")
    assert "64 pixels exceeds max_image_pixels 32" in str(status.values) + status.message
    ros.spin_for(0.3)
    assert not actions and not policy.calls and "corner" not in node._images


def test_inference_refuses_an_over_long_instruction_and_logs_it_truncated(ros):
    diags = Diagnostics(ros)
    node, policy, actions, feed = ready_inference(ros, max_instruction_chars=100)
    secret = "pick the red block " * 20 + "END"
    feed.say(secret)
    status = diags.wait("inference_node", ERROR, "instruction too long")
    text = status.message + " ".join(kv.value for kv in status.values)
    assert "END" not in text and f"({len(secret)} chars)" in text
    assert node._instruction is None  # the old task is not carried on either
    feed.step(now_ns(ros))
    ros.spin_for(0.3)
    assert not actions and not policy.calls


# --- sizes in a checkpoint's config ------------------------------------------------------------------------


def test_a_config_declaring_absurd_sizes_is_refused_before_the_model_is_built(tmp_path):
    """A corrupt or hostile config.json must not make the node allocate what the weights do not hold."""
    from test_faults import tiny_checkpoint

    from vla_accel_ros.policy.checkpoint import CheckpointError, load_checkpoint

    ck = tiny_checkpoint(tmp_path / "ck")
    config = json.loads((ck / "config.json").read_text())
    for key, value, fragment in (
        ("num_layers", 10**9, "num_layers 1000000000 is not an int"),
        ("hidden_size", "wide", "hidden_size wide is not an int"),
        ("intermediate_size", 60000, "declares"),  # within the caps, but far more than the file holds
    ):
        (ck / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(CheckpointError, match=fragment):
            load_checkpoint(ck)
    (ck / "config.json").write_text(json.dumps(config))
    assert load_checkpoint(ck) is not None
