"""KERV Kalman filter, fit, one-step error and compensator policy."""

import numpy as np
import pytest

from vla_accel_ros.kinematics import ActionKalman, KalmanCompensator


def _reference_predict(z: np.ndarray, q: float, r: float, d: float = 1.0) -> tuple[float, float]:
    """Textbook matrix Kalman filter over the window z (n,), independent of the module's scalar algebra."""
    F = np.array([[1.0, d], [0.0, d]])
    G = np.array([[0.5], [1.0]])
    Q = q * (G @ G.T)
    H = np.array([[1.0, 0.0]])
    x = np.array([z[1], z[1] - z[0]])
    P = r * np.array([[1.0, 1.0], [1.0, 2.0]])
    for zk in z[2:]:
        x, P = F @ x, F @ P @ F.T + Q
        S = (H @ P @ H.T)[0, 0] + r
        K = (P @ H.T)[:, 0] / S
        x = x + K * (zk - x[0])
        P = (np.eye(2) - np.outer(K, H[0])) @ P
    x, P = F @ x, F @ P @ F.T + Q
    return float(x[0]), float(P[0, 0] + r)


def test_predict_matches_reference_filter_for_short_and_full_windows():
    rng = np.random.default_rng(0)
    q, r = np.array([1e-3, 0.2, 0.0]), np.array([1e-2, 1e-3, 0.5])
    kf = ActionKalman(3, q, r, history=6)
    z = rng.normal(size=(15, 3)).cumsum(0)
    for t in range(15):
        kf.update(z[t])
        if t < 1:
            continue
        mean, var = kf.predict()
        window = z[max(0, t - 5) : t + 1]
        for d in range(3):
            m_ref, v_ref = _reference_predict(window[:, d], q[d], r[d])
            assert mean[d] == pytest.approx(m_ref, rel=1e-9, abs=1e-12)
            assert var[d] == pytest.approx(v_ref, rel=1e-9)


def test_constant_velocity_sequence_is_predicted_exactly_and_noisy_one_converges():
    kf = ActionKalman(2, q=1e-4, r=1e-2)
    truth = lambda t: np.array([0.1 + 0.02 * t, -0.5 + 0.003 * t])  # noqa: E731
    for t in range(12):
        kf.update(truth(t))
        if t >= 1:
            assert kf.predict()[0] == pytest.approx(truth(t + 1), abs=1e-12)
    # With measurement noise the prediction of the true next value beats the noise and repeat-last.
    rng = np.random.default_rng(1)
    kf.reset()
    sigma = 0.01
    err_kf, err_last = [], []
    for t in range(400):
        z = truth(t) + rng.normal(0, sigma, 2)
        kf.update(z)
        if t >= 20:
            err_kf.append(np.abs(kf.predict()[0] - truth(t + 1)))
            err_last.append(np.abs(z - truth(t + 1)))
    assert np.mean(err_kf) < 0.8 * sigma < np.mean(err_last)


def _smooth_episodes(sigma: np.ndarray, n: int = 8, steps: int = 80, seed: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    eps = []
    for _ in range(n):
        base = 0.6 * np.sin(0.08 * t + rng.uniform(0, 6, (1, sigma.size))) + 0.004 * t
        eps.append(base + rng.normal(0, 1, (steps, sigma.size)) * sigma)
    return eps


def test_fitted_filter_beats_repeat_last_on_smooth_motion():
    eps = _smooth_episodes(np.array([0.002, 0.002, 0.002]))
    kf = ActionKalman.fit(eps)
    err = kf.one_step_error(eps)
    assert err.steps == 8 * (80 - 2)
    assert (err.kalman < 0.5 * err.repeat_last).all()
    assert (err.kalman_median < 0.5 * err.repeat_last_median).all()
    # Noise-free ramps: exact.
    ramps = [np.outer(np.arange(30), [0.01, -0.02]) + [0.3, 0.1]]
    assert ActionKalman(2, 1e-4, 1e-3).one_step_error(ramps).kalman == pytest.approx([0, 0], abs=1e-12)


def test_fit_recovers_noise_ordering():
    sigma = np.array([0.001, 0.01, 0.1])
    kf = ActionKalman.fit(_smooth_episodes(sigma))
    assert kf.r[0] < kf.r[1] < kf.r[2]
    # Roughly the true variance for the noisiest dimension, where the motion's own curvature is negligible.
    assert 0.3 * sigma[2] ** 2 < kf.r[2] < 3 * sigma[2] ** 2
    # Process noise: random-acceleration processes with the same measurement noise.
    rng = np.random.default_rng(3)
    q_true = np.array([1e-7, 1e-4])
    eps = []
    for _ in range(6):
        acc = rng.normal(0, 1, (150, 2)) * np.sqrt(q_true)
        eps.append(np.cumsum(np.cumsum(acc, 0), 0) + rng.normal(0, 1e-3, (150, 2)))
    kq = ActionKalman.fit(eps)
    assert kq.q[0] < kq.q[1]


def test_valid_flag_bad_input_and_round_trip():
    kf = ActionKalman(2, 1e-3, 1e-2)
    assert not kf.valid
    mean, var = kf.predict()
    assert np.isinf(var).all() and (mean == 0).all()
    kf.update([0.5, 0.1])
    assert not kf.valid and kf.predict()[0] == pytest.approx([0.5, 0.1])
    with pytest.raises(ValueError, match="finite"):
        kf.update([np.nan, 0.0])
    with pytest.raises(ValueError, match="shape"):
        kf.update([0.0, 0.0, 0.0])
    assert kf.samples == 1
    kf.update([0.6, 0.1])
    assert kf.valid and kf.predict()[0] == pytest.approx([0.7, 0.1])
    with pytest.raises(ValueError, match="r must be"):
        ActionKalman(2, 1e-3, [1e-2, 0.0])
    with pytest.raises(ValueError, match="q must be"):
        ActionKalman(2, [1e-3, np.inf], 1e-2)
    with pytest.raises(ValueError, match="3 values|2 values"):
        ActionKalman(2, [1e-3, 1e-3, 1e-3], 1e-2)
    with pytest.raises(ValueError, match="history"):
        ActionKalman(2, 1e-3, 1e-2, history=1)
    back = ActionKalman.from_dict(kf.to_dict())
    assert (back.q == kf.q).all() and (back.r == kf.r).all() and back.history == kf.history


def test_fit_and_error_reject_bad_episodes():
    with pytest.raises(ValueError, match="no episodes"):
        ActionKalman.fit([])
    with pytest.raises(ValueError, match="too short"):
        ActionKalman.fit([np.zeros((2, 3))])
    with pytest.raises(ValueError, match="NaN"):
        ActionKalman.fit([np.full((5, 3), np.nan)])
    with pytest.raises(ValueError, match="differs"):
        ActionKalman.fit([np.zeros((5, 3)), np.zeros((5, 4))])
    with pytest.raises(ValueError, match="dimensions"):
        ActionKalman(2, 1e-3, 1e-2).one_step_error([np.zeros((5, 3))])


def _compensator(dim: int = 7, **kw) -> KalmanCompensator:
    comp = KalmanCompensator(ActionKalman(dim, 1e-4, 1e-3), **kw)
    for t in range(3):
        comp.observe(np.full(dim, 0.1 * t))
    return comp


def test_compensator_fills_masked_dims_only():
    comp = _compensator()
    partial = np.array([9, 9, 9, 0, 0, 0, 0], dtype=np.float32)
    fill = comp.fill(partial, first_open=3)
    assert fill.filled == [3, 4, 5] and fill.open == [6]  # gripper never filled by default
    assert fill.action[:3].tolist() == [9, 9, 9]
    assert fill.action[3:6] == pytest.approx([0.3, 0.3, 0.3])
    assert fill.action[6] == 0 and fill.action.dtype == np.float32
    custom = _compensator(4, mask=[False, True, False, True])
    assert custom.fill(np.zeros(4), first_open=0).filled == [1, 3]
    nothing = _compensator()
    assert nothing.fill(np.zeros(7), first_open=7).filled == []
    assert nothing.can_fill()  # nothing was filled: no cool-down
    with pytest.raises(ValueError, match="first_open"):
        nothing.fill(np.zeros(7), first_open=8)
    with pytest.raises(ValueError, match="mask"):
        KalmanCompensator(ActionKalman(4, 1e-4, 1e-3), mask=[True, False])


def test_compensator_cooldown_and_validity():
    comp = KalmanCompensator(ActionKalman(4, 1e-4, 1e-3))
    assert comp.fill(np.zeros(4), 0).filled == []  # invalid: no history
    comp.observe(np.zeros(4))
    assert not comp.valid and comp.fill(np.zeros(4), 0).open == [0, 1, 2, 3]
    comp.observe(np.zeros(4))
    allowed = []
    for _ in range(12):
        fill = comp.fill(np.zeros(4), 1)
        allowed.append(bool(fill.filled))
        comp.observe(fill.action)
    # Fill at step 0; steps 1..4 cool down (n = 4); fill again at 5, then 10.
    assert allowed == [True, False, False, False, False, True, False, False, False, False, True, False]
    comp.reset()
    assert not comp.valid and not comp.cooling_down
    eager = _compensator(4, cooldown=0)
    for _ in range(3):  # every step may fill, but only once per step
        assert eager.fill(np.zeros(4), 0).filled == [0, 1, 2]
        assert eager.fill(np.zeros(4), 0).filled == []
        eager.observe(np.zeros(4))


def test_damped_trend_matches_the_reference_filter_and_spans_repeat_last_to_constant_velocity():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(12, 3)).cumsum(0)
    damping = np.array([0.0, 0.5, 1.0])
    kf = ActionKalman(3, 1e-3, 1e-2, history=8, damping=damping)
    for t in range(12):
        kf.update(z[t])
    mean, var = kf.predict()
    for d in range(3):
        m_ref, v_ref = _reference_predict(z[-8:, d], 1e-3, 1e-2, damping[d])
        assert mean[d] == pytest.approx(m_ref, rel=1e-9) and var[d] == pytest.approx(v_ref, rel=1e-9)
    # the two ends of the family: no trend and q >> r repeats the last action; full trend extrapolates a ramp
    still = ActionKalman(1, 1e6, 1e-6, history=5, damping=0.0)
    ramp = ActionKalman(1, 0.0, 1e-3, history=5, damping=1.0)
    for a in (0.1, 0.3, 0.2, 0.5):
        still.update(np.array([a]))
    for a in (0.1, 0.2, 0.3, 0.4):
        ramp.update(np.array([a]))
    assert still.predict()[0][0] == pytest.approx(0.5, abs=1e-5)
    assert ramp.predict()[0][0] == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ValueError, match="damping"):
        ActionKalman(2, 1e-3, 1e-2, damping=[0.5, 1.5])


def _phase_episodes(n: int = 8, steps: int = 90) -> list[np.ndarray]:
    """Smooth motion interrupted by abrupt changes of command (new phases), a binary gripper: the shape of
    scripted demonstrations, where constant velocity overshoots after every switch."""
    rng = np.random.default_rng(4)
    eps = []
    for _ in range(n):
        level = rng.uniform(-1, 1, (steps // 15 + 1, 2)).repeat(15, axis=0)[:steps]
        drift = 0.3 * np.sin(0.15 * np.arange(steps))[:, None]
        arm = level + drift + rng.normal(0, 0.01, (steps, 2))
        grip = np.where((np.arange(steps) // 30) % 2 == 0, -1.0, 1.0)[:, None]
        eps.append(np.hstack([arm, grip]))
    return eps


def test_fit_picks_a_damping_that_beats_both_repeat_last_and_constant_velocity_on_phased_motion():
    eps = _phase_episodes()
    kf = ActionKalman.fit(eps)
    err = kf.one_step_error(eps)
    # the comparison the calibration reports, per dimension: never worse than either simple predictor (the
    # random walk with q >> r is repeat-last up to a gain of 1 - 1e-6)
    slack = 1.0 + 1e-5
    assert (err.kalman <= err.repeat_last * slack).all() and (err.kalman <= err.const_velocity * slack).all()
    # the arm dims keep part of the trend, the binary gripper none (its jumps are all a trend would see)
    assert 0.0 < kf.damping[0] and kf.damping[2] == 0.0
    assert err.const_velocity[2] > err.repeat_last[2]
    # a config from before the damping existed is the constant-velocity filter it was
    old = ActionKalman.from_dict({"history": 10, "q": [1e-3] * 3, "r": [1e-2] * 3})
    assert (old.damping == 1.0).all()
    assert ActionKalman.from_dict(kf.to_dict()).damping.tolist() == kf.damping.tolist()
