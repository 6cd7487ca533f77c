"""DyQ proxies, joint derivatives and calibration against hand-computed values and independent code."""

import math

import numpy as np
import pytest
import yaml

from vla_accel_ros.kinematics import (
    ActionKalman,
    JointDerivatives,
    KinematicProxies,
    NonIncreasingStampError,
    ProxyCalibration,
    calibrate,
)
from vla_accel_ros.kinematics.proxies import raw_fluctuations, raw_jerks, translation_magnitudes

SMALL = ProxyCalibration(mu95=1.0, nu95=0.5, phi95=0.5, window_m=2, window_j=2, weight=0.5, window_f=3)


def test_hand_computed_4d_sequence():
    p = KinematicProxies(SMALL, 4)
    seq = [(0.3, 0.4, 0.0, 1.0), (0.0, 0.0, 0.0, 1.0), (1.2, 1.6, 0.0, -1.0), (0.3, 0.4, 0.0, -1.0)]
    out = [p.update(np.array(a, dtype=np.float32)) for a in seq]
    # speed:      0.5, 0, 2, 0.5      -> M = 0.5, 1, 0 (clipped), 0.5
    # jerk (xyz): 0, 0.5/0.5, 2/0.5, 1.5/0.5 = 0, 1, 4, 3
    # windows of 2: M~ = 0.5, 0.75, 0.5, 0.25; J~ = 0, 0.5, 2.5, 3.5
    exp_speed = [0.5, 0.0, 2.0, 0.5]
    exp_m = [0.5, 0.75, 0.5, 0.25]
    exp_j = [0.0, 0.5, 2.5, 3.5]
    exp_s = [0.25, 0.625, 1.5, 1.875]
    f3 = math.sqrt(0.26) * 10 / 3  # var_x = 0.26, var_y = 16/9 var_x over the 3-step window, / phi95
    exp_f = [0.0, 0.5, f3, f3]
    for v, sp, m, j, s, f in zip(out, exp_speed, exp_m, exp_j, exp_s, exp_f, strict=True):
        assert v.translation_speed == pytest.approx(sp, abs=1e-6)
        assert v.motion_fineness == pytest.approx(m, abs=1e-6)
        assert v.angular_jerk == pytest.approx(j, abs=1e-6)
        assert v.sensitivity == pytest.approx(s, abs=1e-6)
        assert v.fluctuation == pytest.approx(f, abs=1e-6)
    assert [v.fineness_instant for v in out] == pytest.approx([0.5, 1.0, 0.0, 0.5], abs=1e-6)
    assert [v.jerk_instant for v in out] == pytest.approx([0.0, 1.0, 4.0, 3.0], abs=1e-6)


def test_7d_jerk_uses_rotation_only_and_4d_uses_translation():
    cal = ProxyCalibration(mu95=1.0, nu95=0.1, phi95=1.0)
    p7 = KinematicProxies(cal, 7)
    p7.update(np.array([0.5, 0, 0, 0, 0, 0, 1.0]))
    v = p7.update(np.array([0.0, 0, 0, 0.03, 0.0, 0.04, -1.0]))  # translation jump, rotation 0.05 change
    assert v.jerk_instant == pytest.approx(0.5)
    p4 = KinematicProxies(cal, 4)
    p4.update(np.array([0.5, 0, 0, 1.0]))
    v = p4.update(np.array([0.5, 0.03, 0.04, -1.0]))  # gripper change ignored, xyz change 0.05
    assert v.jerk_instant == pytest.approx(0.5)


def test_default_windows_are_trailing_means():
    cal = ProxyCalibration(mu95=2.0, nu95=0.3, phi95=1.0)  # window_m 10, window_j 5
    rng = np.random.default_rng(1)
    actions = rng.uniform(-1, 1, size=(30, 7))
    p = KinematicProxies(cal, 7)
    out = [p.update(a) for a in actions]
    m_inst = np.clip(1 - np.linalg.norm(actions[:, :3], axis=1) / 2.0, 0, 1)
    j_inst = np.r_[0.0, np.linalg.norm(np.diff(actions[:, 3:6], axis=0), axis=1) / 0.3]
    for t, v in enumerate(out):
        assert v.motion_fineness == pytest.approx(m_inst[max(0, t - 9) : t + 1].mean())
        assert v.angular_jerk == pytest.approx(j_inst[max(0, t - 4) : t + 1].mean())
        assert v.sensitivity == pytest.approx(max(0.0, 0.5 * v.motion_fineness + 0.5 * v.angular_jerk))


def test_online_matches_vectorized_raw_series():
    cal = ProxyCalibration(mu95=1.0, nu95=0.2, phi95=0.4, window_f=10)
    actions = np.random.default_rng(2).normal(0, 0.3, size=(25, 4))
    p = KinematicProxies(cal, 4)
    out = [p.update(a) for a in actions]
    assert [v.translation_speed for v in out] == pytest.approx(translation_magnitudes(actions).tolist())
    assert [v.jerk_instant * 0.2 for v in out[1:]] == pytest.approx(raw_jerks(actions).tolist())
    assert [v.fluctuation * 0.4 for v in out[1:]] == pytest.approx(raw_fluctuations(actions, 10).tolist())


def test_reset_and_bad_input_leave_state_clean():
    p = KinematicProxies(SMALL, 4)
    first = p.update(np.array([0.3, 0.4, 0.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        p.update(np.array([np.nan, 0, 0, 0]))
    with pytest.raises(ValueError, match="shape"):
        p.update(np.zeros(7))
    second = p.update(np.zeros(4))
    assert second.angular_jerk == pytest.approx(0.5)  # the rejected inputs left no trace
    p.reset()
    assert p.update(np.array([0.3, 0.4, 0.0, 1.0])) == first


def test_calibration_validation():
    with pytest.raises(ValueError, match="mu95"):
        ProxyCalibration(mu95=0.0, nu95=1.0, phi95=1.0)
    with pytest.raises(ValueError, match="nu95"):
        ProxyCalibration(mu95=1.0, nu95=math.nan, phi95=1.0)
    with pytest.raises(ValueError, match="window_j"):
        ProxyCalibration(mu95=1.0, nu95=1.0, phi95=1.0, window_j=0)
    with pytest.raises(ValueError, match="weight"):
        ProxyCalibration(mu95=1.0, nu95=1.0, phi95=1.0, weight=1.5)
    with pytest.raises(ValueError, match="unknown keys"):
        ProxyCalibration.from_dict({"mu95": 1.0, "nu95": 1.0, "phi95": 1.0, "mu59": 2.0})
    with pytest.raises(ValueError, match="action_dim"):
        KinematicProxies(SMALL, 6)
    assert ProxyCalibration.from_dict(SMALL.to_dict()) == SMALL


# --- joint derivatives -------------------------------------------------------------------------------------

C = np.array([[0.1, -0.2], [1.0, 0.5], [-2.0, 0.3], [0.7, -1.1]])  # cubic coefficients c0..c3 per joint


def _cubic(t: float) -> np.ndarray:
    return C[0] + C[1] * t + C[2] * t**2 + C[3] * t**3


def test_joint_derivatives_exact_on_cubic_with_irregular_stamps():
    stamps = [0.0, 0.013, 0.030, 0.041, 0.070, 0.0705, 0.1]
    jd = JointDerivatives()
    out = [jd.update(t, _cubic(t)) for t in stamps]
    assert out[0] == (None, None, None)
    assert out[1][1] is None and out[2][2] is None
    for k in range(3, len(stamps)):
        t0, t1, t2, t3 = stamps[k - 3 : k + 1]
        vel, acc, jerk = out[k]
        # Divided differences of t^2, t^3: f[a,b] = a+b, a^2+ab+b^2; f[a,b,c] of t^3 = a+b+c.
        assert vel == pytest.approx(C[1] + C[2] * (t2 + t3) + C[3] * (t2**2 + t2 * t3 + t3**2), rel=1e-6)
        assert acc == pytest.approx(2 * C[2] + 2 * C[3] * (t1 + t2 + t3), rel=1e-6)
        assert jerk == pytest.approx(6 * C[3], rel=1e-6)


def test_joint_derivatives_reject_bad_input_without_losing_state():
    jd = JointDerivatives()
    jd.update(0.0, _cubic(0.0))
    jd.update(0.02, _cubic(0.02))
    with pytest.raises(NonIncreasingStampError):
        jd.update(0.02, _cubic(0.02))
    with pytest.raises(NonIncreasingStampError):
        jd.update(0.01, _cubic(0.01))
    with pytest.raises(ValueError, match="expected 2"):
        jd.update(0.03, np.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        jd.update(0.03, np.array([np.inf, 0.0]))
    with pytest.raises(ValueError, match="stamp"):
        jd.update(math.nan, _cubic(0.03))
    vel, acc, jerk = jd.update(0.05, _cubic(0.05))
    assert acc == pytest.approx(2 * C[2] + 2 * C[3] * 0.07)
    assert jerk is None
    with pytest.raises(ValueError, match="n_joints"):
        JointDerivatives(0)
    with pytest.raises(ValueError, match="expected 9"):
        JointDerivatives(9).update(0.0, np.zeros(7))


def test_joint_derivatives_gap_restarts_history():
    jd = JointDerivatives(2, max_gap_s=0.5)
    jd.update(0.0, _cubic(0.0))
    assert jd.update(0.1, _cubic(0.1))[0] is not None
    assert jd.update(5.0, _cubic(5.0)) == (None, None, None)


# --- calibration -------------------------------------------------------------------------------------------


def _demo_episodes(dim: int, n: int = 6, steps: int = 60) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(steps)[:, None]
    eps = []
    for _ in range(n):
        freq = rng.uniform(0.05, 0.2, size=(1, dim))
        a = 0.5 * np.sin(freq * t + rng.uniform(0, 6, size=(1, dim))) + rng.normal(0, 0.01, size=(steps, dim))
        a[:, -1] = np.where(t[:, 0] < steps // 2, -1.0, 1.0)
        eps.append(a.astype(np.float32))
    return eps


@pytest.mark.parametrize("dim", [4, 7])
def test_calibrate_percentiles_and_yaml_round_trip(dim):
    eps = _demo_episodes(dim)
    d = calibrate(eps, source="synthetic", date="2026-01-01T00:00:00+00:00")
    a = np.concatenate(eps).astype(np.float64)
    assert d["proxies"]["mu95"] == pytest.approx(np.percentile(np.linalg.norm(a[:, :3], axis=1), 95))
    part = slice(3, 6) if dim == 7 else slice(0, 3)
    jerks = np.concatenate(
        [np.linalg.norm(np.diff(e[:, part].astype(np.float64), axis=0), axis=1) for e in eps]
    )
    assert d["proxies"]["nu95"] == pytest.approx(np.percentile(jerks, 95))
    assert d["fluctuation"]["p95"] == pytest.approx(1.0)  # normalized by its own 95th percentile
    assert d["provenance"] == {
        "source": "synthetic",
        "episodes": 6,
        "steps": 360,
        "action_dim": dim,
        "date": "2026-01-01T00:00:00+00:00",
        "generator": "vla_accel_ros.kinematics.calibration",
    }
    sens = [d["sensitivity"][k] for k in ("p05", "p25", "p50", "p75", "p95", "p99")]
    assert sens == sorted(sens) and sens[0] >= 0
    assert d["threshold"]["f_lo"] < d["threshold"]["f_hi"]
    back = yaml.safe_load(yaml.safe_dump(d))
    assert back == d
    assert ProxyCalibration.from_dict(back["proxies"]).mu95 == d["proxies"]["mu95"]
    kf = ActionKalman.from_dict(back["kalman"])
    assert kf.action_dim == dim and len(back["kalman"]["one_step_mae"]) == dim


def test_calibrate_rejects_unusable_demos():
    with pytest.raises(ValueError, match="no episodes"):
        calibrate([], source="x")
    with pytest.raises(ValueError, match="translation"):
        calibrate([np.zeros((20, 4))], source="x")
    with pytest.raises(ValueError, match="one action dimension"):
        calibrate([np.zeros((20, 4)), np.zeros((20, 7))], source="x")
    bad = _demo_episodes(4, n=1)
    bad[0][5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        calibrate(bad, source="x")
