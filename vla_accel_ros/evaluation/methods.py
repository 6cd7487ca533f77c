"""The named decoding/precision methods every benchmark, replay and evaluation compares.

A method name resolves to an `AccelLoop` built from the same calibration and controller
settings the nodes load (config/calibration.yaml over config/vla_accel.yaml), so offline
rows decide each step exactly as the running graph would.
"""

from __future__ import annotations

from pathlib import Path

from vla_accel_ros.control.accel_loop import AccelLoop, Method
from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.kinematics.config_io import kalman_filter, load_params, proxy_calibration

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
SPECVLA_R = 9.0


def method(name: str, top_precision: str = "fp32") -> Method:
    """'ar', 'static:<mode>', 'dyq', 'spec', 'specvla', 'kerv', 'kerv+dyq'; 'kerv-loosen' is the ablation."""
    if name == "ar":
        return Method(name, precision=top_precision)
    if name.startswith("static:"):
        return Method(name, precision=name.split(":", 1)[1])
    table = {
        "dyq": Method(name, precision=None),
        "spec": Method(name, decoding="spec", precision=top_precision),
        "specvla": Method(name, decoding="specvla", precision=top_precision, threshold=SPECVLA_R),
        "kerv": Method(name, decoding="kerv", precision=top_precision, threshold=None, kalman=True),
        "kerv-loosen": Method(name, decoding="kerv", precision=top_precision, threshold=None, kalman=True),
        "kerv+dyq": Method(name, decoding="kerv", precision=None, threshold=None, kalman=True),
    }
    if name not in table:
        raise ValueError(f"unknown method {name!r}; known: ar, static:<mode>, {', '.join(table)}")
    return table[name]


def load_settings(config_dir: Path | None = None) -> dict:
    """Node parameters from the params YAML, with the calibration file's values on top."""
    config_dir = config_dir or CONFIG_DIR
    params = load_params(config_dir / "vla_accel.yaml")
    for node, values in load_params(config_dir / "calibration.yaml").items():
        params.setdefault(node, {}).update(values)
    return params


def build_loop(name: str, action_dim: int, precisions: list[str], params: dict | None = None) -> AccelLoop:
    """An AccelLoop for method `name`; `precisions` are the policy's modes, cheapest first."""
    params = load_settings() if params is None else params
    ctrl = params.get("controller_node", {})
    kin = params.get("kinematics_node", {})
    m = method(name, top_precision=precisions[-1])
    precision_policy = None
    if m.precision is None:
        modes = list(ctrl.get("precision_modes", precisions))
        missing = [p for p in modes if p not in precisions]
        if missing:
            raise ValueError(f"method {name!r}: precision modes {missing} are not served by the policy")
        table = list(
            zip(ctrl.get("precision_table_bounds", []), ctrl.get("precision_table_modes", []), strict=True)
        )
        precision_policy = PrecisionPolicy(
            modes, ctrl.get("top_threshold", 0.5), table, int(ctrl.get("downgrade_after", 5))
        )
    threshold_policy = None
    if m.threshold is None:
        direction = (
            "loosen_on_fluctuation"
            if name == "kerv-loosen"
            else ctrl.get("threshold_direction", "tighten_on_fluctuation")
        )
        threshold_policy = ThresholdPolicy(
            ctrl.get("r_min", 5.0),
            ctrl.get("r_max", 15.0),
            ctrl.get("fluctuation_lo", 0.0),
            ctrl.get("fluctuation_hi", 1.0),
            direction,
        )
    kalman = kalman_filter(params, action_dim, int(kin.get("history_length", 10))) if m.kalman else None
    return AccelLoop(
        m,
        proxy_calibration(params),
        action_dim,
        precision_policy,
        threshold_policy,
        kalman,
        cooldown=int(kin.get("cooldown_steps", 4)),
    )
