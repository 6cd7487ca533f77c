"""Calibration of the proxies, the fluctuation scale, the Kalman noise and the S distribution from demos.

Pure: per-episode action arrays in, a plain YAML-ready dict out (only str/int/float/list/dict). Layout:

    provenance:  source, episodes, steps, action_dim, date (UTC ISO-8601), generator
    proxies:     ProxyCalibration fields (mu95, nu95, phi95, windows, weight) -> ProxyCalibration.from_dict
    translation: percentiles of ||a^xyz||
    jerk:        percentiles of the raw jerk (the nu95 quantity)
    fluctuation: percentiles of the normalized fluctuation F_t (the ThresholdPolicy input)
    threshold:   suggested ThresholdPolicy f_lo / f_hi = 10th / 90th percentile of F_t
    sensitivity: percentiles of S_t and the share of steps above a few candidate top thresholds
    kalman:      ActionKalman.to_dict() (history, q, r, damping) + one-step mean / median absolute
                 error of the filter, of "repeat last" and of "constant velocity"

The S percentiles place the precision thresholds (each mode's share of steps); the ones that tie S to a
measured action error need the model and live with the quantization evaluation.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

import numpy as np

from vla_accel_ros.kinematics.kalman import ActionKalman
from vla_accel_ros.kinematics.proxies import (
    KinematicProxies,
    ProxyCalibration,
    raw_fluctuations,
    raw_jerks,
    translation_magnitudes,
)

PERCENTILES = (5, 10, 25, 50, 75, 90, 95, 99)
TOP_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p:02d}": float(np.percentile(values, p)) for p in PERCENTILES}


def _p95(name: str, values: np.ndarray) -> float:
    if values.size == 0:
        raise ValueError(f"no samples to calibrate {name}: episodes too short")
    v = float(np.percentile(values, 95))
    if not v > 0:
        raise ValueError(f"{name} (95th percentile) is 0: the demonstrations never exercise it")
    return v


def calibrate(
    episodes_actions: Sequence[np.ndarray],
    source: str,
    *,
    window_m: int = 10,
    window_j: int = 5,
    window_f: int = 10,
    weight: float = 0.5,
    history: int = 10,
    date: str | None = None,
) -> dict:
    """Calibrate from demonstrations (a list of (T, A) arrays, A = 4 or 7). ValueError on unusable data."""
    episodes = [np.asarray(e, dtype=np.float64) for e in episodes_actions]
    if not episodes:
        raise ValueError("no episodes given")
    dims = {e.shape[1] if e.ndim == 2 else -1 for e in episodes}
    if len(dims) != 1:
        raise ValueError(f"episodes must all be (T, A) arrays of one action dimension, got dimensions {dims}")
    speed = np.concatenate([translation_magnitudes(e) for e in episodes])
    jerk = np.concatenate([raw_jerks(e) for e in episodes])
    fluct = np.concatenate([raw_fluctuations(e, window_f) for e in episodes])
    cal = ProxyCalibration(
        mu95=_p95("translation magnitude", speed),
        nu95=_p95("jerk", jerk),
        phi95=_p95("fluctuation", fluct),
        window_m=window_m,
        window_j=window_j,
        weight=weight,
        window_f=window_f,
    )
    dim = dims.pop()
    proxies = KinematicProxies(cal, dim)
    sens = []
    for e in episodes:
        proxies.reset()
        sens.extend(proxies.update(a).sensitivity for a in e)
    s = np.asarray(sens)
    fluct_n = fluct / cal.phi95
    kalman = ActionKalman.fit(episodes, history=history)
    err = kalman.one_step_error(episodes)
    return {
        "provenance": {
            "source": str(source),
            "episodes": len(episodes),
            "steps": int(speed.size),
            "action_dim": int(dim),
            "date": date or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "generator": __name__,
        },
        "proxies": cal.to_dict(),
        "translation": _percentiles(speed),
        "jerk": _percentiles(jerk),
        "fluctuation": _percentiles(fluct_n),
        "threshold": {"f_lo": float(np.percentile(fluct_n, 10)), "f_hi": float(np.percentile(fluct_n, 90))},
        "sensitivity": {
            **_percentiles(s),
            "share_above": {f"{th:.2f}": float((s > th).mean()) for th in TOP_THRESHOLDS},
        },
        "kalman": {
            **kalman.to_dict(),
            "one_step_mae": err.kalman.tolist(),
            "repeat_last_mae": err.repeat_last.tolist(),
            "const_velocity_mae": err.const_velocity.tolist(),
            "one_step_median_ae": err.kalman_median.tolist(),
            "repeat_last_median_ae": err.repeat_last_median.tolist(),
            "const_velocity_median_ae": err.const_velocity_median.tolist(),
            "eval_steps": err.steps,
        },
    }
