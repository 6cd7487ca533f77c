"""QoS of each stream, in one place so publishers and subscribers always match.

Sensor streams are best effort with a shallow queue (a late frame is worse than a lost one); the
instruction is latched (a node started later still gets it); commands are reliable with depth 1 (only the
newest command matters, but it must not be lost on a lossy link); the /vla/* streams are reliable with a
short history for monitoring and recording.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)


def keep_last(depth: int, reliability: ReliabilityPolicy, durability: DurabilityPolicy) -> QoSProfile:
    """A KEEP_LAST profile: every stream keeps a bounded history, so each one differs only in these three."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability, durability=durability
    )


def camera_qos() -> QoSProfile:
    """Images: sensor-data profile (best effort, volatile), newest frame only."""
    return keep_last(1, qos_profile_sensor_data.reliability, qos_profile_sensor_data.durability)


def joint_states_qos() -> QoSProfile:
    """Joint states: best effort, a few messages (finite differences want consecutive samples)."""
    return keep_last(5, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)


def instruction_qos() -> QoSProfile:
    """Instruction: reliable and latched (TRANSIENT_LOCAL), the latest one only."""
    return keep_last(1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)


def instruction_plain_qos() -> QoSProfile:
    """Instruction from a plain publisher (`ros2 topic pub`, volatile by default, which a latched
    subscription does not match): best effort and volatile, so it matches every publisher."""
    return keep_last(1, ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE)


def command_qos() -> QoSProfile:
    """Arm commands: reliable, depth 1 (a queued stale command must never be replayed)."""
    return keep_last(1, ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)


def vla_qos() -> QoSProfile:
    """/vla/* streams, executed actions, markers and diagnostics: reliable, depth 10."""
    return keep_last(10, ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)


def episode_qos() -> QoSProfile:
    """Simulated episode events: reliable and latched with a long history, so a late monitor sees them."""
    return keep_last(100, ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)
