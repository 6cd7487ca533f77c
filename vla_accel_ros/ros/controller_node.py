"""Controller node: the only node that talks to the arm driver.

From `vla/kinematics` it decides the next AccelConfig (DyQ precision with hysteresis, KERV threshold)
and publishes it on `vla/accel_config`, stamped with the kinematic state's stamp. Each `vla/action_raw`
goes through the SafetyGuard; an accepted action is published on `vla/action_safe` (always, for
monitoring) and on `arm/command` unless dry_run, as the declared action space maps it (`output_type`:
VlaAction, TwistStamped, or a one-point JointTrajectory from the latest `joint_states`). With `twist`,
the gripper dim goes out beside it on `gripper_command_topic` (std_msgs/Float64MultiArray, the gripper
joint position, for a ros2_control forward_command_controller): the same accepted action, so dry_run, the
limits, the rate limit and max_gripper_change apply to it as to the twist; a hold sends no gripper
command (the gripper stays where its controller last put it).

A refused action is never sent. One the SafetyGuard refuses (a limit, NaN, a wrong length) also holds the
arm (zero motion, gripper kept), once per run of refusals after the first accepted action, and
/diagnostics names the limit and its excess. One refused for old or missing inputs (a stale image, no
fresh ee_pose while a workspace box is set, no fresh joint_states for joint_trajectory) leaves the
holding to the Watchdog, which holds the arm once per watchdog period while no fresh action arrives,
with ERROR on /diagnostics: its timer restarts on every command, so the first hold comes one watchdog
period after the last action. An action whose camera image is older than the watchdog period (or stamped
in the future) is refused. The action space is checked at start-up (ParameterError: the node does not
start).

Run-time parameter changes (`set_parameters` from any peer): a change of dry_run or of a limit
(`ControllerParams.SAFETY_PARAMS`) holds the arm first (while either the old or the new setting is live);
dry_run=false at run time is refused unless `allow_runtime_arming` (read-only), and then logged.
`sim/episode` start events reset the gate and the AccelConfig only with `use_sim_episode` (simulation).

The decisions are ROS-free objects shared with offline runs: `AccelDecider` (precision, decoding,
threshold; vla_accel_ros.control.accel_decision) and `CommandGate` (freshness, guard, holds, rate limit;
vla_accel_ros.control.command_gate). This node turns their decisions into messages and diagnostics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from vla_accel_ros.control.accel_decision import AccelDecider, AccelDecision
from vla_accel_ros.control.command_gate import CommandGate, GateDecision, Outcome
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction
from vla_accel_ros.params import ControllerParams
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.diagnostics import ERROR, OK, WARN, Health, RateMeter
from vla_accel_ros.ros.markers import build_markers, status_text
from vla_accel_ros.ros.params import declare_params
from vla_accel_ros.ros.qos import command_qos, episode_qos, joint_states_qos, vla_qos
from vla_accel_ros.ros.spin import run_node

FINAL_HOLD_ACK_S = 1.0  # how long a clean stop waits for the driver to acknowledge the last hold
COMMAND_TYPES = {"vla_action": VlaAction, "twist": TwistStamped, "joint_trajectory": JointTrajectory}


class ControllerNode(Node):
    """The only node that commands the arm: AccelConfig from kinematics, and safe commands (module doc)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("controller_node", **kwargs)
        self._params = declare_params(self, ControllerParams)
        self._params.on_change(self._on_params)
        self.add_on_set_parameters_callback(self._check_arming)
        p = self._params.values
        self._build(p, previous=None)
        self._health = Health(self)
        self._rate = RateMeter()
        self._counts = {"actions": 0, "commands": 0, "refused": 0, "holds": 0, "rate_limited": 0}
        self._prediction: np.ndarray | None = None
        self._ee: np.ndarray | None = None  # latest ee_pose position (workspace box)
        self._ee_ns: int | None = None

        self._config_pub = self.create_publisher(AccelConfig, "vla/accel_config", vla_qos())
        self._safe_pub = self.create_publisher(VlaAction, "vla/action_safe", vla_qos())
        self._marker_pub = self.create_publisher(MarkerArray, "vla/markers", vla_qos())
        self._arm_pub = self.create_publisher(COMMAND_TYPES[p.output_type], "arm/command", command_qos())
        self._gripper_pub = (
            self.create_publisher(Float64MultiArray, p.gripper_command_topic, command_qos())
            if p.output_type == "twist" and p.gripper_command_topic and self._space.gripper_dim is not None
            else None
        )
        if p.output_type == "joint_trajectory":
            self.create_subscription(JointState, "joint_states", self._on_joint_states, joint_states_qos())
        if p.workspace_min:
            self.create_subscription(PoseStamped, "ee_pose", self._on_ee_pose, vla_qos())
        self.create_subscription(KinematicState, "vla/kinematics", self._on_kinematics, vla_qos())
        self.create_subscription(VlaAction, "vla/action_raw", self._on_action, vla_qos())
        self.create_subscription(KalmanPrediction, "vla/kalman_prediction", self._on_prediction, vla_qos())
        if p.use_sim_episode:
            self.create_subscription(String, "sim/episode", self._on_episode, episode_qos())
        self._watchdog_timer = self.create_timer(p.watchdog_timeout_s / 4, self._on_watchdog_timer)
        self._health.set_state(WARN, "waiting for the first action" + (" (dry run)" if p.dry_run else ""))

    def _build(self, p: ControllerParams, previous: CommandGate | None) -> None:
        """The decision objects from the parameters (a new AccelDecider starts in the top mode; the gate
        keeps `previous`'s gripper memory, watchdog kick and hold)."""
        self._space = p.action_space()
        self._decider = AccelDecider.from_table(p)
        self._gate = CommandGate.from_table(p, previous)

    @property
    def holding(self) -> bool:
        """Whether the arm is held (a safety or watchdog hold) until the next accepted action."""
        return self._gate.holding

    def _check_arming(self, params: list[Parameter]) -> SetParametersResult:
        """Refuse a run-time dry_run=false unless allow_runtime_arming (arming is a start-up decision)."""
        current = self._params.values
        changes = {param.name: param.value for param in params}
        reason = current.arming_refusal(changes)
        if reason is not None:
            self.get_logger().warning(reason)
            return SetParametersResult(successful=False, reason=reason)
        if changes.get("dry_run") is False and current.dry_run:
            self.get_logger().warning("dry_run -> false at run time (allow_runtime_arming): arming")
        return SetParametersResult(successful=True)

    def _on_params(self, old: ControllerParams, new: ControllerParams) -> None:
        changed = old.safety_changes(new)
        if changed:  # under the old limits nothing more is sent: hold first, then apply the new ones
            self._hold(
                self.get_clock().now().nanoseconds,
                "parameter change: " + ", ".join(changed),
                live=not (old.dry_run and new.dry_run),
                hold=self._gate.hold_now(),
            )
        self._build(new, self._gate)
        if old.watchdog_timeout_s != new.watchdog_timeout_s:
            self._watchdog_timer.cancel()
            self.destroy_timer(self._watchdog_timer)
            self._watchdog_timer = self.create_timer(new.watchdog_timeout_s / 4, self._on_watchdog_timer)
        if old.dry_run != new.dry_run:
            self.get_logger().warning(f"dry_run {old.dry_run} -> {new.dry_run}")

    # -- AccelConfig -----------------------------------------------------------------------------------
    def _on_kinematics(self, msg: KinematicState) -> None:
        decision = self._decider.decide(msg.sensitivity, msg.fluctuation)
        self._publish_config(decision, convert.stamp_to_ns(msg.header.stamp))

    def _publish_config(self, d: AccelDecision, stamp_ns: int) -> None:
        self._config_pub.publish(
            convert.accel_config_msg(d.precision, d.decoding, d.threshold, d.reason, stamp_ns)
        )
        self._health.set_values(precision=d.precision, decoding=d.decoding, threshold=d.threshold)

    def _on_episode(self, msg: String) -> None:
        try:
            kind, stamp_ns = convert.episode_event(msg.data)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad episode event", str(err))
            return
        if kind != "start" or not self._params.values.use_sim_episode:
            return
        # A new episode starts from scratch, as an offline evaluation does: top mode, no history.
        self._gate.start_episode()
        self._publish_config(self._decider.start_episode(), stamp_ns)

    # -- actions ---------------------------------------------------------------------------------------
    def _on_prediction(self, msg: KalmanPrediction) -> None:
        prediction = np.nan_to_num(np.asarray(msg.action, dtype=np.float32)) if msg.valid else None
        dim = self._params.values.action_dim
        if prediction is not None and prediction.shape != (dim,):
            self._health.report(
                WARN, "bad Kalman prediction", f"{prediction.size} values, actions have {dim}"
            )
            prediction = None
        self._prediction = prediction

    def _on_joint_states(self, msg: JointState) -> None:
        try:
            names, positions = convert.joint_state_to_arrays(msg)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad joint state", str(err))
            return
        if not names:
            self._health.report(WARN, "bad joint state", "joint_trajectory needs joint names in joint_states")
            return
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        # As for ee_pose: freshness counts from receipt, so a state stamped older than a watchdog period (a
        # stale or replayed one) or as far in the future is refused, even with the jump check off.
        problem = self._gate.input_problem("joint_states", stamp_ns, now_ns) or convert.stamp_problem(
            stamp_ns, now_ns, None, self._gate.timeout_s
        )
        if problem is None:
            problem = self._gate.observe_joint_states(names, positions.tolist(), now_ns)
        if problem is not None:
            self._health.report(WARN, "bad joint state", problem)
            return

    def _on_ee_pose(self, msg: PoseStamped) -> None:
        frame = self._params.values.action_frame
        if msg.header.frame_id and msg.header.frame_id != frame:
            self._health.report(
                WARN, "bad ee_pose", f"frame {msg.header.frame_id!r}, action_frame is {frame!r}"
            )
            return
        now_ns = self.get_clock().now().nanoseconds
        stamp_ns = convert.stamp_to_ns(msg.header.stamp)
        # Freshness counts from receipt, so a pose stamped older than a watchdog period (a stale or
        # replayed one) or as far in the future (a broken clock) is refused, not taken as current.
        problem = self._gate.input_problem("ee_pose", stamp_ns, now_ns) or convert.stamp_problem(
            stamp_ns, now_ns, None, self._gate.timeout_s
        )
        try:
            if problem:
                raise convert.ConversionError(problem)
            self._ee = convert.pose_position(msg)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad ee_pose", str(err))
            return
        self._ee_ns = now_ns

    def _on_action(self, msg: VlaAction) -> None:
        p = self._params.values
        now_ns = self.get_clock().now().nanoseconds
        self._counts["actions"] += 1
        d = self._gate.offer(
            np.asarray(msg.action, dtype=np.float64),
            now_ns,
            convert.stamp_to_ns(msg.image_stamp),
            ee_position=self._ee,
            ee_stamp_ns=self._ee_ns,
            joint_states_stamp_ns=self._gate.joints.stamp_ns,
        )
        if d.outcome is Outcome.REFUSE:
            self._refuse(p, msg, d, now_ns)
            return
        if d.outcome is Outcome.RATE_LIMITED:
            self._counts["rate_limited"] += 1
            self._health.report(WARN, "rate limited", d.reason)
            return
        assert d.action is not None
        self._watchdog_timer.reset()  # checks fall at T/4, T/2, ... after this action: the first hold at T
        if d.resumed:
            self.get_logger().info("actions are back: holding ended")
        safe = convert.with_action(msg, d.action, now_ns)
        self._safe_pub.publish(safe)
        if not p.dry_run:
            self._command(d.action, safe, now_ns)
        self._rate.tick()
        if d.clipped:
            self._health.report(WARN, "action clipped", d.reason)
        self._health.set_state(OK, "dry run: not commanding the arm" if p.dry_run else "commanding the arm")
        latency_ms = (now_ns - convert.stamp_to_ns(msg.image_stamp)) * 1e-6
        self._health.set_values(
            action_rate_hz=self._rate.rate(),
            camera_to_command_ms=latency_ms,
            inference_ms=msg.total_ms,
            dry_run=p.dry_run,
            **self._counts,
        )
        self._publish_markers(d.action, msg, "dry run" if p.dry_run else "live", now_ns)

    def _refuse(self, p: ControllerParams, msg: VlaAction, d: GateDecision, now_ns: int) -> None:
        """Report the refusal (which limit, by how much); a guard refusal holds the arm once per run."""
        self._counts["refused"] += 1
        self._health.report(WARN, "action refused", d.reason)
        if d.verdict is not None and d.verdict.violations:
            name, value, bound = d.verdict.violations[0]
            self._health.set_values(last_violation=name, last_violation_excess=float(value - bound))
        self._publish_markers(None, msg, "refused", now_ns)
        if d.hold:
            self._hold(now_ns, "safety hold", live=not p.dry_run)
        self._health.set_values(**self._counts)

    def _hold(self, now_ns: int, why: str, live: bool, hold: np.ndarray | None = None) -> None:
        """Zero motion, gripper kept (for joint_trajectory: the current positions); commanded when live."""
        hold = self._gate.hold_action() if hold is None else hold
        self._counts["holds"] += 1
        if not live:
            return
        msg = VlaAction(
            header=convert.header(now_ns),
            action=[float(v) for v in hold],
            fallback=True,
            fallback_reason=why,
        )
        self._command(hold, msg, now_ns, keep_gripper=not self._gate.gripper_known, gripper=False)

    def _command(
        self,
        action: np.ndarray,
        safe: VlaAction,
        now_ns: int,
        keep_gripper: bool = False,
        gripper: bool = True,
    ) -> None:
        """Send one command; `gripper`: also the twist output's gripper command (not for a hold)."""
        p = self._params.values
        grip: Float64MultiArray | None = None
        try:
            if p.output_type == "twist":
                out: Any = convert.twist_for_space(action, self._space, p.control_rate_hz, now_ns)
                if gripper and self._gripper_pub is not None:
                    grip = convert.gripper_command(action, self._space)
            elif p.output_type == "joint_trajectory":
                joints = self._gate.joints  # the trusted joint_states (control.joint_guard)
                problem = self._gate.joint_states_problem(joints.stamp_ns, now_ns)
                if problem:
                    raise convert.ConversionError(problem)
                out = convert.joint_trajectory(
                    action, self._space, joints.positions, 1.0 / p.control_rate_hz, keep_gripper
                )
            else:
                out = safe
        except convert.ConversionError as err:
            self._health.report(ERROR, "no arm command", str(err))
            return
        # the gripper first: an arm that moves on the twist (the lockstep sim arm) has it by then
        if grip is not None and self._gripper_pub is not None:
            self._gripper_pub.publish(grip)
        self._arm_pub.publish(out)
        self._counts["commands"] += 1

    def _on_watchdog_timer(self) -> None:
        p = self._params.values
        now_ns = self.get_clock().now().nanoseconds
        d = self._gate.watchdog_check(now_ns)
        if d is None:
            return
        self._health.set_state(ERROR, f"no fresh action within {p.watchdog_timeout_s:g} s: holding")
        self._health.set_values(action_age_s=d.age_s)
        if not d.hold:
            return
        self._hold(now_ns, "watchdog hold", live=not p.dry_run)
        self._health.set_values(**self._counts)

    def destroy_node(self) -> None:
        """A clean stop (Ctrl-C, SIGTERM, `vla-accel up` ending) commands one last hold when the arm was
        being commanded, so a twist driver without a command timeout does not keep the last velocity.
        SIGKILL cannot do this: then the driver's own timeout stops the arm (docs/DEPLOYMENT.md)."""
        if hasattr(self, "_counts") and not getattr(self, "_stopped", False):  # __init__ may have failed
            self._stopped = True
            if not self._params.values.dry_run and self._counts["commands"] > 0 and not self.holding:
                try:
                    self._hold(self.get_clock().now().nanoseconds, "controller stopping", live=True)
                    # The process exits next: without the driver's acknowledgement the hold may still sit
                    # in the writer's queue when the participant is deleted, and never reach the arm.
                    if not self._arm_pub.wait_for_all_acked(Duration(seconds=FINAL_HOLD_ACK_S)):
                        self.get_logger().warning(
                            f"final hold not acknowledged by the driver within {FINAL_HOLD_ACK_S:g} s"
                        )
                except Exception as err:  # noqa: BLE001 - the context may already be gone: nothing to do
                    self.get_logger().warning(f"no final hold sent ({type(err).__name__}: {err})")
        super().destroy_node()

    def _publish_markers(self, action: np.ndarray | None, msg: VlaAction, mode: str, now_ns: int) -> None:
        p = self._params.values
        text = status_text(
            msg.precision,
            msg.decoding,
            msg.threshold,
            msg.accepted_tokens,
            msg.draft_tokens,
            msg.total_ms,
            mode,
        )
        self._marker_pub.publish(
            build_markers(action, self._prediction, text, p.marker_frame_id, now_ns, p.marker_scale)
        )


def main(args: list[str] | None = None) -> None:
    run_node(ControllerNode, "controller_node", args)


if __name__ == "__main__":
    main()
