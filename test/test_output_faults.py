"""What the arm receives, per output type, when the actions stop, when the controller stops, and when it
is killed.

The controller runs as its own OS process (the argv of `vla-accel up`) with dry_run off; this process is
the inference node (a fresh VlaAction at 10 Hz), the joint states and the arm (a spy on arm/command).
For each output type (`vla_action`, `twist`, `joint_trajectory`):
- the actions stop (the inference node hung, killed or cut off: to the controller they look the same;
  test/test_faults.py covers those with the real inference node): the first hold comes within two
  watchdog periods and has the output type's hold shape (a zero VlaAction, a zero twist, a trajectory to
  the current joint positions);
- the controller is stopped (SIGINT, as Ctrl-C or `vla-accel up` ending): its last command is a hold;
- the controller is killed (SIGKILL): nothing more reaches the arm, and its last command was motion, so
  what the arm does then is the driver's (a command timeout for twist; a trajectory ends at its point).

Measurements are printed (run with -s) and, with VLA_ACCEL_FAULT_REPORT=<json>, written there.
"""

from __future__ import annotations

import signal
import time

import numpy as np
import pytest
from geometry_msgs.msg import TwistStamped
from ros_fixtures import ros_harness, ros_test_env
from sensor_msgs.msg import JointState
from test_action_space import JOINT8, OPENVLA
from test_faults import START_S, Proc, record
from test_nodes_unit import JOINT_POSITIONS, raw_action, space_params
from trajectory_msgs.msg import JointTrajectory
from vla_accel_ros.msg import VlaAction

from vla_accel_ros.ros import convert
from vla_accel_ros.ros.launcher import Graph, GraphConfig, default_params_files
from vla_accel_ros.ros.qos import command_qos, joint_states_qos, vla_qos

WATCHDOG_S = 0.5
ACTION = {"vla_action": [0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], "twist": [0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]}
ACTION["joint_trajectory"] = [0.3] + [0.0] * 6 + [1.0]
COMMANDS = {"vla_action": VlaAction, "twist": TwistStamped, "joint_trajectory": JointTrajectory}
CURRENT = np.array(list(JOINT_POSITIONS.values()))


def is_hold(output: str, msg: object) -> bool:
    """The output type's hold: no motion (for joint_trajectory: the current positions, gripper kept)."""
    if output == "vla_action":
        return msg.fallback and all(v == 0.0 for v in list(msg.action)[:-1])
    if output == "twist":
        t = msg.twist
        return not any((t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z))
    positions = np.array(msg.points[0].positions)
    return bool(np.allclose(positions[:-1], CURRENT[:-1]))


class ControllerUnderTest:
    """The controller process, the action source it listens to, and what reaches the arm."""

    def __init__(self, ros, output: str) -> None:
        self.ros, self.output = ros, output
        space = JOINT8 if output == "joint_trajectory" else OPENVLA
        overrides = {
            "dry_run": False,
            "output_type": output,
            "watchdog_timeout_s": WATCHDOG_S,
            "max_rate_hz": 1000.0,
            **space_params(space),
        }
        self.graph = Graph(
            GraphConfig(
                nodes=("controller_node",),
                params_files=default_params_files(sim=False),
                overrides={"controller_node": overrides},
            )
        )
        self.env = {**ros_test_env(ros.domain_id), "PYTHONUNBUFFERED": "1"}
        self.argv = list(self.graph.launcher.specs["controller_node"].argv)
        self.proc: Proc | None = None
        self.sending = True
        self.received: list[tuple[float, object]] = []
        probe = ros.probe
        probe.create_subscription(
            COMMANDS[output],
            "arm/command",
            lambda m: self.received.append((time.monotonic(), m)),
            command_qos(),
        )
        self.actions = probe.create_publisher(VlaAction, "vla/action_raw", vla_qos())
        self.joints = probe.create_publisher(JointState, "joint_states", joint_states_qos())
        probe.create_timer(0.1, self._tick)

    def _tick(self) -> None:
        now = self.ros.probe.get_clock().now().nanoseconds
        names = list(JOINT_POSITIONS)
        self.joints.publish(convert.arrays_to_joint_state(names, CURRENT, None, now))
        if self.sending:
            self.actions.publish(raw_action(now, action=ACTION[self.output]))

    def start(self) -> None:
        self.proc = Proc(self.argv, self.env)
        t = time.monotonic()
        ok = self.ros.spin_until(lambda: len(self.motion_after(t)) >= 3, START_S)
        assert ok, "the controller does not command the arm\n" + self.proc.text()

    def after(self, t: float) -> list[tuple[float, object]]:
        return [(ts, m) for ts, m in self.received if ts > t]

    def motion_after(self, t: float) -> list[object]:
        return [m for _, m in self.after(t) if not is_hold(self.output, m)]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stop()
        self.graph.close()


@pytest.mark.parametrize("output", list(COMMANDS))
def test_what_the_arm_gets_when_actions_stop_and_the_controller_stops_or_dies(output, monkeypatch):
    with ros_harness(monkeypatch) as ros:
        arm = ControllerUnderTest(ros, output)
        try:
            arm.start()

            # The actions stop: holds, within two watchdog periods, of the output type's shape.
            t_stop = time.monotonic()
            arm.sending = False
            assert ros.spin_until(
                lambda: arm.after(t_stop) and is_hold(output, arm.after(t_stop)[-1][1]), 10.0
            )
            first_hold = next(ts for ts, m in arm.after(t_stop) if is_hold(output, m))
            latency = first_hold - t_stop
            assert latency <= 2 * WATCHDOG_S + 0.1, f"first hold {latency:.3f} s after the last action"
            assert ros.spin_until(lambda: len(arm.after(first_hold)) >= 2, 10 * WATCHDOG_S)
            assert all(is_hold(output, m) for ts, m in arm.after(first_hold))

            # Actions again: motion again; then Ctrl-C: the last command the arm gets is a hold.
            t_resume = time.monotonic()
            arm.sending = True
            assert ros.spin_until(lambda: len(arm.motion_after(t_resume)) >= 3, 10.0)
            arm.proc.signal(signal.SIGINT)
            assert ros.spin_until(lambda: not arm.proc.alive(), 30.0), arm.proc.text()
            ros.spin_for(0.3)  # deliver what the controller sent before it exited
            last = arm.after(t_resume)[-1][1]
            final_hold = is_hold(output, last)
            assert final_hold, f"last command after SIGINT was motion\n{arm.proc.text()}"
            assert arm.proc.popen.returncode == 0, arm.proc.text()

            # Killed while commanding motion: nothing more reaches the arm; the last command was motion.
            arm.start()
            t_kill = time.monotonic()
            arm.proc.signal(signal.SIGKILL)
            assert ros.spin_until(lambda: not arm.proc.alive(), 10.0)
            ros.spin_for(2 * WATCHDOG_S)  # nothing may arrive: the controller is gone
            late = [m for _, m in arm.after(t_kill + 0.05)]
            assert not [m for m in late if is_hold(output, m)], "a hold from a killed controller"
            last_motion = not is_hold(output, arm.received[-1][1])
        finally:
            arm.close()
    record(
        f"actions stop ({output})",
        hold_latency_s=round(latency, 3),
        note="receive time at the arm after the last action; watchdog_timeout_s 0.5",
    )
    record(f"controller SIGINT ({output})", last_command_is_hold=final_hold)
    record(
        f"controller SIGKILL ({output})",
        commands_after_kill=len(late),
        last_command_was_motion=last_motion,
        then=THEN[output],
    )


THEN = {
    "vla_action": "no further VlaAction: the user's bridge must stop on its own timeout",
    "twist": "no zero twist: the velocity driver's command timeout must stop the arm",
    "joint_trajectory": "the last one-point trajectory ends 1 / control_rate_hz later; the arm stays there",
}
