"""The graph's per-step acceleration logic without ROS, for evaluation, replay and benchmarks.

In the running graph the kinematics node feeds executed actions to the proxies and the
Kalman filter, and the controller node turns the proxies into the next AccelConfig. This
class chains the same algorithm objects in one process so that offline runs decide every
step exactly as the nodes would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy
from vla_accel_ros.kinematics.kalman import ActionKalman, KalmanCompensator
from vla_accel_ros.kinematics.proxies import KinematicProxies, ProxyCalibration, ProxyValues


@dataclass(frozen=True)
class Method:
    """How one row of a benchmark decodes: fixed choices, or kinematics-driven ones."""

    name: str
    decoding: str = "ar"
    precision: str | None = "fp32"  # fixed precision; None = dynamic (DyQ, needs a precision policy)
    threshold: float | None = 0.0  # fixed threshold in bins; None = kinematic (KERV)
    kalman: bool = False  # pass the Kalman prediction for filling rejected dimensions


@dataclass
class StepDecision:
    precision: str | None
    decoding: str
    threshold: float
    kalman_action: np.ndarray | None
    reason: str
    proxies: ProxyValues | None


class AccelLoop:
    """The graph's per-step decisions (kinematics node + controller) chained in one process.

    It exists so evaluation, replay and the benchmarks decide precision, threshold and Kalman fill exactly
    as the nodes do: feed it each executed action (and the reported fill), ask `decide()` for the next step.
    """

    def __init__(
        self,
        method: Method,
        calibration: ProxyCalibration,
        action_dim: int,
        precision_policy: PrecisionPolicy | None = None,
        threshold_policy: ThresholdPolicy | None = None,
        kalman: ActionKalman | None = None,
        kalman_mask: list[bool] | None = None,
        cooldown: int = 4,
    ) -> None:
        if method.precision is None and precision_policy is None:
            raise ValueError(f"method {method.name!r} is dynamic-precision but no precision policy was given")
        if method.threshold is None and threshold_policy is None:
            raise ValueError(f"method {method.name!r} has a kinematic threshold but no threshold policy")
        if method.kalman and kalman is None:
            raise ValueError(f"method {method.name!r} fills from the Kalman filter but none was given")
        self.method = method
        self.proxies = KinematicProxies(calibration, action_dim)
        self.precision_policy = precision_policy
        self.threshold_policy = threshold_policy
        self.compensator = KalmanCompensator(kalman, kalman_mask, cooldown) if kalman is not None else None
        self._last: ProxyValues | None = None

    def reset(self) -> None:
        self.proxies.reset()
        if self.precision_policy is not None:
            self.precision_policy.reset()
        if self.compensator is not None:
            self.compensator.reset()
        self._last = None

    def decide(self) -> StepDecision:
        """What the next control step runs, from everything executed so far."""
        m = self.method
        reasons = []
        precision = m.precision
        if precision is None:
            assert self.precision_policy is not None
            s = self._last.sensitivity if self._last is not None else float("nan")
            precision, why = self.precision_policy.decide(s)
            reasons.append(why)
        threshold = m.threshold
        if threshold is None:
            assert self.threshold_policy is not None
            f = self._last.fluctuation if self._last is not None else float("nan")
            threshold = self.threshold_policy.decide(f)
            reasons.append(f"r={threshold:.1f}")
        kalman_action = None
        if m.kalman and self.compensator is not None:
            kalman_action = self.compensator.prediction()  # NaN in dims that must not be filled
        return StepDecision(
            precision, m.decoding, float(threshold), kalman_action, "; ".join(reasons), self._last
        )

    def act_kwargs(self) -> dict:
        d = self.decide()
        kw = {"decoding": d.decoding, "threshold": d.threshold, "kalman_action": d.kalman_action}
        if d.precision is not None:
            kw["precision"] = d.precision
        return kw

    def observe(self, executed_action: np.ndarray, filled: list[int] | None = None) -> ProxyValues:
        """Feed the action the arm executed this step (and which dims the filter filled); returns the
        proxies the kinematics node would publish for it."""
        self._last = self.proxies.update(executed_action)
        if self.compensator is not None:
            if filled:
                self.compensator.mark_filled()
            self.compensator.observe(executed_action)
        return self._last
