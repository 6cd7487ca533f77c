"""What the controller decides per KinematicState: precision, decoding and threshold, with the reason.

The controller node (`vla_accel_ros.ros.controller_node`) publishes each decision as an AccelConfig; the
offline `AccelLoop` (evaluation, replay, benchmarks) hands the same decision to `Policy.act`. One class,
so the two cannot drift:
- precision: the DyQ `PrecisionPolicy` (hysteresis) on the sensitivity S, or one fixed mode when
  switching is off (the node: the ladder's top; offline: a method's static mode);
- threshold: the KERV `ThresholdPolicy` on the fluctuation F, or a fixed value (the node: decoding
  'specvla' -> `specvla_threshold`, the other non-KERV decodings -> 0, strict acceptance);
- an episode start resets the hysteresis and decides as with no motion yet (F = NaN), as offline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from vla_accel_ros.control.precision_policy import PrecisionPolicy
from vla_accel_ros.control.threshold_policy import ThresholdPolicy

KINEMATIC_THRESHOLD_DECODING = "kerv"  # the decoding whose threshold follows the fluctuation
FIXED_THRESHOLD_DECODING = "specvla"  # the decoding with a fixed relaxed threshold (specvla_threshold)


class ControllerDecisionTable(Protocol):
    """The part of `vla_accel_ros.params.ControllerParams` the decision is built from."""

    decoding: str
    precision_switching: bool
    specvla_threshold: float

    def precision_policy(self) -> PrecisionPolicy: ...

    def threshold_policy(self) -> ThresholdPolicy: ...


@dataclass(frozen=True)
class AccelDecision:
    """One AccelConfig: what the next control step runs and why."""

    precision: str
    decoding: str
    threshold: float  # relaxed acceptance threshold in bins (0: strict)
    reason: str


class AccelDecider:
    """Stateful (the precision hysteresis); one `decide` per executed action's kinematic state."""

    def __init__(
        self, decoding: str, precision: PrecisionPolicy | str, threshold: ThresholdPolicy | float
    ) -> None:
        self.decoding = decoding
        self.precision_policy = precision if isinstance(precision, PrecisionPolicy) else None
        self.fixed_precision = None if isinstance(precision, PrecisionPolicy) else str(precision)
        self.threshold_policy = threshold if isinstance(threshold, ThresholdPolicy) else None
        self.fixed_threshold = None if isinstance(threshold, ThresholdPolicy) else float(threshold)

    @classmethod
    def from_table(cls, table: ControllerDecisionTable) -> AccelDecider:
        """The controller node's rules from its parameters (ControllerParams)."""
        policy = table.precision_policy()
        if table.decoding == KINEMATIC_THRESHOLD_DECODING:
            threshold: ThresholdPolicy | float = table.threshold_policy()
        elif table.decoding == FIXED_THRESHOLD_DECODING:
            threshold = table.specvla_threshold
        else:
            threshold = 0.0
        return cls(table.decoding, policy if table.precision_switching else policy.top, threshold)

    @property
    def mode(self) -> str:
        """The precision mode now (before any decision: the top one)."""
        if self.precision_policy is not None:
            return self.precision_policy.mode
        assert self.fixed_precision is not None
        return self.fixed_precision

    def decide(self, sensitivity: float, fluctuation: float) -> AccelDecision:
        """The configuration for the step after an executed action with these proxies."""
        if self.precision_policy is not None:
            mode, reason = self.precision_policy.decide(sensitivity)
        else:
            mode, reason = self.mode, "switching off"
        return self._decision(mode, reason, fluctuation)

    def start_episode(self) -> AccelDecision:
        """A new episode starts from scratch, as an offline evaluation does: top mode, no motion yet."""
        if self.precision_policy is not None:
            self.precision_policy.reset()
        return self._decision(self.mode, "episode start", math.nan)

    def _decision(self, mode: str, reason: str, fluctuation: float) -> AccelDecision:
        threshold, why = self._threshold(fluctuation)
        return AccelDecision(mode, self.decoding, threshold, f"{reason}; {why}")

    def _threshold(self, fluctuation: float) -> tuple[float, str]:
        if self.threshold_policy is not None:
            r = self.threshold_policy.decide(fluctuation)
            return r, f"F={fluctuation:.2f} -> r={r:.1f}"
        assert self.fixed_threshold is not None
        r = self.fixed_threshold
        if r == 0.0 and self.decoding != FIXED_THRESHOLD_DECODING:
            return 0.0, "strict"
        return r, f"r={r:.1f} fixed"
