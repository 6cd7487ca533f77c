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
    from vla_accel_ros.policy.builder import PolicySpec, build_policy

    policy = build_policy(PolicySpec(precision_ladder="int4"))  # the graph's group size (32)
    cal = load_settings().kinematics.proxy_calibration()
    top = policy.precisions[-1]
    same = probe_layout(policy, "reach", 0, cal, top, top, probe_every=4, horizon=3, max_steps=16)
    assert same and all(p.sensitivity == 0.0 for p in same)
    low = probe_layout(policy, "reach", 0, cal, "w4a4-emu", top, probe_every=4, horizon=3, max_steps=16)
    assert [p.step for p in low] == [p.step for p in same]
    assert all(np.isfinite([p.score, p.fineness, p.jerk]).all() for p in low)


def test_the_study_ladders_at_the_graphs_group_and_writes_the_overlay_the_graph_loads(tmp_path):
    """calibrate-dyq's policy is the inference node's (same table, int4 ladder, group 32 unless --group),
    and its overlay is a params file the graph's settings load into a working DyQ table."""
    from vla_accel_ros.evaluation.methods import load_settings
    from vla_accel_ros.evaluation.perturbation import Study, dyq_overlay
    from vla_accel_ros.params import QUANT_GROUP_SIZE, GraphSettings, write_params_file
    from vla_accel_ros.params.settings import default_files
    from vla_accel_ros.policy.builder import PolicySpec

    graph = load_settings()
    spec = PolicySpec.from_params(graph.inference, precision_ladder="int4")
    study = Study(spec, graph.kinematics.proxy_calibration(), "w4a4-emu")
    assert QUANT_GROUP_SIZE == 32 and study.settings()["group"] == graph.inference.quant_group_size == 32
    scores = np.linspace(0.0, 1.0, 50)
    summary = summarize(_probes(scores, np.where(scores > 0.6, 0.01, 0.001)), MODES, tolerance=0.005, bins=5)
    path = tmp_path / "dyq.yaml"
    write_params_file(path, dyq_overlay(summary, 32), ["test"])
    settings = GraphSettings.load([*default_files(), path])
    assert settings.inference.precision_ladder == "int4" and settings.inference.quant_group_size == 32
    ctrl = settings.controller
    assert ctrl.precision_switching and list(ctrl.precision_modes) == MODES
    assert ctrl.top_threshold == pytest.approx(0.6, abs=1e-6)
    policy = ctrl.precision_policy()  # the table is one the controller accepts
    assert policy is not None
