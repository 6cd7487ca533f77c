"""Safety guard (each limit, bad input, hold) and staleness watchdog."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_accel_ros.control import SafetyGuard, SafetyLimits, Watchdog, hold_action

LIM7 = SafetyLimits(
    action_dim=7,
    max_translation=0.8,
    max_rotation=0.3,
    clip_min=[-1, -1, -1, -0.5, -0.5, -0.5, -1],
    clip_max=[1, 1, 1, 0.5, 0.5, 0.5, 1],
    max_gripper_change=0.5,
)


def test_clean_action_passes_as_float32():
    v = SafetyGuard(LIM7).check(np.array([0.1, 0.2, 0.0, 0.05, 0.0, 0.0, 0.3]))
    assert v.ok and v.reason == "ok" and v.violations == [] and v.clipped == []
    assert v.action.dtype == np.float32 and v.action[1] == pytest.approx(0.2)


def test_clip_is_applied_and_reported():
    lim = SafetyLimits(4, clip_min=[-0.5, -0.5, -0.5, -1], clip_max=[0.5, 0.5, 0.5, 1])
    v = SafetyGuard(lim).check(np.array([0.7, -0.2, -0.9, 1.0]))
    assert v.ok and v.clipped == [0, 2] and "clipped dims [0, 2]" in v.reason
    assert v.action.tolist() == pytest.approx([0.5, -0.2, -0.5, 1.0])


def test_translation_and_rotation_limits_hold_with_amounts():
    g = SafetyGuard(LIM7)
    v = g.check(np.array([0.6, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0]))
    assert not v.ok and v.action is None
    assert v.violations == [("max_translation", pytest.approx(1.0), 0.8)]
    assert v.reason.startswith("hold: max_translation 1 > 0.8")
    v = g.check(np.array([0.0, 0.0, 0.0, 0.3, 0.4, 0.0, 0.0]))
    assert [n for n, _, _ in v.violations] == ["max_rotation"] and v.violations[0][1] == pytest.approx(0.5)


def test_gripper_rate_uses_last_accepted_command():
    g = SafetyGuard(LIM7, initial_gripper=-1.0)
    assert not g.check(np.array([0, 0, 0, 0, 0, 0, 1.0])).ok  # change 2 > 0.5
    assert g.check(np.array([0, 0, 0, 0, 0, 0, -0.6])).ok
    assert g.last_gripper == pytest.approx(-0.6)
    v = g.check(np.array([0, 0, 0, 0, 0, 0, 0.0]))
    assert v.violations == [("max_gripper_change", pytest.approx(0.6), 0.5)]
    assert g.hold().tolist() == pytest.approx([0, 0, 0, 0, 0, 0, -0.6])
    assert SafetyGuard(LIM7).check(np.array([0, 0, 0, 0, 0, 0, 1.0])).ok  # unknown start: not rate-checked


def test_workspace_box_with_recovery():
    lim = SafetyLimits(4, workspace_min=[0, 0, 0], workspace_max=[1, 1, 1], translation_scale=0.1)
    g = SafetyGuard(lim)
    assert g.check(np.array([1.0, 0, 0, 0]), ee_position=np.array([0.5, 0.5, 0.5])).ok
    v = g.check(np.array([1.0, 0, 0, 0]), ee_position=np.array([0.95, 0.5, 0.5]))
    assert not v.ok and v.violations == [("workspace", pytest.approx(0.05), 0.0)]
    # Already outside: moving back towards the box is allowed, moving further out is not.
    assert g.check(np.array([-1.0, 0, 0, 0]), ee_position=np.array([1.2, 0.5, 0.5])).ok
    assert not g.check(np.array([0.0, 0, 0, 0]), ee_position=np.array([1.2, 0.5, 0.5])).ok
    v = g.check(np.zeros(4), ee_position=np.array([np.nan, 0, 0]))
    assert not v.ok and v.reason == "hold: ee_position invalid"
    assert g.check(np.array([1.0, 0, 0, 0])).ok  # no ee_position: skipped


@pytest.mark.parametrize(
    "action, name",
    [
        (np.array([np.nan, 0, 0, 0, 0, 0, 0]), "finite"),
        (np.array([0, 0, np.inf, 0, 0, 0, 0]), "finite"),
        (np.zeros(4), "length"),
        (np.zeros((1, 7)), "length"),
        (["a"] * 7, "numeric"),
    ],
)
def test_bad_actions_hold(action, name):
    v = SafetyGuard(LIM7).check(action)
    assert not v.ok and v.action is None and v.violations[0][0] == name and v.reason.startswith("hold")


def test_limits_validation():
    with pytest.raises(ValueError, match="7-D"):
        SafetyLimits(4, max_rotation=0.1)
    with pytest.raises(ValueError, match="clip_min must be <= clip_max"):
        SafetyLimits(4, clip_min=[1, 0, 0, 0], clip_max=[0, 0, 0, 0])
    with pytest.raises(ValueError, match="clip_max must be None or 4"):
        SafetyLimits(4, clip_max=[1, 1, 1])
    with pytest.raises(ValueError, match="both workspace"):
        SafetyLimits(4, workspace_min=[0, 0, 0])
    with pytest.raises(ValueError, match="max_translation"):
        SafetyLimits(4, max_translation=-1.0)
    with pytest.raises(ValueError, match="4 or 7 without kinds"):
        SafetyLimits(8)
    with pytest.raises(ValueError, match="translation_scale"):
        SafetyLimits(4, translation_scale=[0.1, 0.0, 0.1])
    with pytest.raises(ValueError, match="unknown keys"):
        SafetyLimits.from_dict({"action_dim": 4, "max_speed": 1.0})
    assert SafetyLimits.from_dict({"action_dim": 4, "max_translation": 0.5}).max_translation == 0.5


def test_hold_action():
    assert hold_action(4).tolist() == [0, 0, 0, 0]
    assert hold_action(7, last_gripper=1.0).tolist() == [0, 0, 0, 0, 0, 0, 1.0]
    assert hold_action(4, last_gripper=math.nan).tolist() == [0, 0, 0, 0]
    assert hold_action(3, last_gripper=0.5, gripper_dim=0).tolist() == [0.5, 0, 0]
    assert hold_action(3, last_gripper=0.5, gripper_dim=None).tolist() == [0, 0, 0]


LIM4_BOX = SafetyLimits(
    action_dim=4,
    max_translation=1.2,
    clip_min=[-1, -1, -1, -1],
    clip_max=[1, 1, 1, 1],
    max_gripper_change=2.0,
    workspace_min=[0.0, 0.0, 0.0],
    workspace_max=[0.1, 0.1, 0.1],
    translation_scale=0.01,
)
LIM8_JOINTS = SafetyLimits(
    action_dim=8,
    kinds=("joint",) * 7 + ("gripper",),
    max_joint_delta=0.4,
    clip_min=[-0.5] * 7 + [-1],
    clip_max=[0.5] * 7 + [1],
    max_gripper_change=0.5,
)


def _kind_dims(lim: SafetyLimits, kind: str) -> list[int]:
    return lim._arrays["dims"][kind]


@pytest.mark.parametrize("lim", [LIM7, LIM4_BOX, LIM8_JOINTS], ids=["7-D", "4-D box", "8-D joints"])
@settings(max_examples=120, deadline=None)
@given(data=st.data())
def test_any_passed_action_lies_within_limits(lim, data):
    """Whatever the model sends (NaN, inf, huge, wrong values), an accepted action obeys every limit."""
    n = lim.action_dim
    floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
    actions = data.draw(st.lists(st.lists(floats, min_size=n, max_size=n), min_size=1, max_size=6))
    ee = data.draw(st.lists(st.floats(-0.05, 0.15), min_size=3, max_size=3)) if lim.workspace_min else None
    g = SafetyGuard(lim, initial_gripper=0.0)
    lo, hi = np.array(lim.clip_min), np.array(lim.clip_max)
    for a in actions:
        before = g.last_gripper
        v = g.check(np.array(a), ee_position=None if ee is None else np.array(ee))
        if not v.ok:
            assert v.action is None and g.last_gripper == before
            continue
        out = v.action.astype(np.float64)
        assert out.shape == (n,) and np.isfinite(out).all()
        assert (out >= lo).all() and (out <= hi).all()  # the bounds are exact in float32
        for dims, bound in (
            (_kind_dims(lim, "translation"), lim.max_translation),
            (_kind_dims(lim, "rotation"), lim.max_rotation),
        ):
            if bound is not None:
                assert np.linalg.norm(out[dims]) <= bound
        if lim.max_joint_delta is not None:
            assert np.abs(out[_kind_dims(lim, "joint")]).max() <= lim.max_joint_delta
        assert abs(out[lim.gripper_dim] - before) <= lim.max_gripper_change
        if ee is not None:
            p, box_lo, box_hi = np.array(ee), np.array(lim.workspace_min), np.array(lim.workspace_max)
            after = p + 0.01 * out[:3]
            outside_now = np.linalg.norm(np.maximum(0, np.maximum(box_lo - p, p - box_hi)))
            outside_after = np.linalg.norm(np.maximum(0, np.maximum(box_lo - after, after - box_hi)))
            assert outside_after == 0.0 or outside_after < outside_now  # inside, or coming back


def test_violations_say_by_how_much():
    v = SafetyGuard(LIM4_BOX).check(np.array([1.0, 0, 0, 0]), ee_position=np.array([0.095, 0.05, 0.05]))
    assert v.violations == [("workspace", pytest.approx(0.005), 0.0)]
    assert v.reason == "hold: workspace 0.005 > 0 (over by 0.005)"
    v = SafetyGuard(LIM7).check(np.array([0.6, 0.8, 0.0, 0.3, 0.4, 0.0, 0.0]))
    assert v.reason == "hold: max_translation 1 > 0.8 (over by 0.2); max_rotation 0.5 > 0.3 (over by 0.2)"


# --- watchdog ----------------------------------------------------------------------------------------------


def test_watchdog_expiry():
    w = Watchdog(0.5)
    assert w.expired(0.0)  # never kicked
    assert w.kick(10.0)
    assert not w.expired(10.5) and w.expired(10.51)
    assert w.age(10.2) == pytest.approx(0.2)
    assert w.stale(11.0)


def test_watchdog_rejects_backwards_and_bad_stamps():
    w = Watchdog(1.0)
    assert w.kick(5.0)
    assert not w.kick(4.0) and w.rejected == 1 and "goes back" in w.last_error
    assert w.last_kick == 5.0
    assert w.kick(5.0)  # equal stamps are fine
    assert not w.kick(math.nan) and w.rejected == 2
    assert w.expired(4.9)  # query clock behind the last kick: stale
    assert w.expired(math.nan)
    w.reset()
    assert w.kick(0.0) and not w.expired(0.5)
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="timeout_s"):
            Watchdog(bad)
