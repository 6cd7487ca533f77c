"""KERV Kalman compensation: one-step-ahead prediction of the next action from the executed history.

Model (per action dimension, one step = one control step): a damped trend, state [a, da],
F = [[1, d], [0, d]], H = [1, 0], process noise q * G G^T with G = [1/2, 1] (a white acceleration per step),
measurement noise r. The damping d in [0, 1] says how much of the last step's change carries over:
d = 1 is constant velocity (KERV's model), d = 0 a random walk (with q >> r: repeat the last action).

Why the damping (measured, `vla-accel calibrate` on the Meta-World demonstrations): the constant-velocity
filter had the better median one-step error but the worse mean than simply repeating the last action on
3 of 4 dimensions, because it overshoots after every abrupt change of command (a new motion phase, a
gripper switch) and those errors dominate the mean. A per-dimension damping fitted to the data keeps the
trend where motion is smooth and drops it where commands jump.

Windowed filter (KERV: history AC = 10, prediction length PL = 1): the prediction at each step is the
Kalman filter run over the last `history` executed actions only, initialised from its two oldest
samples (x = [z1, z1 - z0], P = r * [[1, 1], [1, 2]]). Old regimes (before a grasp, say) thus drop out
after `history` steps. With q, r and d fixed, the gains of such a filter do not depend on the data, so
the prediction is a fixed linear combination of the window: the weights (and the predictive variance)
are computed once per window length at construction, and `predict()` is a dot product per dimension.

`fit` (our choice), per dimension: for each damping on a grid and each q/r on a log grid, the predicted
mean is fixed and the best r has a closed form (profile maximum likelihood: the mean of e^2 / s, s = the
variance at r = 1). The (damping, q/r) pair with the lowest one-step mean absolute error wins (the error
a fill makes), not the highest likelihood: the likelihood of a Gaussian favoured the overconfident
constant-velocity model on these heavy-tailed errors. r stays the likelihood's, so the predictive
variance is calibrated for the chosen mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RATIOS = np.logspace(-6.0, 6.0, 49)  # q / r grid for `fit` (the top: the last sample alone)
DEFAULT_DAMPINGS = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)  # trend damping grid for `fit`
_R_FLOOR = 1e-12  # variance floor for a dimension that never varies


def _window_predict(
    z: np.ndarray, q: np.ndarray, r: np.ndarray, d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Filter the columns of z (n, B), n >= 2, and predict one step ahead: (mean (B,), variance (B,))."""
    x0 = z[1].astype(np.float64)
    x1 = z[1] - z[0]
    p00, p01, p11 = r.copy(), r.copy(), 2.0 * r
    for k in range(2, z.shape[0] + 1):
        # Predict: x = F x; P = F P F^T + Q, F = [[1, d], [0, d]].
        x0, x1 = x0 + d * x1, d * x1
        p00, p01, p11 = (
            p00 + 2.0 * d * p01 + d * d * p11 + 0.25 * q,
            d * p01 + d * d * p11 + 0.5 * q,
            d * d * p11 + q,
        )
        if k == z.shape[0]:
            return x0, p00 + r
        s = p00 + r
        k0, k1 = p00 / s, p01 / s
        innov = z[k] - x0
        x0, x1 = x0 + k0 * innov, x1 + k1 * innov
        p00, p01, p11 = (1.0 - k0) * p00, (1.0 - k0) * p01, p11 - k1 * p01
    raise AssertionError("unreachable")


def _gains(
    q: np.ndarray, r: np.ndarray, d: np.ndarray, history: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per window length n (list index, 2..history): weights (B, n), oldest first, and variance (B,)."""
    weights: list[np.ndarray] = [np.empty(0)] * (history + 1)
    variances: list[np.ndarray] = [np.empty(0)] * (history + 1)
    b = q.size
    for n in range(2, history + 1):
        # The prediction is linear in the window: feed unit vectors to read off the weights.
        z = np.tile(np.eye(n), (1, b))  # (n, b*n); column d*n + j is e_j for dimension d
        mean, var = _window_predict(z, np.repeat(q, n), np.repeat(r, n), np.repeat(d, n))
        weights[n] = mean.reshape(b, n)
        variances[n] = var.reshape(b, n)[:, 0]
    return weights, variances


def _as_episodes(episodes_actions: Sequence[np.ndarray]) -> list[np.ndarray]:
    out = []
    dim = None
    for i, ep in enumerate(episodes_actions):
        a = np.asarray(ep, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"episode {i}: actions must be a (T, A) array, got shape {a.shape}")
        if dim is not None and a.shape[1] != dim:
            raise ValueError(f"episode {i}: action dimension {a.shape[1]} differs from {dim}")
        if not np.isfinite(a).all():
            raise ValueError(f"episode {i}: actions contain NaN or inf")
        dim = a.shape[1]
        out.append(a)
    if not out:
        raise ValueError("no episodes given")
    return out


def _one_step(
    episodes: list[np.ndarray], weights: list[np.ndarray], variances: list[np.ndarray], history: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(targets, predictions, predictive variances, previous actions) over every step with >= 2 past
    actions; the previous actions (T, A, 2), oldest first, give the repeat-last and constant-velocity
    baselines."""
    tgt, pred, var, prev = [], [], [], []
    for a in episodes:
        for t in range(2, min(history, a.shape[0])):  # short windows at the episode start
            tgt.append(a[t : t + 1])
            pred.append(np.einsum("na,an->a", a[:t], weights[t])[None])
            var.append(np.broadcast_to(variances[t], (1, a.shape[1])))
            prev.append(np.stack([a[t - 2], a[t - 1]], axis=-1)[None])
        if a.shape[0] > history:
            win = np.lib.stride_tricks.sliding_window_view(a[:-1], history, axis=0)  # (T-h, A, h)
            tgt.append(a[history:])
            pred.append(np.einsum("tan,an->ta", win, weights[history]))
            var.append(np.broadcast_to(variances[history], (a.shape[0] - history, a.shape[1])))
            prev.append(win[..., -2:])
    if not tgt:
        raise ValueError("episodes too short: need at least one episode with 3 or more steps")
    return np.concatenate(tgt), np.concatenate(pred), np.concatenate(var), np.concatenate(prev)


@dataclass(frozen=True)
class OneStepError:
    """One-step absolute prediction error per dimension: the filter, "repeat the last action", and
    "constant velocity" (a_t = 2 a_{t-1} - a_{t-2}).

    Means and medians: a trend predictor overshoots for a few steps after an abrupt change of command
    (a new motion phase), which dominates the mean while the median shows the smooth stretches.
    """

    kalman: np.ndarray
    repeat_last: np.ndarray
    steps: int
    kalman_median: np.ndarray
    repeat_last_median: np.ndarray
    const_velocity: np.ndarray
    const_velocity_median: np.ndarray


class ActionKalman:
    """Windowed constant-velocity Kalman predictor over the executed actions (see module doc)."""

    def __init__(
        self,
        action_dim: int,
        q: np.ndarray | float,
        r: np.ndarray | float,
        history: int = 10,
        damping: np.ndarray | float = 1.0,
    ) -> None:
        if not (isinstance(action_dim, (int, np.integer)) and action_dim >= 1):
            raise ValueError(f"action_dim must be an integer >= 1, got {action_dim!r}")
        if not (isinstance(history, (int, np.integer)) and history >= 2):
            raise ValueError(f"history must be an integer >= 2, got {history!r}")
        self.action_dim = int(action_dim)
        self.history = int(history)
        self.q = self._param("q", q, allow_zero=True)
        self.r = self._param("r", r, allow_zero=False)
        self.damping = self._param("damping", damping, allow_zero=True)
        if (self.damping > 1.0).any():
            raise ValueError(f"damping must be in [0, 1], got {self.damping.tolist()}")
        self._w, self._var = _gains(self.q, self.r, self.damping, self.history)
        self._buf = np.zeros((self.history, self.action_dim))
        self._n = 0

    def _param(self, name: str, value: np.ndarray | float, allow_zero: bool) -> np.ndarray:
        try:
            v = np.broadcast_to(np.asarray(value, dtype=np.float64), (self.action_dim,)).copy()
        except ValueError:
            raise ValueError(
                f"{name} must be a scalar or have {self.action_dim} values, got {value!r}"
            ) from None
        ok = np.isfinite(v) & ((v >= 0) if allow_zero else (v > 0))
        if not ok.all():
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(
                f"{name} must be finite and {bound}; bad dimensions {np.flatnonzero(~ok).tolist()}"
            )
        return v

    @property
    def valid(self) -> bool:
        """A prediction needs at least two executed actions."""
        return self._n >= 2

    @property
    def samples(self) -> int:
        """Actions currently in the window."""
        return self._n

    def reset(self) -> None:
        self._buf[:] = 0.0
        self._n = 0

    def update(self, action: np.ndarray) -> None:
        """Append the executed action; ValueError (state unchanged) on a wrong length or NaN/inf."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"action must have shape ({self.action_dim},), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"action must be finite, got {a.tolist()}")
        self._buf[:-1] = self._buf[1:]
        self._buf[-1] = a
        self._n = min(self._n + 1, self.history)

    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Next action's predictive mean and variance (measurement noise included).

        Before `valid`: the last action (zeros if none) with infinite variance.
        """
        n = self._n
        if n < 2:
            return self._buf[-1].copy(), np.full(self.action_dim, np.inf)
        mean = np.einsum("na,an->a", self._buf[self.history - n :], self._w[n])
        return mean, self._var[n].copy()

    def one_step_error(self, episodes_actions: Sequence[np.ndarray]) -> OneStepError:
        """Evaluate this filter's one-step predictions on episodes (each (T, A)), steps t >= 2."""
        eps = _as_episodes(episodes_actions)
        if eps[0].shape[1] != self.action_dim:
            raise ValueError(f"episodes have {eps[0].shape[1]} dimensions, the filter {self.action_dim}")
        tgt, pred, _, prev = _one_step(eps, self._w, self._var, self.history)
        e_kf, e_last = np.abs(tgt - pred), np.abs(tgt - prev[..., 1])
        e_cv = np.abs(tgt - (2.0 * prev[..., 1] - prev[..., 0]))
        median = lambda e: np.median(e, 0)  # noqa: E731
        return OneStepError(
            e_kf.mean(0),
            e_last.mean(0),
            tgt.shape[0],
            median(e_kf),
            median(e_last),
            e_cv.mean(0),
            median(e_cv),
        )

    @classmethod
    def fit(
        cls,
        episodes_actions: Sequence[np.ndarray],
        history: int = 10,
        ratios: Sequence[float] | None = None,
        dampings: Sequence[float] | None = None,
    ) -> ActionKalman:
        """Fit damping, q and r per dimension: lowest one-step mean absolute error over the (damping, q/r)
        grid, r by profile maximum likelihood at each point (module doc)."""
        eps = _as_episodes(episodes_actions)
        grid = np.asarray(DEFAULT_RATIOS if ratios is None else ratios, dtype=np.float64)
        if grid.ndim != 1 or grid.size == 0 or not (np.isfinite(grid).all() and (grid >= 0).all()):
            raise ValueError("ratios must be a non-empty 1-D sequence of finite values >= 0")
        damp = np.asarray(DEFAULT_DAMPINGS if dampings is None else dampings, dtype=np.float64)
        if damp.ndim != 1 or damp.size == 0 or not ((damp >= 0) & (damp <= 1)).all():
            raise ValueError("dampings must be a non-empty 1-D sequence of values in [0, 1]")
        dim = eps[0].shape[1]
        best_mae = np.full(dim, np.inf)
        best_q, best_r, best_d = np.zeros(dim), np.ones(dim), np.ones(dim)
        for d in damp:
            for rho in grid:
                w, v = _gains(np.array([rho]), np.array([1.0]), np.array([d]), history)
                w = [x if x.size == 0 else np.broadcast_to(x, (dim, x.shape[1])) for x in w]
                v = [x if x.size == 0 else np.broadcast_to(x, (dim,)) for x in v]
                tgt, pred, s, _ = _one_step(eps, w, v, history)
                err = tgt - pred
                mae = np.abs(err).mean(0)
                r = np.maximum((err**2 / s).mean(0), _R_FLOOR)
                better = mae < best_mae
                best_mae = np.where(better, mae, best_mae)
                best_q, best_r = np.where(better, rho * r, best_q), np.where(better, r, best_r)
                best_d = np.where(better, d, best_d)
        return cls(dim, best_q, best_r, history, best_d)

    def to_dict(self) -> dict:
        return {
            "history": self.history,
            "q": self.q.tolist(),
            "r": self.r.tolist(),
            "damping": self.damping.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ActionKalman:
        try:
            q, r = data["q"], data["r"]
        except KeyError as exc:
            raise ValueError(f"Kalman config lacks {exc.args[0]!r}") from None
        # a config written before the damping existed is the constant-velocity filter it described
        return cls(len(q), q, r, int(data.get("history", 10)), data.get("damping", 1.0))


@dataclass(frozen=True)
class Fill:
    """Result of `KalmanCompensator.fill`: the action, dims filled by the filter, dims left to the target."""

    action: np.ndarray
    filled: list[int]
    open: list[int]


class KalmanCompensator:
    """KERV policy around the filter: which dimensions may be filled, and when.

    After a rejected draft token at position k, the target's own correction token is kept at k and the
    dimensions k+1.. are filled from the prediction where `mask` allows (the gripper never, by default: it
    jumps between commands and a trend guess of it is meaningless). After a fill, compensation
    is disabled for the next `cooldown` control steps (KERV n = 4) so predictions are not fed back into the
    filter step after step; at most one fill per control step. Call `observe` once per step with the
    executed action, filled or not.
    """

    def __init__(self, kalman: ActionKalman, mask: Sequence[bool] | None = None, cooldown: int = 4) -> None:
        if mask is None:
            mask = [True] * (kalman.action_dim - 1) + [False]
        m = np.asarray(mask, dtype=bool)
        if m.shape != (kalman.action_dim,):
            raise ValueError(f"mask must have {kalman.action_dim} entries, got {len(mask)}")
        if not (isinstance(cooldown, (int, np.integer)) and cooldown >= 0):
            raise ValueError(f"cooldown must be an integer >= 0, got {cooldown!r}")
        self.kalman = kalman
        self.mask = m
        self.cooldown = int(cooldown)
        self._step = 0  # index of the step being decoded = actions observed so far
        self._last_fill: int | None = None

    @property
    def valid(self) -> bool:
        return self.kalman.valid

    @property
    def cooling_down(self) -> bool:
        return self._last_fill is not None and self._step - self._last_fill <= self.cooldown

    def can_fill(self) -> bool:
        return self.valid and not self.cooling_down

    def observe(self, executed_action: np.ndarray) -> None:
        self.kalman.update(executed_action)
        self._step += 1

    def reset(self) -> None:
        self.kalman.reset()
        self._step = 0
        self._last_fill = None

    def mark_filled(self) -> None:
        """Record a fill made elsewhere (by the decoder) at the step being decoded: starts the cool-down."""
        self._last_fill = self._step

    def prediction(self) -> np.ndarray | None:
        """One-step prediction, NaN where the mask forbids filling; None while no fill may happen."""
        if not self.can_fill():
            return None
        mean, _ = self.kalman.predict()
        return np.where(self.mask, mean, np.nan).astype(np.float32)

    def fill(self, action: np.ndarray, first_open: int) -> Fill:
        """Fill dimensions >= first_open of `action` (the ones before are decided) from the prediction."""
        dim = self.kalman.action_dim
        a = np.array(action, dtype=np.float32).reshape(-1)
        if a.shape != (dim,):
            raise ValueError(f"action must have {dim} values, got {a.shape[0]}")
        if not (isinstance(first_open, (int, np.integer)) and 0 <= first_open <= dim):
            raise ValueError(f"first_open must be an integer in [0, {dim}], got {first_open!r}")
        dims = list(range(int(first_open), dim))
        if not dims or not self.can_fill():
            return Fill(a, [], dims)
        mean, _ = self.kalman.predict()
        filled = [d for d in dims if self.mask[d]]
        a[filled] = mean[filled]
        if filled:
            self._last_fill = self._step
        return Fill(a, filled, [d for d in dims if not self.mask[d]])
