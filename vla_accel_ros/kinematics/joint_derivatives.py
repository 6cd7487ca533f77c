"""Joint velocity, acceleration and jerk from stamped joint positions (finite differences).

Joint-state messages arrive at irregular stamps, so the estimates use divided differences over the actual
stamps rather than a fixed dt. With the last k+1 samples t_0 < ... < t_k:

- velocity     = f[t_{k-1}, t_k]                  (secant: exact at the interval midpoint for quadratics)
- acceleration = 2! * f[t_{k-2}, t_{k-1}, t_k]    (exact for any quadratic trajectory)
- jerk         = 3! * f[t_{k-3}, ..., t_k]        (exact for any cubic trajectory)

Each is None until enough samples exist (2, 3, 4). Bad input raises, leaving the state unchanged, so a
caller can log and drop the message: `NonIncreasingStampError` (a ValueError) for a stamp <= the previous
one (duplicates and reordering happen on real buses), ValueError for NaN/inf or a wrong joint count. A gap
longer than `max_gap_s` restarts the history: differences across a dropout describe no real motion.
"""

from __future__ import annotations

import math

import numpy as np


class NonIncreasingStampError(ValueError):
    """A stamp that does not come strictly after the previous accepted one."""


Derivatives = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]


class JointDerivatives:
    """Keeps the last 4 samples; the joint count comes from the constructor or the first message."""

    def __init__(self, n_joints: int | None = None, max_gap_s: float | None = None) -> None:
        if n_joints is not None and n_joints < 1:
            raise ValueError(f"n_joints must be >= 1, got {n_joints}")
        if max_gap_s is not None and not (math.isfinite(max_gap_s) and max_gap_s > 0):
            raise ValueError(f"max_gap_s must be a finite number > 0, got {max_gap_s}")
        self.n_joints = n_joints
        self.max_gap_s = max_gap_s
        self._t: list[float] = []
        self._x: list[np.ndarray] = []

    def reset(self) -> None:
        """Forget the history (keeps the joint count)."""
        self._t.clear()
        self._x.clear()

    def update(self, stamp_s: float, positions: np.ndarray) -> Derivatives:
        t = float(stamp_s)
        if not math.isfinite(t):
            raise ValueError(f"stamp must be finite, got {stamp_s!r}")
        x = np.array(positions, dtype=np.float64).reshape(-1)
        if self.n_joints is None:
            if x.size == 0:
                raise ValueError("positions must not be empty")
            self.n_joints = x.size
        elif x.size != self.n_joints:
            raise ValueError(f"expected {self.n_joints} joint positions, got {x.size}")
        if not np.isfinite(x).all():
            raise ValueError(f"joint positions must be finite, got {x.tolist()}")
        if self._t:
            if t <= self._t[-1]:
                raise NonIncreasingStampError(
                    f"stamp {t!r} s does not follow the previous stamp {self._t[-1]!r} s"
                )
            if self.max_gap_s is not None and t - self._t[-1] > self.max_gap_s:
                self.reset()
        self._t.append(t)
        self._x.append(x)
        if len(self._t) > 4:
            del self._t[0], self._x[0]
        return self._estimate()

    def _estimate(self) -> Derivatives:
        # Newton divided differences over the newest samples; dd[k] = f[t_{n-k}, ..., t_n].
        ts, xs = self._t, self._x
        n = len(ts)
        out: list[np.ndarray | None] = [None, None, None]
        level = xs[:]  # level j holds the j-th divided differences
        for order in range(1, n):
            level = [(level[i + 1] - level[i]) / (ts[i + order] - ts[i]) for i in range(len(level) - 1)]
            out[order - 1] = level[-1] * math.factorial(order)
        return out[0], out[1], out[2]
