"""DyQ-VLA kinematic proxies, computed from the executed end-effector delta action.

Why the delta action and not joint space: DyQ-VLA reports that the translation magnitude and the rotation
jerk of the commanded end-effector action track the quantization sensitivity of a control step; they are
known before the next inference starts and need no sensor.

Definitions (t = control step, a_t = executed action, `cal` = `ProxyCalibration`):

- translation speed   v_t = ||a_t^xyz||                        (action units)
- motion fineness     M_t = clip(1 - v_t / mu95, 0, 1)         high = slow, fine motion
- jerk                J_t = ||a_t^rot - a_{t-1}^rot|| / nu95   (7-D actions)
                      J_t = ||a_t^xyz - a_{t-1}^xyz|| / nu95   (4-D actions, no rotation)
- smoothed            M~_t, J~_t = trailing means over the last window_m / window_j steps
- sensitivity         S_t = max(0, weight * M~_t + (1 - weight) * J~_t)
- fluctuation         F_t = sqrt(sum_xyz var(a^xyz over the last window_f steps)) / phi95

Choices (ours, documented):
- M is clipped to [0, 1]: a step faster than mu95 is simply "coarse"; a negative M would let a fast motion
  cancel a simultaneous jerk in S.
- J is not clipped above: a rare jerk of several nu95 should push S towards the top precision (the safe
  side). S is therefore >= 0 but may exceed 1.
- J_0 = 0 (no previous action after a reset); moving averages run over the samples seen so far.
- 4-D (Meta-World) actions have no rotation. The nearest meaningful analogue of the angular jerk is the
  change of the commanded translation, i.e. the jerk of the commanded end-effector velocity: it is what
  the rotation term measures (an abrupt change of the commanded motion), applied to the only motion
  there is. It is normalized by its own 95th percentile (nu95 is calibrated on that quantity).
- Fluctuation (KERV threshold input): the RMS spread of the recent translation actions about their mean
  over the KERV history (window_f = AC = 10 steps), i.e. sqrt(trace(cov)). It is 0 for steady motion and
  grows when the commanded motion keeps changing. Normalized by phi95, its demonstrations' 95th
  percentile; 0 while fewer than 2 actions are known.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, fields
from operator import mul

import numpy as np

SUPPORTED_ACTION_DIMS = (4, 7)


@dataclass(frozen=True)
class ProxyCalibration:
    """Normalizers and windows of the proxies; calibrated on demonstrations (`kinematics.calibration`).

    mu95: 95th percentile of ||a^xyz||. nu95: 95th percentile of the raw jerk (see module doc; the
    quantity depends on the action dimension). phi95: 95th percentile of the raw fluctuation.
    """

    mu95: float
    nu95: float
    phi95: float
    window_m: int = 10
    window_j: int = 5
    weight: float = 0.5
    window_f: int = 10

    def __post_init__(self) -> None:
        for name in ("mu95", "nu95", "phi95"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
                raise ValueError(f"ProxyCalibration.{name} must be a finite number > 0, got {value!r}")
        for name in ("window_m", "window_j", "window_f"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"ProxyCalibration.{name} must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.weight) and 0.0 <= self.weight <= 1.0):
            raise ValueError(f"ProxyCalibration.weight must lie in [0, 1], got {self.weight!r}")

    @classmethod
    def from_dict(cls, data: dict) -> ProxyCalibration:
        """Build from a config mapping; unknown keys are an error (they are usually typos)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"ProxyCalibration: unknown keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)

    def to_dict(self) -> dict:
        return {k: (int(v) if k.startswith("window") else float(v)) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ProxyValues:
    """Proxies of one step. `motion_fineness` and `angular_jerk` are the smoothed values used in S."""

    translation_speed: float
    motion_fineness: float
    angular_jerk: float
    sensitivity: float
    fluctuation: float
    fineness_instant: float
    jerk_instant: float


def _check_dim(action_dim: int) -> None:
    if action_dim not in SUPPORTED_ACTION_DIMS:
        raise ValueError(f"action_dim must be one of {SUPPORTED_ACTION_DIMS}, got {action_dim!r}")


class _Ring:
    """Fixed-size trailing window of floats with the mean over the samples seen so far."""

    __slots__ = ("_buf", "_i", "_n")

    def __init__(self, size: int) -> None:
        self._buf = [0.0] * size
        self._i = 0
        self._n = 0

    def push(self, value: float) -> float:
        self._buf[self._i] = value
        self._i = (self._i + 1) % len(self._buf)
        self._n = min(self._n + 1, len(self._buf))
        return sum(self._buf) / self._n  # unused slots hold 0.0 until filled

    def clear(self) -> None:
        self._buf = [0.0] * len(self._buf)
        self._i = 0
        self._n = 0


class KinematicProxies:
    """Online proxies, one `update` per executed action; O(window) pure-Python work per step."""

    def __init__(self, cal: ProxyCalibration, action_dim: int) -> None:
        _check_dim(action_dim)
        self.cal = cal
        self.action_dim = action_dim
        self._has_rot = action_dim == 7
        self._m = _Ring(cal.window_m)
        self._j = _Ring(cal.window_j)
        self._xyz = tuple(deque(maxlen=cal.window_f) for _ in range(3))  # per-axis translation history
        self._prev: tuple[float, ...] | None = None

    def reset(self) -> None:
        self._m.clear()
        self._j.clear()
        for axis in self._xyz:
            axis.clear()
        self._prev = None

    def update(self, action: np.ndarray) -> ProxyValues:
        """Feed the action executed this step; raises ValueError (state unchanged) on bad input."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action must have shape ({self.action_dim},), got {a.shape}")
        v = a.tolist()
        if not all(map(math.isfinite, v)):
            raise ValueError(f"action must be finite, got {v}")
        x, y, z = v[0], v[1], v[2]
        cal = self.cal
        speed = math.sqrt(x * x + y * y + z * z)
        m_inst = min(1.0, max(0.0, 1.0 - speed / cal.mu95))
        cur = (v[3], v[4], v[5]) if self._has_rot else (x, y, z)
        if self._prev is None:
            j_inst = 0.0
        else:
            p = self._prev
            j_inst = math.sqrt((cur[0] - p[0]) ** 2 + (cur[1] - p[1]) ** 2 + (cur[2] - p[2]) ** 2) / cal.nu95
        self._prev = cur
        m_s = self._m.push(m_inst)
        j_s = self._j.push(j_inst)
        s = max(0.0, cal.weight * m_s + (1.0 - cal.weight) * j_s)
        hx, hy, hz = self._xyz
        hx.append(x)
        hy.append(y)
        hz.append(z)
        return ProxyValues(speed, m_s, j_s, s, _spread(self._xyz) / cal.phi95, m_inst, j_inst)


def _spread(axes: tuple[deque, ...]) -> float:
    # sqrt(trace(cov)) via E[x^2] - E[x]^2: C-level sums; actions are O(1), so cancellation is harmless.
    n = len(axes[0])
    if n < 2:
        return 0.0
    total = 0.0
    for c in axes:
        mean = sum(c) / n
        total += max(0.0, sum(map(mul, c, c)) / n - mean * mean)
    return math.sqrt(total)


# Vectorized raw series over one episode (T, A): used by calibration; must agree with KinematicProxies.


def _episode(actions: np.ndarray) -> np.ndarray:
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"episode actions must be a (T, A) array, got shape {a.shape}")
    _check_dim(a.shape[1])
    if not np.isfinite(a).all():
        raise ValueError("episode actions contain NaN or inf")
    return a


def translation_magnitudes(actions: np.ndarray) -> np.ndarray:
    """||a_t^xyz|| for every step, shape (T,)."""
    return np.linalg.norm(_episode(actions)[:, :3], axis=1)


def raw_jerks(actions: np.ndarray) -> np.ndarray:
    """Un-normalized J_t for t >= 1, shape (T-1,); rotation for 7-D, translation for 4-D (module doc)."""
    a = _episode(actions)
    part = a[:, 3:6] if a.shape[1] == 7 else a[:, :3]
    return np.linalg.norm(np.diff(part, axis=0), axis=1)


def raw_fluctuations(actions: np.ndarray, window: int) -> np.ndarray:
    """Un-normalized F_t for the steps with >= 2 known actions (t >= 1), shape (T-1,)."""
    a = _episode(actions)[:, :3]
    out = np.empty(max(a.shape[0] - 1, 0))
    for t in range(1, a.shape[0]):
        win = a[max(0, t + 1 - window) : t + 1]
        out[t - 1] = math.sqrt(float(win.var(axis=0).sum()))
    return out
