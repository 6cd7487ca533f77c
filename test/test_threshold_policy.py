"""KERV threshold map: monotone in both directions, clipped, strict on NaN; bin conversions."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vla_accel_ros.control import (
    ThresholdPolicy,
    action_units_to_bins,
    bins_to_action_units,
    uniform_bin_width,
)

GRID = np.linspace(-1.0, 3.0, 81)


def test_tighten_golden_values():
    p = ThresholdPolicy(5, 15, f_lo=0.2, f_hi=1.2)
    assert p.decide(0.0) == 15 and p.decide(0.2) == 15
    assert p.decide(0.7) == pytest.approx(10)
    assert p.decide(0.45) == pytest.approx(12.5)
    assert p.decide(1.2) == 5 and p.decide(9.0) == 5


def test_loosen_is_the_mirror():
    t = ThresholdPolicy(5, 15, 0.2, 1.2)
    lo = ThresholdPolicy(5, 15, 0.2, 1.2, direction="loosen_on_fluctuation")
    for f in GRID:
        assert lo.decide(f) == pytest.approx(20 - t.decide(f))


@pytest.mark.parametrize("direction, sign", [("tighten_on_fluctuation", -1), ("loosen_on_fluctuation", 1)])
def test_monotone_and_clipped(direction, sign):
    p = ThresholdPolicy(5, 15, 0.3, 0.9, direction=direction)
    r = np.array([p.decide(f) for f in GRID])
    assert (sign * np.diff(r) >= 0).all()
    assert r.min() == 5 and r.max() == 15


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_input_gives_a_threshold_in_range(f):
    for direction in ("tighten_on_fluctuation", "loosen_on_fluctuation"):
        r = ThresholdPolicy(5, 15, 0.1, 0.8, direction).decide(f)
        assert 5 <= r <= 15
        if not math.isfinite(f):
            assert r == 5


@pytest.mark.parametrize("bad", [math.nan, None, "abc"])
def test_invalid_fluctuation_is_strict(bad):
    assert ThresholdPolicy(5, 15, 0.0, 1.0, "loosen_on_fluctuation").decide(bad) == 5


def test_validation():
    with pytest.raises(ValueError, match="r_min <= r_max"):
        ThresholdPolicy(15, 5)
    with pytest.raises(ValueError, match="f_lo < f_hi"):
        ThresholdPolicy(5, 15, 1.0, 1.0)
    with pytest.raises(ValueError, match="direction"):
        ThresholdPolicy(direction="tighten")
    with pytest.raises(ValueError, match="f_hi must be a finite number"):
        ThresholdPolicy(5, 15, 0.0, math.inf)
    with pytest.raises(ValueError, match="unknown keys"):
        ThresholdPolicy.from_dict({"r_min": 5, "rmax": 15})
    p = ThresholdPolicy.from_dict({"r_min": 4, "r_max": 12, "f_lo": 0.1, "f_hi": 0.5})
    assert p.decide(0.0) == 12


def test_bin_conversions():
    w = uniform_bin_width(np.array([-1.0, -0.5, 0.0]), np.array([1.0, 0.5, 2.56]))
    assert w == pytest.approx([2 / 256, 1 / 256, 0.01])
    units = bins_to_action_units(9, w)
    assert units == pytest.approx([18 / 256, 9 / 256, 0.09])
    assert action_units_to_bins(units, w) == pytest.approx([9, 9, 9])
    with pytest.raises(ValueError, match="q99 > q01"):
        uniform_bin_width(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="bin widths"):
        bins_to_action_units(9, np.array([0.01, 0.0]))
    with pytest.raises(ValueError, match="r_bins"):
        bins_to_action_units(math.nan, 0.01)
    with pytest.raises(ValueError, match="threshold"):
        action_units_to_bins(-0.1, 0.01)
