"""One decision path: the rclpy nodes and the offline objects decide every step alike.

The same executed-action sequence (4-D, Meta-World-like, with Kalman fills and an episode start in the
middle) goes to the kinematics and controller nodes (in-process, over DDS) and to the offline
`AccelLoop` built from the same parameter tables; every AccelConfig and every Kalman prediction must be
identical, step by step. The same raw actions (good, NaN, over the limits, too fast, stale, from the
future, a wrong length, then silence) go to the controller node on a simulated clock and to a
`CommandGate` directly; every accept / refuse / rate-limit / hold decision must be identical.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from ros_fixtures import ros_harness
from rosgraph_msgs.msg import Clock
from std_msgs.msg import String
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, VlaAction

from vla_accel_ros.control.accel_decision import AccelDecider
from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.command_gate import CommandGate, Outcome
from vla_accel_ros.control.kinematics_step import KinematicsStep
from vla_accel_ros.kinematics.kalman import ActionKalman
from vla_accel_ros.params import ControllerParams, KinematicsParams
from vla_accel_ros.ros import convert as C
from vla_accel_ros.ros.controller_node import ControllerNode
from vla_accel_ros.ros.kinematics_node import KinematicsNode
from vla_accel_ros.ros.qos import command_qos, episode_qos, vla_qos

# A DyQ ladder of three modes (so the precision switches both ways) and the KERV threshold.
CONTROLLER = dict(
    precision_modes=["w4a4", "w4a8", "w4a16"],
    top_threshold=0.5,
    precision_table_bounds=[0.2, 0.4],
    precision_table_modes=["w4a4", "w4a8"],
    downgrade_after=2,
    decoding="kerv",
    r_min=5.0,
    r_max=15.0,
    use_sim_episode=True,  # the episode start in the middle resets the controller (simulation only)
)
KINEMATICS = dict(cooldown_steps=2)
KERV_DYQ = Method("kerv+dyq", decoding="kerv", precision=None, threshold=None, kalman=True)


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def overrides(values: dict) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def episode_actions(n: int, seed: int) -> np.ndarray:
    """Fast approach, jittery fine alignment with the gripper closing half-way, then a lift."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        if i < n // 3:
            xyz = [0.8, 0.3, -0.2]
        elif i < 2 * n // 3:
            xyz = list(0.05 * rng.standard_normal(3))
        else:
            xyz = [0.0, 0.0, 0.6]
        rows.append([*xyz, -1.0 if i < n // 2 else 1.0])
    return (np.asarray(rows) + 0.01 * rng.standard_normal((n, 4))).astype(np.float32)


# Per episode: the actions and the steps at which the decoder reports a Kalman fill (dims filled).
EPISODES = [(episode_actions(15, 0), {4: [0, 1, 2], 11: [1]}), (episode_actions(15, 1), {3: [2], 9: [0, 2]})]


def executed_msg(stamp_ns: int, action: np.ndarray, filled: list[int]) -> VlaAction:
    msg = VlaAction(header=C.header(stamp_ns), action=[float(v) for v in action])
    msg.kalman_filled = list(filled)
    return msg


def by_stamp(messages: list, stamp_ns: int):
    return next((m for m in messages if C.stamp_to_ns(m.header.stamp) == stamp_ns), None)


def assert_same_config(got: AccelConfig, want: AccelConfig, step: str) -> None:
    assert (got.precision, got.decoding, got.reason) == (want.precision, want.decoding, want.reason), step
    assert np.float32(got.threshold) == np.float32(want.threshold), step  # the float32 field


def assert_same_prediction(got: KalmanPrediction, want: KalmanPrediction, step: str) -> None:
    assert (got.valid, got.history_length) == (want.valid, want.history_length), step
    np.testing.assert_array_equal(np.asarray(got.action), np.asarray(want.action), err_msg=step)
    np.testing.assert_array_equal(np.asarray(got.variance), np.asarray(want.variance), err_msg=step)


def offline_loops() -> list[AccelLoop]:
    """The loop from the nodes' own decision objects, and the classic one from the algorithm objects."""
    ctrl = ControllerParams.from_mapping(CONTROLLER)
    kin = KinematicsParams.from_mapping(KINEMATICS)
    parts = AccelLoop.from_parts(KERV_DYQ, KinematicsStep.from_table(kin, 4), AccelDecider.from_table(ctrl))
    classic = AccelLoop(
        KERV_DYQ,
        kin.proxy_calibration(),
        4,
        precision_policy=ctrl.precision_policy(),
        threshold_policy=ctrl.threshold_policy(),
        kalman=ActionKalman(4, kin.kalman_q, kin.kalman_r, kin.history_length),
        cooldown=kin.cooldown_steps,
    )
    return [parts, classic]


def offline_messages(loop: AccelLoop, stamp_ns: int) -> tuple[AccelConfig, KalmanPrediction]:
    """What the nodes would publish now, from the offline loop's state (same conversions)."""
    d = loop.accel_decision
    p = loop.kinematics.prediction()
    assert p is not None
    return (
        C.accel_config_msg(d.precision, d.decoding, d.threshold, d.reason, stamp_ns),
        C.kalman_prediction_msg(p.mean, p.variance, p.samples, p.valid, stamp_ns),
    )


def assert_decoder_gets_the_same(loop: AccelLoop, prediction: KalmanPrediction, step: str) -> None:
    """The inference node fills from a valid prediction only: so does the offline loop."""
    kalman_action = loop.decide().kalman_action
    if not prediction.valid:
        assert kalman_action is None, step
    else:
        np.testing.assert_array_equal(kalman_action, np.asarray(prediction.action, np.float32), err_msg=step)


def test_nodes_and_offline_loop_decide_every_step_alike(ros):
    kin_node = ros.add(KinematicsNode(context=ros.context, parameter_overrides=overrides(KINEMATICS)))
    ctrl_node = ros.add(ControllerNode(context=ros.context, parameter_overrides=overrides(CONTROLLER)))
    configs = ros.collect(AccelConfig, "vla/accel_config", vla_qos())
    predictions = ros.collect(KalmanPrediction, "vla/kalman_prediction", vla_qos())
    executed = ros.publisher(VlaAction, "arm/executed_action", vla_qos())
    episodes = ros.publisher(String, "sim/episode", episode_qos(), subscribers=2)
    assert ros.spin_until(
        lambda: (
            kin_node.count_subscribers("vla/kinematics") >= 1
            and kin_node.count_subscribers("vla/kalman_prediction") >= 2
            and ctrl_node.count_subscribers("vla/accel_config") >= 1
        )
    )
    loops = offline_loops()
    seen_precisions, blocked_by_fill = set(), False
    for e, (actions, fills) in enumerate(EPISODES):
        start_ns = ros.probe.get_clock().now().nanoseconds
        if e > 0:  # an episode start in the middle: both nodes reset, and so do the offline loops
            episodes.publish(String(data=json.dumps({"event": "start", "episode": e, "stamp_ns": start_ns})))
            assert ros.spin_until(lambda s=start_ns: by_stamp(configs, s) and by_stamp(predictions, s))
            for loop in loops:
                loop.reset()
                want_config, want_prediction = offline_messages(loop, start_ns)
                assert_same_config(by_stamp(configs, start_ns), want_config, f"episode {e} start")
                assert_same_prediction(by_stamp(predictions, start_ns), want_prediction, f"episode {e} start")
        for i, action in enumerate(actions):
            stamp = start_ns + 1 + 1000 * i
            msg = executed_msg(stamp, action, fills.get(i, []))
            executed.publish(msg)
            assert ros.spin_until(lambda s=stamp: by_stamp(configs, s) and by_stamp(predictions, s))
            got_config, got_prediction = by_stamp(configs, stamp), by_stamp(predictions, stamp)
            for name, loop in zip(("from_parts", "classic"), loops, strict=True):
                loop.observe(np.asarray(msg.action, dtype=np.float32), list(msg.kalman_filled))
                want_config, want_prediction = offline_messages(loop, stamp)
                step = f"episode {e} step {i} ({name} loop)"
                assert_same_config(got_config, want_config, step)
                assert_same_prediction(got_prediction, want_prediction, step)
                assert_decoder_gets_the_same(loop, got_prediction, step)
            seen_precisions.add(got_config.precision)
            blocked_by_fill |= i >= 2 and not got_prediction.valid  # past the warm-up: a fill's cool-down
    # The sequence exercised what it is meant to: switching, and fills that block the prediction.
    assert seen_precisions == {"w4a4", "w4a8", "w4a16"} and blocked_by_fill


# --- the command gate ---------------------------------------------------------------------------------

# A decoder range wider than the clip, so that both a clipped and a refused over-range action occur.
GATE = dict(
    dry_run=False,
    max_translation=1.0,
    watchdog_timeout_s=1.0,
    max_rate_hz=50.0,
    decoder_action_min=[-2.0] * 4,
    decoder_action_max=[2.0] * 4,
)
T0_NS = 1_000 * 10**9  # simulated time of the first raw action
MS = 10**6
# (ms after T0, action, image stamp relative to the receive time in ms); None: no action, only time passes.
RAW = [
    (0, (math.nan, 0.0, 0.0, 1.0), -10),  # refused, no hold: nothing accepted yet
    (100, (0.2, 0.0, -0.2, 1.0), -10),  # accepted
    (105, (0.2, 0.0, 0.0, 1.0), -10),  # too fast: rate limited
    (200, (0.9, 0.9, 0.9, 1.0), -10),  # over max_translation: refused, hold
    (300, (math.nan, 0.0, 0.0, 1.0), -10),  # refused, the same run: no second hold
    (400, (0.2, 0.0, 0.0, 1.0), -2000),  # its image is 2 s old: refused, the watchdog's to hold
    (500, (0.3, 0.1, 0.0, -1.0), -10),  # accepted: the hold ends
    (600, (1.5, 0.0, 0.0, -1.0), -10),  # clipped to action_max and accepted
    (700, (0.1, 0.0, 0.1), -10),  # wrong length: refused, hold
    (800, (0.1, 0.1, 0.1, -1.0), -10),  # accepted
    (850, (0.0, 50.0, 0.0, -1.0), -10),  # finite, beyond what the decoder emits: refused, not clipped
    (900, (0.1, 0.1, 0.1, -1.0), 2000),  # image from the future: refused
    (2500, None, 0),  # 1.7 s without a fresh action: the watchdog holds
    (2600, (0.0, 0.2, 0.0, -1.0), -10),  # accepted again
]


def node_outcome(before: dict, after: dict) -> tuple[str, bool]:
    delta = {k: after[k] - before[k] for k in after}
    if delta["refused"]:
        outcome = Outcome.REFUSE.value
    elif delta["rate_limited"]:
        outcome = Outcome.RATE_LIMITED.value
    else:
        outcome = Outcome.ACCEPT.value
    return outcome, delta["holds"] > 0


def test_controller_node_and_command_gate_decide_alike(ros):
    node = ros.add(
        ControllerNode(context=ros.context, parameter_overrides=overrides({**GATE, "use_sim_time": True}))
    )
    safe = ros.collect(VlaAction, "vla/action_safe", vla_qos())
    commands = ros.collect(VlaAction, "arm/command", command_qos())
    raw = ros.publisher(VlaAction, "vla/action_raw", vla_qos())
    clock = ros.publisher(Clock, "/clock", QoSProfile(depth=1))
    assert ros.spin_until(lambda: node.count_subscribers("arm/command") >= 1)

    def set_clock(ns: int) -> None:
        def seen() -> bool:  # /clock is best effort: publish until the node's clock shows it
            clock.publish(Clock(clock=C.ns_to_stamp(ns)))
            return node.get_clock().now().nanoseconds == ns

        assert ros.spin_until(seen), f"the node's clock did not reach {ns}"

    gate = CommandGate.from_table(ControllerParams.from_mapping(GATE))
    seen: set[tuple[str, bool]] = set()
    for ms, action, image_ms in RAW:
        now = T0_NS + ms * MS
        before = dict(node._counts)
        set_clock(now)
        if action is None:  # the node's watchdog timer fires on the simulated clock
            assert ros.spin_until(lambda b=before["holds"]: node._counts["holds"] > b), f"{ms} ms"
            check = gate.watchdog_check(now)
            assert check is not None and check.hold, f"{ms} ms"
            assert ros.spin_until(lambda: len(commands) == node._counts["commands"])
            hold = commands[-1]
            assert hold.fallback_reason == "watchdog hold" and C.stamp_to_ns(hold.header.stamp) == now
            np.testing.assert_array_equal(np.asarray(hold.action), gate.hold_action().astype(np.float32))
            continue
        msg = VlaAction(header=C.header(now), image_stamp=C.ns_to_stamp(now + image_ms * MS))
        msg.action = [float(v) for v in action]
        raw.publish(msg)
        assert ros.spin_until(lambda n=before["actions"]: node._counts["actions"] > n), f"{ms} ms"
        after = dict(node._counts)
        accepted = after["actions"] - after["refused"] - after["rate_limited"]
        assert ros.spin_until(lambda a=accepted, c=after["commands"]: len(safe) == a and len(commands) == c)

        d = gate.offer(np.asarray(msg.action, dtype=np.float64), now, now + image_ms * MS)
        assert node_outcome(before, after) == (d.outcome.value, d.hold), f"{ms} ms: gate says {d}"
        assert node.holding == gate.holding, f"{ms} ms"
        if d.accepted:
            assert d.action is not None
            np.testing.assert_array_equal(np.asarray(safe[-1].action), d.action.astype(np.float32))
            np.testing.assert_array_equal(np.asarray(commands[-1].action), d.action.astype(np.float32))
        if d.hold:
            assert commands[-1].fallback_reason == "safety hold"
            np.testing.assert_array_equal(
                np.asarray(commands[-1].action), gate.hold_action().astype(np.float32)
            )
        seen.add((d.outcome.value, d.hold))
    assert seen == {("accept", False), ("rate_limited", False), ("refuse", True), ("refuse", False)}
