"""Calibration <-> ROS parameter files, so the nodes and offline tools read the same values.

`vla-accel calibrate` writes config/calibration.yaml in the params-file layout (a top key
per node, then `ros__parameters`), loaded after config/vla_accel.yaml; offline runs read
the same file here without rclpy.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from vla_accel_ros.kinematics.kalman import ActionKalman
from vla_accel_ros.kinematics.proxies import ProxyCalibration

DEFAULT_FILE = Path(__file__).resolve().parents[2] / "config" / "calibration.yaml"


def calibration_to_params(cal: dict) -> dict:
    """The `calibrate()` dict -> node parameters (values only; provenance goes in comments)."""
    proxies = cal["proxies"]
    kalman = cal["kalman"]
    return {
        "/**/kinematics_node": {
            "ros__parameters": {
                "mu95": float(proxies["mu95"]),
                "nu95": float(proxies["nu95"]),
                "phi95": float(proxies["phi95"]),
                "window_m": int(proxies["window_m"]),
                "window_j": int(proxies["window_j"]),
                "window_f": int(proxies["window_f"]),
                "weight": float(proxies["weight"]),
                "kalman_q": [float(v) for v in kalman["q"]],
                "kalman_r": [float(v) for v in kalman["r"]],
            }
        },
        "/**/controller_node": {
            "ros__parameters": {
                "fluctuation_lo": float(cal["threshold"]["f_lo"]),
                "fluctuation_hi": float(cal["threshold"]["f_hi"]),
            }
        },
    }


def write_params(path: Path, params: dict, header: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(params, sort_keys=True)
    path.write_text(text)


def load_params(path: Path | None = None) -> dict:
    """Parameters of every node in a params file ({} when the file does not exist)."""
    path = path or DEFAULT_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    # Keys may carry a namespace wildcard ("/**/controller_node"): index by the node name.
    return {node.rsplit("/", 1)[-1]: (v or {}).get("ros__parameters", {}) for node, v in data.items()}


def proxy_calibration(params: dict) -> ProxyCalibration:
    k = params.get("kinematics_node", {})
    keys = ("mu95", "nu95", "phi95", "window_m", "window_j", "window_f", "weight")
    missing = [key for key in keys[:3] if key not in k]
    if missing:
        raise ValueError(f"calibration lacks kinematics_node.{missing[0]}: run `vla-accel calibrate`")
    return ProxyCalibration(**{key: k[key] for key in keys if key in k})


def kalman_filter(params: dict, action_dim: int, history: int = 10) -> ActionKalman:
    k = params.get("kinematics_node", {})
    if "kalman_q" not in k or "kalman_r" not in k:
        raise ValueError("calibration lacks kinematics_node.kalman_q/kalman_r: run `vla-accel calibrate`")
    return ActionKalman(action_dim, k["kalman_q"], k["kalman_r"], history)
