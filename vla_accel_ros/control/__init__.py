"""Pure control logic: DyQ precision switching, KERV threshold, safety guard, staleness watchdog, and the
per-step decision objects the nodes and offline runs share (KinematicsStep, AccelDecider, CommandGate)."""

from vla_accel_ros.control.accel_decision import AccelDecider, AccelDecision
from vla_accel_ros.control.command_gate import CommandGate, GateDecision, Outcome, WatchdogDecision
from vla_accel_ros.control.decoder_range import DecoderRange
from vla_accel_ros.control.joint_guard import JointLimits, JointStateMonitor
from vla_accel_ros.control.kinematics_step import KalmanEstimate, KinematicsStep, KinematicsUpdate
from vla_accel_ros.control.precision_policy import PrecisionPolicy, decision_cost_ms
from vla_accel_ros.control.safety import SafetyGuard, SafetyLimits, Verdict, hold_action
from vla_accel_ros.control.threshold_policy import (
    ThresholdPolicy,
    action_units_to_bins,
    bins_to_action_units,
    uniform_bin_width,
)
from vla_accel_ros.control.watchdog import Watchdog

__all__ = [
    "AccelDecider",
    "AccelDecision",
    "CommandGate",
    "DecoderRange",
    "GateDecision",
    "JointLimits",
    "JointStateMonitor",
    "KalmanEstimate",
    "KinematicsStep",
    "KinematicsUpdate",
    "Outcome",
    "PrecisionPolicy",
    "SafetyGuard",
    "SafetyLimits",
    "ThresholdPolicy",
    "Verdict",
    "Watchdog",
    "WatchdogDecision",
    "action_units_to_bins",
    "bins_to_action_units",
    "decision_cost_ms",
    "hold_action",
    "uniform_bin_width",
]
