"""DyQ perturbation study: deterministic prefixes, correlations and the table it places."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vla_accel_ros.evaluation.perturbation import Probe, pearson, spearman, summarize

MODES = ["w4a4-emu", "w4a8-emu", "w4a16"]


def _probes(scores, sens) -> list[Probe]:
    pairs = enumerate(zip(scores, sens, strict=True))
    return [Probe("reach-v3", 0, i, s, 0.0, 0.0, sc) for i, (sc, s) in pairs]


def test_correlations_follow_the_data():
    x = np.linspace(0, 1, 20)
    assert pearson(x, 2 * x + 1) == pytest.approx(1.0)
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert pearson(x, -x) == pytest.approx(-1.0)
    assert math.isnan(pearson([1.0, 1.0, 1.0], [0.0, 1.0, 2.0]))


def test_table_puts_the_top_mode_where_one_low_step_moves_the_hand_most():
    scores = np.linspace(0.0, 1.0, 50)
    sens = np.where(scores > 0.6, 0.01, 0.001)  # sensitive only above S = 0.6
    out = summarize(_probes(scores, sens), MODES, tolerance=0.005, bins=5)
    table = out["table"]
    assert table["top_threshold"] == pytest.approx(0.6, abs=1e-6)
    assert table["precision_table_modes"] == MODES[:-1] and table["precision_modes"] == MODES
    assert table["precision_table_bounds"] == pytest.approx([0.3, 0.6])
    assert out["correlation"]["score_S"]["pearson"] > 0.8


def test_nothing_sensitive_keeps_the_top_mode_above_every_score_seen():
    scores = np.linspace(0.0, 1.0, 30)
    out = summarize(_probes(scores, np.full(30, 1e-4)), MODES, tolerance=1e-3)
    assert out["table"]["top_threshold"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no probes"):
        summarize([], MODES)


def test_same_mode_at_the_probe_step_reproduces_the_reference_exactly():
    """The study rests on deterministic rollouts: perturbing with the top mode itself moves nothing."""
    from vla_accel_ros.evaluation.methods import load_settings
    from vla_accel_ros.evaluation.perturbation import probe_layout
    from vla_accel_ros.kinematics.config_io import proxy_calibration
    from vla_accel_ros.policy.runtime import Policy
    from vla_accel_ros.quant import quantize_policy

    policy = Policy.load(None)
    quantize_policy(policy, group=32)
    cal = proxy_calibration(load_settings())
    top = policy.precisions[-1]
    same = probe_layout(policy, "reach", 0, cal, top, top, probe_every=4, horizon=3, max_steps=16)
    assert same and all(p.sensitivity == 0.0 for p in same)
    low = probe_layout(policy, "reach", 0, cal, "w4a4-emu", top, probe_every=4, horizon=3, max_steps=16)
    assert [p.step for p in low] == [p.step for p in same]
    assert all(np.isfinite([p.score, p.fineness, p.jerk]).all() for p in low)
