"""The offline chain of the graph's per-step decisions (proxies -> precision/threshold, Kalman)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.kinematics.calibration import calibrate
from vla_accel_ros.kinematics.config_io import (
    calibration_to_params,
    kalman_filter,
    load_params,
    proxy_calibration,
    write_params,
)
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
    cal = calibrate([ramp_episode(seed=s) for s in range(5)], source="synthetic")
    path = tmp_path / "calibration.yaml"
    write_params(path, calibration_to_params(cal), ["test"])
    params = load_params(path)
    pc = proxy_calibration(params)
    assert pc.mu95 == pytest.approx(cal["proxies"]["mu95"])
    kf = kalman_filter(params, 4)
    np.testing.assert_allclose(kf.q, cal["kalman"]["q"])
    assert params["controller_node"]["fluctuation_lo"] < params["controller_node"]["fluctuation_hi"]
    assert load_params(tmp_path / "absent.yaml") == {}
    with pytest.raises(ValueError, match="calibrate"):
        proxy_calibration({})
