"""The graph's per-step acceleration logic without ROS, for evaluation, replay and benchmarks.

In the running graph the kinematics node feeds each executed action to a `KinematicsStep` (proxies and
the KERV Kalman filter) and the controller node turns the resulting KinematicState into the next
AccelConfig with an `AccelDecider`. `AccelLoop` chains the same two objects in one process, in the same
order (a decision after every executed action, and one at every episode start), so that an offline run
decides every step exactly as the nodes do; test/test_decision_path.py checks it against the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_accel_ros.control.accel_decision import AccelDecider, AccelDecision
from vla_accel_ros.control.kinematics_step import CompensatorFactory, KinematicsStep
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
    """What one offline control step runs (the AccelConfig plus the Kalman action for the decoder)."""

    precision: str | None
    decoding: str
    threshold: float
    kalman_action: np.ndarray | None
    reason: str
    proxies: ProxyValues | None


class AccelLoop:
    """One method's per-step decisions: `decide` before a control step, `observe` after it, `reset` at an
    episode start. Built from the algorithm objects (the classic constructor) or from the two decision
    objects the nodes use (`from_parts`, e.g. `KinematicsStep.from_table(settings.kinematics, dim)` and
    `AccelDecider.from_table(settings.controller)`)."""

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
        precision: Any = precision_policy if method.precision is None else method.precision
        threshold: Any = threshold_policy if method.threshold is None else method.threshold
        compensator = None
        if kalman is not None:
            comp = KalmanCompensator(kalman, kalman_mask, cooldown)  # checks the mask and the cool-down now
            compensator = _one_compensator(comp)
        self._setup(
            method,
            KinematicsStep(calibration, compensator, action_dim),
            AccelDecider(method.decoding, precision, threshold),
        )

    @classmethod
    def from_parts(cls, method: Method, kinematics: KinematicsStep, decider: AccelDecider) -> AccelLoop:
        """A loop around the nodes' own decision objects; `method` gives the name and whether the Kalman
        prediction is handed to the decoder (the decider's decoding is what runs)."""
        if method.kalman and kinematics.compensator is None:
            raise ValueError(f"method {method.name!r} fills from the Kalman filter but none was given")
        loop = cls.__new__(cls)
        loop._setup(method, kinematics, decider)
        return loop

    def _setup(self, method: Method, kinematics: KinematicsStep, decider: AccelDecider) -> None:
        self.method = method
        self.kinematics = kinematics
        self.decider = decider
        self._decision = decider.start_episode()

    @property
    def proxies(self) -> KinematicProxies | None:
        return self.kinematics.proxies

    @property
    def compensator(self) -> KalmanCompensator | None:
        return self.kinematics.compensator

    @property
    def precision_policy(self) -> PrecisionPolicy | None:
        return self.decider.precision_policy

    @property
    def threshold_policy(self) -> ThresholdPolicy | None:
        return self.decider.threshold_policy

    def reset(self) -> None:
        """An episode starts: no history, the top mode (as both nodes do on `sim/episode` start)."""
        self.kinematics.reset()
        self._decision = self.decider.start_episode()

    @property
    def accel_decision(self) -> AccelDecision:
        """The AccelConfig the controller node would have published last."""
        return self._decision

    def decide(self) -> StepDecision:
        """What the next control step runs, from everything executed so far (calling it again before the
        next `observe` gives the same answer)."""
        d = self._decision
        kalman_action = None
        if self.method.kalman:
            prediction = self.kinematics.prediction()
            kalman_action = prediction.fill_action() if prediction is not None else None
        return StepDecision(
            d.precision, d.decoding, float(d.threshold), kalman_action, d.reason, self.kinematics.last
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
        values = self.kinematics.update(executed_action, filled=bool(filled)).values
        # The controller node decides on the KinematicState's float32 fields: round as the message does.
        s, f = (float(np.float32(v)) for v in (values.sensitivity, values.fluctuation))
        self._decision = self.decider.decide(s, f)
        return values


def _one_compensator(comp: KalmanCompensator) -> CompensatorFactory:
    """A factory that hands out the caller's compensator (its filter has one action dimension)."""

    def factory(action_dim: int) -> KalmanCompensator:
        if action_dim != comp.kalman.action_dim:
            raise ValueError(f"action must have {comp.kalman.action_dim} values, got {action_dim}")
        return comp

    return factory
