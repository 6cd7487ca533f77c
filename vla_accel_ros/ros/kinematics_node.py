"""Kinematics node: DyQ-VLA proxies and the KERV Kalman prediction from what the arm actually did.

Inputs: `arm/executed_action` (VlaAction, one per executed control step), `joint_states`, and
`sim/episode` (episode starts reset the filters; on a robot nobody publishes it). Outputs, stamped with
the executed action's stamp so the inference node can match them to the next observation:
`vla/kinematics` (KinematicState) and `vla/kalman_prediction` (KalmanPrediction; `valid` is false while
the filter warms up or cools down after a fill; NaN in the dimensions never filled, the gripper). Each
fill reported in an executed action starts the compensator's cool-down. What is computed per executed
action is `vla_accel_ros.control.kinematics_step.KinematicsStep`, the same object offline runs
(vla_accel_ros.control.accel_loop.AccelLoop) use; this node adds the joint-space derivatives.

With `state_joint_names`, the derivatives follow those joints by name, merged from any number of
joint_states messages (arm and gripper apart; `control.joint_selection`); a joint never received, or
more than joint_max_gap_s older than the newest, gives no derivatives and a WARN naming it. Two messages
of one tick (the same stamp) update the derivatives once, with the second's joints in the next update.
"""

from __future__ import annotations

from typing import Any

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from vla_accel_ros.control.joint_selection import JointSelection, JointSelectionError
from vla_accel_ros.control.kinematics_step import KalmanEstimate, KinematicsStep
from vla_accel_ros.kinematics import JointDerivatives, NonIncreasingStampError
from vla_accel_ros.msg import KalmanPrediction, KinematicState, VlaAction
from vla_accel_ros.params import KinematicsParams
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.diagnostics import OK, WARN, Health, RateMeter
from vla_accel_ros.ros.params import declare_params
from vla_accel_ros.ros.qos import episode_qos, joint_states_qos, vla_qos
from vla_accel_ros.ros.spin import run_node


class KinematicsNode(Node):
    """Proxies and the Kalman prediction from executed actions, for the controller and inference nodes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("kinematics_node", **kwargs)
        self._params = declare_params(self, KinematicsParams)
        self._params.on_change(lambda _old, _new: self._reset("parameters changed"))
        self._health = Health(self)
        self._step = KinematicsStep.from_table(self._params.values)  # the dimension: from the first action
        self._joints = JointDerivatives(max_gap_s=self._params.values.joint_max_gap_s)
        self._joint_names: list[str] | None = None
        self._selection = JointSelection(
            self._params.values.state_joint_names, convert.MAX_ABS_JOINT_POSITION
        )
        self._derived_ns: int | None = None  # stamp of the last merged vector differentiated (selection)
        self._derivatives: convert.JointDerivativesView | None = None
        self._episode_start_ns = 0  # executed actions stamped before the current episode are ignored
        self._rate = RateMeter()
        self._dropped_joint_states = 0
        self._received_joint_states = 0

        self._state_pub = self.create_publisher(KinematicState, "vla/kinematics", vla_qos())
        self._prediction_pub = self.create_publisher(KalmanPrediction, "vla/kalman_prediction", vla_qos())
        self.create_subscription(JointState, "joint_states", self._on_joint_state, joint_states_qos())
        self.create_subscription(VlaAction, "arm/executed_action", self._on_executed, vla_qos())
        self.create_subscription(String, "sim/episode", self._on_episode, episode_qos())
        self._health.set_state(OK, "waiting for executed actions")
        self.get_logger().info("ready: waiting for executed actions")

    # -- callbacks -------------------------------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        self._received_joint_states += 1
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        now_ns = self.get_clock().now().nanoseconds
        ahead = convert.stamp_problem(stamp_ns, now_ns, None, self._params.values.joint_max_gap_s)
        if ahead is not None:  # it would make every later joint state look like it goes back
            self._drop_joint_state("bad joint state", ahead)
            return
        if self._selection.selecting:
            self._on_selected_joints(list(msg.name), msg.position, stamp_ns, now_ns)
            return
        try:
            names, positions = convert.joint_state_to_arrays(msg, self._joint_names)
            velocity, acceleration, jerk = self._joints.update(stamp_ns * 1e-9, positions)
        except NonIncreasingStampError as err:
            self._drop_joint_state("joint state stamp not increasing", str(err))
            return
        except ValueError as err:  # ConversionError included
            self._drop_joint_state("bad joint state", str(err))
            return
        if self._joint_names is None:
            self._joint_names = names or [f"joint_{i}" for i in range(positions.size)]
        self._derivatives = convert.JointDerivativesView(self._joint_names, velocity, acceleration, jerk)

    def _on_selected_joints(self, names: list[str], positions: Any, stamp_ns: int, now_ns: int) -> None:
        """state_joint_names: merge this message's selected joints, differentiate the merged vector."""
        max_gap_s = self._params.values.joint_max_gap_s
        back = convert.stamp_problem(stamp_ns, now_ns, self._selection.last_stamp_ns(names), max_gap_s)
        problem = back or self._selection.observe(names, positions, stamp_ns)
        if problem is not None:
            self._drop_joint_state("bad joint state", problem)
            return
        try:
            joints = self._selection.vector()
            self._selection.vector(joints.newest_ns, max_gap_s)  # every joint close to the newest
        except JointSelectionError as err:
            self._derivatives = None
            self._health.report(WARN, err.key, str(err))
            return
        if self._derived_ns is not None and joints.newest_ns <= self._derived_ns:
            return  # another message of the same tick: its joints go into the next update
        velocity, acceleration, jerk = self._joints.update(joints.newest_ns * 1e-9, joints.positions)
        self._derived_ns = joints.newest_ns
        self._joint_names = list(self._selection.names)
        self._derivatives = convert.JointDerivativesView(self._joint_names, velocity, acceleration, jerk)

    def _on_executed(self, msg: VlaAction) -> None:
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        if stamp_ns < self._episode_start_ns:
            return  # the previous episode's last step, delivered after the reset
        try:
            action = convert.action_array(msg.action, "executed action")
            if self._step.action_dim not in (None, action.size):  # the step re-creates its filters
                self._health.report(
                    WARN, "action dimension changed", f"{self._step.action_dim} -> {action.size}"
                )
            # A fill reported by the decoder at this step starts the cool-down here.
            update = self._step.update(action, filled=bool(msg.kalman_filled))
        except ValueError as err:
            self._health.report(WARN, "bad executed action", str(err))
            return
        values = update.values
        assert update.prediction is not None
        self._rate.tick()
        self._state_pub.publish(convert.kinematic_state_msg(values, self._derivatives, stamp_ns))
        self._publish_prediction(update.prediction, stamp_ns)
        self._health.set_state(OK, "running")
        self._health.set_values(
            rate_hz=self._rate.rate(),
            sensitivity=values.sensitivity,
            fluctuation=values.fluctuation,
            kalman_samples=update.prediction.samples,
            dropped_joint_states=self._dropped_joint_states,
            received_joint_states=self._received_joint_states,
        )

    def _on_episode(self, msg: String) -> None:
        try:
            kind, stamp_ns = convert.episode_event(msg.data)
            # A start stamped in the future would make every executed action look like the old episode's.
            ahead = convert.stamp_problem(
                stamp_ns, self.get_clock().now().nanoseconds, None, self._params.values.joint_max_gap_s
            )
            if ahead is not None and kind == "start":
                raise convert.ConversionError(f"episode start {ahead}")
        except convert.ConversionError as err:
            self._health.report(WARN, "bad episode event", str(err))
            return
        if kind != "start":
            return
        self._reset("episode started")
        self._episode_start_ns = stamp_ns
        prediction = self._step.prediction()
        if prediction is not None:
            # The first step of an episode has no prediction: say so with the episode's stamp.
            self._publish_prediction(prediction, self._episode_start_ns)

    # -- helpers ---------------------------------------------------------------------------------------
    def _publish_prediction(self, p: KalmanEstimate, stamp_ns: int) -> None:
        self._prediction_pub.publish(
            convert.kalman_prediction_msg(p.mean, p.variance, p.samples, p.valid, stamp_ns)
        )

    def _reset(self, why: str) -> None:
        # Fresh filters from the current parameters, for the action dimension seen so far.
        self._step = KinematicsStep.from_table(self._params.values, self._step.action_dim)
        self._joints = JointDerivatives(max_gap_s=self._params.values.joint_max_gap_s)
        self._joint_names = None
        self._derived_ns = None
        self._derivatives = None
        self.get_logger().info(f"filters reset: {why}")

    @property
    def joint_names(self) -> list[str] | None:
        """The joint set the derivatives follow (the first one received after a reset), or None."""
        return None if self._joint_names is None else list(self._joint_names)

    def _drop_joint_state(self, key: str, detail: str) -> None:
        self._dropped_joint_states += 1
        self._health.report(WARN, key, detail)


def main(args: list[str] | None = None) -> None:
    run_node(KinematicsNode, "kinematics_node", args)


if __name__ == "__main__":
    main()
