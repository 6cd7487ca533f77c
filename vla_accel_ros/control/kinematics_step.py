"""What the kinematics node computes per executed action, as one ROS-free object.

The kinematics node (`vla_accel_ros.ros.kinematics_node`) and every offline run (`AccelLoop`: evaluation,
replay, benchmarks) feed the actions the arm executed to this class, so the proxies and the KERV Kalman
prediction they see are computed by the same code. Per executed action: the DyQ proxies are updated, a
fill the decoder reported starts the compensator's cool-down, and the action enters the Kalman window;
the prediction for the next step has NaN in the dimensions never filled (the gripper) and is valid only
while a fill may happen (`KalmanCompensator.can_fill`). The action dimension comes from the first action
when it is not known up front; a different one re-creates the filters (the node reports it).

The algorithm objects come from factories (e.g. `KinematicsParams.proxy_calibration()` and
`KinematicsParams.compensator`, see `from_table`) so that `control/` never imports the parameter tables,
which import `control/`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from vla_accel_ros.kinematics.kalman import KalmanCompensator
from vla_accel_ros.kinematics.proxies import KinematicProxies, ProxyCalibration, ProxyValues

CompensatorFactory = Callable[[int], KalmanCompensator]


class KinematicsTable(Protocol):
    """The part of `vla_accel_ros.params.KinematicsParams` this class is built from."""

    def proxy_calibration(self) -> ProxyCalibration: ...

    def compensator(self, action_dim: int) -> KalmanCompensator: ...


@dataclass(frozen=True)
class KalmanEstimate:
    """The one-step Kalman prediction as the kinematics node publishes it (KalmanPrediction)."""

    mean: np.ndarray  # float64, NaN in the dimensions that are never filled
    variance: np.ndarray
    samples: int  # executed actions in the filter's window
    valid: bool  # a fill may use it now (warmed up, not cooling down)

    def fill_action(self) -> np.ndarray | None:
        """What the decoder may fill from (float32, NaN = do not fill), or None while no fill may happen."""
        return self.mean.astype(np.float32) if self.valid else None


@dataclass(frozen=True)
class KinematicsUpdate:
    """The result of one executed action: the proxies to publish and the prediction for the next step."""

    values: ProxyValues
    prediction: KalmanEstimate | None  # None without a Kalman filter (offline methods that need none)


class KinematicsStep:
    """Proxies + KERV compensator, fed one executed action at a time."""

    def __init__(
        self,
        calibration: ProxyCalibration,
        compensator: CompensatorFactory | None,
        action_dim: int | None = None,
    ) -> None:
        self.calibration = calibration
        self._new_compensator = compensator
        self.proxies: KinematicProxies | None = None
        self.compensator: KalmanCompensator | None = None
        self.last: ProxyValues | None = None  # the proxies of the latest executed action since the reset
        if action_dim is not None:
            self._build(action_dim)

    @classmethod
    def from_table(cls, table: KinematicsTable, action_dim: int | None = None) -> KinematicsStep:
        """As the kinematics node builds it from its parameters (KinematicsParams)."""
        return cls(table.proxy_calibration(), table.compensator, action_dim)

    @property
    def action_dim(self) -> int | None:
        return None if self.proxies is None else self.proxies.action_dim

    def _build(self, action_dim: int) -> None:
        proxies = KinematicProxies(self.calibration, action_dim)  # ValueError on an unsupported dimension
        comp = self._new_compensator(action_dim) if self._new_compensator is not None else None
        self.proxies, self.compensator, self.last = proxies, comp, None

    def update(self, action: np.ndarray, filled: bool = False) -> KinematicsUpdate:
        """Feed the action the arm executed (`filled`: the decoder filled from our prediction at this step);
        ValueError on a bad action (the proxies are left as they were)."""
        dim = int(np.asarray(action).size)
        if self.proxies is None or self.proxies.action_dim != dim:
            self._build(dim)  # a new dimension: new filters (the old ones stay if it is not supported)
        assert self.proxies is not None
        values = self.proxies.update(action)
        if self.compensator is not None:
            if filled:  # the cool-down starts at the step the fill was made
                self.compensator.mark_filled()
            self.compensator.observe(action)
        self.last = values
        return KinematicsUpdate(values, self.prediction())

    def prediction(self) -> KalmanEstimate | None:
        """The prediction for the next step (None before the first action or without a filter)."""
        comp = self.compensator
        if comp is None:
            return None
        mean, variance = comp.kalman.predict()
        # As KalmanCompensator.prediction(): NaN where the mask forbids filling.
        return KalmanEstimate(
            np.where(comp.mask, mean, np.nan), variance, comp.kalman.samples, comp.can_fill()
        )

    def reset(self) -> None:
        """A new episode: no history (the action dimension is kept)."""
        if self.proxies is not None:
            self.proxies.reset()
        if self.compensator is not None:
            self.compensator.reset()
        self.last = None
