"""The offline chain of the graph's per-step decisions (proxies -> precision/threshold, Kalman)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.kinematics.calibration import calibrate
from vla_accel_ros.kinematics.config_io import calibration_to_params
from vla_accel_ros.kinematics.kalman import ActionKalman
from vla_accel_ros.kinematics.proxies import ProxyCalibration

CAL = ProxyCalibration(mu95=1.0, nu95=0.5, phi95=0.5)


def ramp_episode(n: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)[:, None]
    xyz = np.hstack([np.sin(3 * t), np.cos(2 * t), 0.3 * t]) + 0.01 * rng.standard_normal((n, 3))
    grip = np.where(t > 0.6, 1.0, -1.0)
    return np.hstack([xyz, grip]).astype(np.float32)


def test_fixed_method_asks_for_fixed_settings():
    loop = AccelLoop(Method("ar"), CAL, 4)
    kw = loop.act_kwargs()
    assert kw == {"decoding": "ar", "threshold": 0.0, "kalman_action": None, "precision": "fp32"}


def test_dynamic_precision_follows_sensitivity_with_hysteresis():
    policy = PrecisionPolicy(["w4a4", "w4a16"], top_threshold=0.3, table=[(0.3, "w4a4")], downgrade_after=3)
    loop = AccelLoop(Method("dyq", precision=None), CAL, 4, precision_policy=policy)
    # no history yet: NaN sensitivity -> top mode (safe)
    assert loop.act_kwargs()["precision"] == "w4a16"
    fast = np.array([1.0, 0.0, 0.0, -1.0], np.float32)  # fast, smooth motion: low sensitivity
    modes = []
    for _ in range(6):
        loop.observe(fast)
        modes.append(loop.act_kwargs()["precision"])
    assert modes[:2] == ["w4a16", "w4a16"] and modes[-1] == "w4a4"
    loop.observe(np.zeros(4, np.float32))  # stop: fine motion and a jerk -> S ~ 0.33 -> top at once
    loop.observe(np.zeros(4, np.float32))
    assert loop.act_kwargs()["precision"] == "w4a16"


def test_kinematic_threshold_and_kalman_prediction():
    kalman = ActionKalman(4, [1e-3] * 4, [1e-2] * 4)
    loop = AccelLoop(
        Method("kerv", decoding="kerv", threshold=None, kalman=True),
        CAL,
        4,
        threshold_policy=ThresholdPolicy(5, 15, 0.0, 1.0),
        kalman=kalman,
    )
    kw = loop.act_kwargs()
    assert kw["threshold"] == 5.0 and kw["kalman_action"] is None  # no history: strict, no fill
    for a in ramp_episode(12):
        loop.observe(a)
    kw = loop.act_kwargs()
    assert 5.0 <= kw["threshold"] <= 15.0
    pred = kw["kalman_action"]
    assert pred.shape == (4,) and np.all(np.isfinite(pred[:3])) and np.isnan(pred[3])  # gripper never filled
    # a fill reported by the decoder starts the cool-down: no prediction offered for 4 steps
    loop.observe(ramp_episode(13)[-1], filled=[1, 2])
    blocked = []
    for a in ramp_episode(20)[13:18]:
        blocked.append(loop.act_kwargs()["kalman_action"] is None)
        loop.observe(a)
    assert blocked[:4] == [True] * 4 and blocked[4] is False


def test_misconfigured_methods_are_refused():
    with pytest.raises(ValueError, match="precision policy"):
        AccelLoop(Method("dyq", precision=None), CAL, 4)
    with pytest.raises(ValueError, match="threshold policy"):
        AccelLoop(Method("kerv", threshold=None), CAL, 4)
    with pytest.raises(ValueError, match="Kalman"):
        AccelLoop(Method("kerv", kalman=True), CAL, 4)


def test_calibration_round_trips_through_the_params_file(tmp_path):
    """calibrate -> calibration.yaml -> the tables the nodes and offline runs load, value for value."""
    from vla_accel_ros.params import GraphSettings, read_params_file, write_params_file
    from vla_accel_ros.params.settings import default_files

    cal = calibrate([ramp_episode(seed=s) for s in range(5)], source="synthetic")
    path = tmp_path / "calibration.yaml"
    write_params_file(path, calibration_to_params(cal), ["test"])
    assert path.read_text().startswith("# test\n")
    assert set(read_params_file(path)) == {"kinematics_node", "controller_node"}
    graph = default_files()[0]  # config/vla_accel.yaml, then this calibration on top
    settings = GraphSettings.load([graph, path])
    pc = settings.kinematics.proxy_calibration()
    assert pc.mu95 == pytest.approx(cal["proxies"]["mu95"])
    assert pc.window_f == cal["proxies"]["window_f"]
    kf = settings.kinematics.compensator(4).kalman
    np.testing.assert_allclose(kf.q, cal["kalman"]["q"])
    np.testing.assert_allclose(kf.r, cal["kalman"]["r"])
    ctrl = settings.controller
    assert ctrl.fluctuation_lo == pytest.approx(cal["threshold"]["f_lo"])
    assert ctrl.fluctuation_lo < ctrl.fluctuation_hi
    assert read_params_file(tmp_path / "absent.yaml", missing_ok=True) == {}
    # an optional overlay that is absent leaves the tables' values
    assert GraphSettings.load([graph, tmp_path / "absent.yaml"]).kinematics.mu95 != pc.mu95


# --- the decision objects the nodes share (vla_accel_ros.control) -----------------------------------


def test_decider_follows_the_controller_rules_for_each_decoding():
    from vla_accel_ros.control.accel_decision import AccelDecider
    from vla_accel_ros.params import ControllerParams

    specvla = AccelDecider.from_table(ControllerParams(decoding="specvla", specvla_threshold=7.0))
    assert (specvla.decide(0.9, 0.3).threshold, specvla.decide(0.9, 0.3).reason) == (
        7.0,
        "S=0.90>0.50 -> fp32; r=7.0 fixed",
    )
    strict = AccelDecider.from_table(ControllerParams(decoding="spec", precision_switching=False))
    d = strict.decide(0.1, 0.3)
    assert (d.precision, d.decoding, d.threshold, d.reason) == ("fp32", "spec", 0.0, "switching off; strict")
    kerv = AccelDecider.from_table(ControllerParams(decoding="kerv"))
    assert kerv.start_episode().reason == "episode start; F=nan -> r=5.0"


def test_decide_is_the_same_until_the_next_observation():
    policy = PrecisionPolicy(["w4a4", "w4a16"], top_threshold=0.3, table=[(0.3, "w4a4")], downgrade_after=2)
    loop = AccelLoop(Method("dyq", precision=None), CAL, 4, precision_policy=policy)
    loop.observe(np.array([1.0, 0.0, 0.0, -1.0], np.float32))
    assert [loop.decide().reason for _ in range(3)] == [loop.decide().reason] * 3  # no extra hysteresis step


def test_kinematics_step_recreates_its_filters_for_a_new_action_dimension():
    from vla_accel_ros.control.kinematics_step import KinematicsStep
    from vla_accel_ros.params import KinematicsParams

    step = KinematicsStep.from_table(KinematicsParams())
    assert step.action_dim is None and step.prediction() is None
    for a in ramp_episode(3):
        update = step.update(a)
    assert update.prediction is not None and update.prediction.samples == 3
    update = step.update(np.zeros(7, np.float32))
    assert step.action_dim == 7 and update.prediction.samples == 1 and update.prediction.mean.shape == (7,)
    with pytest.raises(ValueError, match="action_dim"):
        step.update(np.zeros(5, np.float32))
    assert step.action_dim == 7  # the filters of the last good dimension stay
    step.reset()
    assert step.last is None and step.prediction().samples == 0


def test_command_gate_keeps_its_state_across_a_parameter_change():
    from vla_accel_ros.control.command_gate import CommandGate
    from vla_accel_ros.params import ControllerParams

    gate = CommandGate.from_table(ControllerParams())
    t = 10**12
    assert gate.offer(np.array([0.1, 0.0, 0.0, 1.0]), t, t).accepted
    refused = gate.offer(np.array([np.nan, 0.0, 0.0, 1.0]), t + 10**8, t + 10**8)
    assert refused.hold and gate.holding
    changed = CommandGate.from_table(ControllerParams(max_rate_hz=5.0), previous=gate)
    assert changed.holding and changed.guard.last_gripper == 1.0 and changed.watchdog.last_kick == t * 1e-9
    assert changed.offer(np.array([0.1, 0.0, 0.0, 1.0]), t + 10**8, t + 10**8).reason.startswith(
        "actions faster than max_rate_hz 5"
    )
    changed.start_episode()
    assert (
        not changed.holding and changed.guard.last_gripper is None and changed.watchdog_check(t * 10) is None
    )
