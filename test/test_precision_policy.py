"""DyQ precision switching: table lookup, asymmetric hysteresis, validation, safe fallbacks."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vla_accel_ros.control import PrecisionPolicy, decision_cost_ms

MODES = ["int4", "int8", "bf16"]
TABLE = [(0.2, "int4"), (0.4, "int8")]


def _policy(k: int = 5) -> PrecisionPolicy:
    return PrecisionPolicy(MODES, top_threshold=0.5, table=TABLE, downgrade_after=k)


def test_lookup_without_hysteresis():
    p = _policy()
    assert p.requested(0.1)[0] == "int4"
    assert p.requested(0.2)[0] == "int4"  # bounds are inclusive upper bounds
    assert p.requested(0.3)[0] == "int8"
    assert p.requested(0.45)[0] == "bf16"  # above the table, below top_threshold: top
    assert p.requested(0.51)[0] == "bf16"


def test_starts_at_top_and_downgrades_after_exactly_k_steps():
    p = _policy()
    assert p.mode == "bf16"
    modes = [p.decide(0.1)[0] for _ in range(5)]
    assert modes == ["bf16"] * 4 + ["int4"]
    mode, reason = p.decide(0.1)
    assert mode == "int4" and reason == "S=0.10<=0.20 -> int4"


def test_downgrade_goes_to_highest_mode_requested_in_the_window():
    p = _policy()
    seq = [0.3, 0.1, 0.1, 0.1, 0.1]  # int8 then int4 x4
    assert [p.decide(s)[0] for s in seq] == ["bf16"] * 4 + ["int8"]
    # The count restarts after the change: int4 needs K more steps.
    assert [p.decide(0.1)[0] for _ in range(5)] == ["int8"] * 4 + ["int4"]


def test_upgrade_is_immediate_and_resets_the_count():
    p = _policy()
    for _ in range(5):
        p.decide(0.1)
    assert p.mode == "int4"
    assert p.decide(0.3) == ("int8", "S=0.30<=0.40 -> int8")
    assert p.decide(0.71) == ("bf16", "S=0.71>0.50 -> bf16")
    for _ in range(4):
        p.decide(0.1)
    assert p.decide(0.6)[0] == "bf16"  # streak broken by a top request
    assert [p.decide(0.1)[0] for _ in range(5)] == ["bf16"] * 4 + ["int4"]
    for _ in range(4):
        assert p.decide(0.1)[0] == "int4"
    _, reason = _policy().decide(0.1)
    assert reason == "S=0.10<=0.20 asks int4; holding bf16 (1/5)"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "x"])
def test_invalid_sensitivity_means_top_at_once(bad):
    p = _policy()
    for _ in range(5):
        p.decide(0.1)
    mode, reason = p.decide(bad)
    assert mode == "bf16" and "invalid" in reason


def test_table_validation_names_the_bad_entry():
    with pytest.raises(ValueError, match=r"table\[1\].*unknown mode 'fp8'"):
        PrecisionPolicy(MODES, 0.5, [(0.2, "int4"), (0.4, "fp8")])
    with pytest.raises(ValueError, match=r"table\[1\].*increase"):
        PrecisionPolicy(MODES, 0.5, [(0.3, "int4"), (0.2, "int8")])
    with pytest.raises(ValueError, match=r"table\[1\].*cheaper"):
        PrecisionPolicy(MODES, 0.5, [(0.2, "int8"), (0.4, "int4")])
    with pytest.raises(ValueError, match=r"table\[0\].*unreachable"):
        PrecisionPolicy(MODES, 0.5, [(0.6, "int4")])
    with pytest.raises(ValueError, match=r"table\[0\].*finite"):
        PrecisionPolicy(MODES, 0.5, [(math.nan, "int4")])
    with pytest.raises(ValueError, match=r"table\[0\].*expected"):
        PrecisionPolicy(MODES, 0.5, [(0.2,)])
    with pytest.raises(ValueError, match="distinct"):
        PrecisionPolicy(["int4", "int4"], 0.5, [])
    with pytest.raises(ValueError, match="downgrade_after"):
        PrecisionPolicy(MODES, 0.5, TABLE, downgrade_after=0)
    with pytest.raises(ValueError, match="top_threshold"):
        PrecisionPolicy(MODES, math.nan, TABLE)


def test_from_dict_and_benchmark_helper():
    p = PrecisionPolicy.from_dict(
        {"modes": MODES, "top_threshold": 0.5, "table": [[0.2, "int4"], [0.4, "int8"]], "downgrade_after": 3}
    )
    assert [p.decide(0.1)[0] for _ in range(3)] == ["bf16", "bf16", "int4"]
    with pytest.raises(ValueError, match="lacks 'table'"):
        PrecisionPolicy.from_dict({"modes": MODES, "top_threshold": 0.5})
    cost = decision_cost_ms(p, [0.1, 0.3, 0.7] * 100)
    assert math.isfinite(cost) and cost > 0
    assert p.mode == "bf16"  # the helper leaves the policy reset


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.floats(min_value=-0.2, max_value=1.2), st.just(math.nan)), min_size=1, max_size=60)
)
def test_never_below_request_and_downgrades_only_after_k_lower_requests(seq):
    p = _policy(k=3)
    rank = {m: i for i, m in enumerate(MODES)}
    prev = rank["bf16"]
    requests: list[int] = []
    for s in seq:
        req = rank[p.requested(s)[0]]
        mode = rank[p.decide(s)[0]]
        requests.append(req)
        assert mode >= req
        if mode < prev:
            window = requests[-3:]
            assert len(window) == 3 and all(r < prev for r in window) and mode == max(window)
        prev = mode
