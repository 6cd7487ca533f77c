"""Calibration -> the nodes' parameters, so the nodes and offline tools read the same values.

`vla-accel calibrate` turns the `calibrate()` result into parameter sections here and writes them as
config/calibration.yaml with `vla_accel_ros.params.write_params_file` (the params-file layout rcl reads),
loaded after config/vla_accel.yaml by the graph and by every offline run (`params.GraphSettings`).
"""

from __future__ import annotations

from typing import Any


def calibration_to_params(cal: dict) -> dict[str, dict[str, Any]]:
    """The `calibrate()` dict -> {node: {parameter: value}} (values only; provenance goes in comments)."""
    proxies = cal["proxies"]
    kalman = cal["kalman"]
    return {
        "kinematics_node": {
            "mu95": float(proxies["mu95"]),
            "nu95": float(proxies["nu95"]),
            "phi95": float(proxies["phi95"]),
            "window_m": int(proxies["window_m"]),
            "window_j": int(proxies["window_j"]),
            "window_f": int(proxies["window_f"]),
            "weight": float(proxies["weight"]),
            "kalman_q": [float(v) for v in kalman["q"]],
            "kalman_r": [float(v) for v in kalman["r"]],
            "kalman_damping": [float(v) for v in kalman.get("damping", [1.0] * len(kalman["q"]))],
        },
        "controller_node": {
            "fluctuation_lo": float(cal["threshold"]["f_lo"]),
            "fluctuation_hi": float(cal["threshold"]["f_hi"]),
        },
    }
