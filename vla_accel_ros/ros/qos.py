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


def camera_qos() -> QoSProfile:
    """Images: sensor-data profile (best effort, volatile), newest frame only."""
    qos = QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )
    return qos


def joint_states_qos() -> QoSProfile:
    """Joint states: best effort, a few messages (finite differences want consecutive samples)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=5,
        reliability=ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def instruction_qos() -> QoSProfile:
    """Instruction: reliable and latched (TRANSIENT_LOCAL), the latest one only."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def command_qos() -> QoSProfile:
    """Arm commands: reliable, depth 1 (a queued stale command must never be replayed)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def vla_qos() -> QoSProfile:
    """/vla/* streams, executed actions, markers and diagnostics: reliable, depth 10."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def episode_qos() -> QoSProfile:
    """Simulated episode events: reliable and latched with a long history, so a late monitor sees them."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=100,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
