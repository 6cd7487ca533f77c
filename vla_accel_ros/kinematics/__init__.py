"""Pure-numpy kinematics: DyQ-VLA proxies, joint derivatives, KERV Kalman compensation, calibration."""

from vla_accel_ros.kinematics.calibration import calibrate
from vla_accel_ros.kinematics.joint_derivatives import JointDerivatives, NonIncreasingStampError
from vla_accel_ros.kinematics.kalman import ActionKalman, Fill, KalmanCompensator, OneStepError
from vla_accel_ros.kinematics.proxies import KinematicProxies, ProxyCalibration, ProxyValues

__all__ = [
    "ActionKalman",
    "Fill",
    "JointDerivatives",
    "KalmanCompensator",
    "KinematicProxies",
    "NonIncreasingStampError",
    "OneStepError",
    "ProxyCalibration",
    "ProxyValues",
    "calibrate",
]
