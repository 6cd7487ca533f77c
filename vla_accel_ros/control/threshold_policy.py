"""KERV kinematic acceptance threshold: r(t) in [r_min, r_max] bins from the motion fluctuation.

r is a piecewise-linear, monotone map of the normalized fluctuation F (see `kinematics.proxies`):
constant below f_lo and above f_hi, linear in between. f_lo / f_hi come from calibration (the 10th / 90th
percentile of F over demonstrations); the defaults 0 / 1 span "no fluctuation" to the demonstrations'
95th percentile, since F is normalized by it.

- "tighten_on_fluctuation" (default): more fluctuation -> smaller r. A fluctuating motion is where a
  token a few bins off changes the trajectory most, and where the Kalman prior is least reliable.
- "loosen_on_fluctuation": the opposite, for the ablation.

A non-finite F gives r_min: the strictest acceptance is the safe one.

r is in bins of the 256-bin action tokens (Spec-VLA's |draft_id - target_id| <= r). KERV compares in action
units; `bins_to_action_units` / `action_units_to_bins` convert with the tokenizer's bin width per dimension.
"""

from __future__ import annotations

import math

import numpy as np

DIRECTIONS = ("tighten_on_fluctuation", "loosen_on_fluctuation")


class ThresholdPolicy:
    """Stateless map fluctuation -> acceptance threshold in bins."""

    def __init__(
        self,
        r_min: float = 5.0,
        r_max: float = 15.0,
        f_lo: float = 0.0,
        f_hi: float = 1.0,
        direction: str = "tighten_on_fluctuation",
    ) -> None:
        values = {"r_min": r_min, "r_max": r_max, "f_lo": f_lo, "f_hi": f_hi}
        for name, value in values.items():
            if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if not 0 <= r_min <= r_max:
            raise ValueError(f"need 0 <= r_min <= r_max, got r_min={r_min}, r_max={r_max}")
        if not f_lo < f_hi:
            raise ValueError(f"need f_lo < f_hi, got f_lo={f_lo}, f_hi={f_hi}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        self.r_min, self.r_max = float(r_min), float(r_max)
        self.f_lo, self.f_hi = float(f_lo), float(f_hi)
        self.direction = direction

    @classmethod
    def from_dict(cls, data: dict) -> ThresholdPolicy:
        known = {"r_min", "r_max", "f_lo", "f_hi", "direction"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"threshold policy: unknown keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)

    def decide(self, fluctuation: float) -> float:
        """Threshold r in bins for this step."""
        try:
            f = float(fluctuation)
        except (TypeError, ValueError):
            return self.r_min
        if not math.isfinite(f):
            return self.r_min
        u = min(1.0, max(0.0, (f - self.f_lo) / (self.f_hi - self.f_lo)))  # 0 at f_lo, 1 at f_hi
        if self.direction == "tighten_on_fluctuation":
            u = 1.0 - u
        return self.r_min + u * (self.r_max - self.r_min)


def uniform_bin_width(q01: np.ndarray, q99: np.ndarray, n_bins: int = 256) -> np.ndarray:
    """Bin width in action units when [q01, q99] is cut into n_bins equal bins.

    The tokenizer is the authority on its own bins; use this only where it cuts uniformly this way.
    """
    lo, hi = np.asarray(q01, dtype=np.float64), np.asarray(q99, dtype=np.float64)
    if lo.shape != hi.shape or not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi <= lo).any():
        raise ValueError("q01 and q99 must be finite arrays of one shape with q99 > q01")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return (hi - lo) / n_bins


def _width(bin_width: np.ndarray | float) -> np.ndarray:
    w = np.asarray(bin_width, dtype=np.float64)
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError(f"bin widths must be finite and > 0, got {w.tolist()}")
    return w


def bins_to_action_units(r_bins: float, bin_width: np.ndarray | float) -> np.ndarray:
    """Threshold per dimension in action units (r bins times each dimension's bin width)."""
    if not (math.isfinite(r_bins) and r_bins >= 0):
        raise ValueError(f"r_bins must be finite and >= 0, got {r_bins!r}")
    return r_bins * _width(bin_width)


def action_units_to_bins(threshold: np.ndarray | float, bin_width: np.ndarray | float) -> np.ndarray:
    """Threshold per dimension in (fractional) bins; the inverse of `bins_to_action_units`."""
    t = np.asarray(threshold, dtype=np.float64)
    if not (np.isfinite(t).all() and (t >= 0).all()):
        raise ValueError(f"threshold must be finite and >= 0, got {t.tolist()}")
    return t / _width(bin_width)
