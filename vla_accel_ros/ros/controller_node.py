"""Controller node: the only node that talks to the arm driver.

From `vla/kinematics` it decides the next AccelConfig (DyQ precision with hysteresis, KERV threshold)
and publishes it on `vla/accel_config`, stamped with the kinematic state's stamp. Each `vla/action_raw`
goes through the SafetyGuard; an accepted action is published on `vla/action_safe` (always, for
monitoring) and on `arm/command` (VlaAction or TwistStamped) unless dry_run. A refused action sends
nothing to the arm. After the first accepted action, a Watchdog holds the arm (zero motion, gripper
kept) once per watchdog period while no fresh action arrives, with ERROR on /diagnostics: its timer
restarts on every command, so the first hold comes one watchdog period after the last action. An action
whose camera image is older than the watchdog period (or stamped in the future) is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from vla_accel_ros.control import SafetyGuard, Watchdog
from vla_accel_ros.msg import AccelConfig, KalmanPrediction, KinematicState, VlaAction
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.diagnostics import ERROR, OK, WARN, Health, RateMeter
from vla_accel_ros.ros.markers import build_markers, status_text
from vla_accel_ros.ros.params import ControllerParams, declare_params
from vla_accel_ros.ros.qos import command_qos, episode_qos, vla_qos
from vla_accel_ros.ros.spin import run_node


class ControllerNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("controller_node", **kwargs)
        self._params = declare_params(self, ControllerParams)
        self._params.on_change(self._on_params)
        p = self._params.values
        self._build(p, last_gripper=None)
        self._health = Health(self)
        self._rate = RateMeter()
        self._counts = {"actions": 0, "commands": 0, "refused": 0, "holds": 0, "rate_limited": 0}
        self._last_command_s = -math.inf
        self._last_hold_s = -math.inf
        self._prediction: np.ndarray | None = None
        self._holding = False

        self._config_pub = self.create_publisher(AccelConfig, "vla/accel_config", vla_qos())
        self._safe_pub = self.create_publisher(VlaAction, "vla/action_safe", vla_qos())
        self._marker_pub = self.create_publisher(MarkerArray, "vla/markers", vla_qos())
        if p.output_type == "twist":
            self._arm_pub = self.create_publisher(TwistStamped, "arm/command", command_qos())
        else:
            self._arm_pub = self.create_publisher(VlaAction, "arm/command", command_qos())
        self.create_subscription(KinematicState, "vla/kinematics", self._on_kinematics, vla_qos())
        self.create_subscription(VlaAction, "vla/action_raw", self._on_action, vla_qos())
        self.create_subscription(KalmanPrediction, "vla/kalman_prediction", self._on_prediction, vla_qos())
        self.create_subscription(String, "sim/episode", self._on_episode, episode_qos())
        self._watchdog_timer = self.create_timer(p.watchdog_timeout_s / 4, self._on_watchdog_timer)
        self._health.set_state(WARN, "waiting for the first action" + (" (dry run)" if p.dry_run else ""))

    def _build(self, p: ControllerParams, last_gripper: float | None) -> None:
        self._guard = SafetyGuard(p.safety_limits(), initial_gripper=last_gripper)
        self._precision = p.precision_policy()
        self._threshold = p.threshold_policy()
        self._watchdog = Watchdog(p.watchdog_timeout_s)

    def _on_params(self, old: ControllerParams, new: ControllerParams) -> None:
        kick = self._watchdog.last_kick
        self._build(new, self._guard.last_gripper)
        self._watchdog.last_kick = kick
        if old.watchdog_timeout_s != new.watchdog_timeout_s:
            self._watchdog_timer.cancel()
            self.destroy_timer(self._watchdog_timer)
            self._watchdog_timer = self.create_timer(new.watchdog_timeout_s / 4, self._on_watchdog_timer)
        if old.dry_run != new.dry_run:
            self.get_logger().warning(f"dry_run {old.dry_run} -> {new.dry_run}")

    # -- AccelConfig -----------------------------------------------------------------------------------
    def _on_kinematics(self, msg: KinematicState) -> None:
        p = self._params.values
        if p.precision_switching:
            mode, reason = self._precision.decide(msg.sensitivity)
        else:
            mode, reason = self._precision.top, "switching off"
        threshold, why = self._threshold_for(p, msg.fluctuation)
        self._publish_config(mode, threshold, f"{reason}; {why}", convert.stamp_to_ns(msg.header.stamp))

    def _threshold_for(self, p: ControllerParams, fluctuation: float) -> tuple[float, str]:
        if p.decoding == "kerv":
            r = self._threshold.decide(fluctuation)
            return r, f"F={fluctuation:.2f} -> r={r:.1f}"
        if p.decoding == "specvla":
            return p.specvla_threshold, f"r={p.specvla_threshold:.1f} fixed"
        return 0.0, "strict"

    def _publish_config(self, mode: str, threshold: float, reason: str, stamp_ns: int) -> None:
        p = self._params.values
        self._config_pub.publish(convert.accel_config_msg(mode, p.decoding, threshold, reason, stamp_ns))
        self._health.set_values(precision=mode, decoding=p.decoding, threshold=threshold)

    def _on_episode(self, msg: String) -> None:
        try:
            kind, stamp_ns = convert.episode_event(msg.data)
        except convert.ConversionError as err:
            self._health.report(WARN, "bad episode event", str(err))
            return
        if kind != "start":
            return
        # A new episode starts from scratch, as an offline evaluation does: top mode, no history.
        self._precision.reset()
        self._guard.reset()
        self._watchdog.reset()
        self._holding = False
        threshold, why = self._threshold_for(self._params.values, math.nan)  # no motion yet, as offline
        self._publish_config(self._precision.mode, threshold, f"episode start; {why}", stamp_ns)

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

    def _on_action(self, msg: VlaAction) -> None:
        p = self._params.values
        now_ns = self.get_clock().now().nanoseconds
        now_s = now_ns * 1e-9
        self._counts["actions"] += 1
        stale = self._image_age_problem(p, now_ns, convert.stamp_to_ns(msg.image_stamp))
        # The guard is not asked about a stale action: an accepted check moves its gripper memory.
        verdict = None if stale else self._guard.check(np.asarray(msg.action, dtype=np.float64))
        if verdict is None or not verdict.ok or verdict.action is None:
            self._counts["refused"] += 1
            self._health.report(WARN, "action refused", stale or (verdict.reason if verdict else ""))
            self._publish_markers(None, msg, "refused", now_ns)
            return
        if now_s - self._last_command_s < 1.0 / p.max_rate_hz:
            self._counts["rate_limited"] += 1
            self._health.report(WARN, "rate limited", f"actions faster than max_rate_hz {p.max_rate_hz:g}")
            return
        self._last_command_s = now_s
        self._watchdog.kick(now_s)
        self._watchdog_timer.reset()  # checks fall at T/4, T/2, ... after this action: the first hold at T
        if self._holding:
            self._holding = False
            self.get_logger().info("actions are back: holding ended")
        safe = convert.with_action(msg, verdict.action, now_ns)
        self._safe_pub.publish(safe)
        if not p.dry_run:
            self._command(verdict.action, safe, now_ns)
        self._rate.tick()
        if verdict.clipped:
            self._health.report(WARN, "action clipped", verdict.reason)
        self._health.set_state(OK, "dry run: not commanding the arm" if p.dry_run else "commanding the arm")
        latency_ms = (now_ns - convert.stamp_to_ns(msg.image_stamp)) * 1e-6
        self._health.set_values(
            action_rate_hz=self._rate.rate(),
            camera_to_command_ms=latency_ms,
            inference_ms=msg.total_ms,
            dry_run=p.dry_run,
            **self._counts,
        )
        self._publish_markers(verdict.action, msg, "dry run" if p.dry_run else "live", now_ns)

    @staticmethod
    def _image_age_problem(p: ControllerParams, now_ns: int, image_stamp_ns: int) -> str | None:
        """An action is as old as its camera image: older than the watchdog period it is not fresh (e.g. one
        delivered late by a link that came back), and an image from the future means a broken clock."""
        age_s = (now_ns - image_stamp_ns) * 1e-9
        if age_s > p.watchdog_timeout_s:
            return f"hold: its image is {age_s:.3f} s old (watchdog_timeout_s {p.watchdog_timeout_s:g})"
        if age_s < -p.watchdog_timeout_s:
            return f"hold: its image is stamped {-age_s:.3f} s in the future"
        return None

    def _command(self, action: np.ndarray, safe: VlaAction, now_ns: int) -> None:
        p = self._params.values
        if p.output_type == "twist":
            self._arm_pub.publish(
                convert.twist_from_action(
                    action, p.twist_linear_scale, p.twist_angular_scale, now_ns, p.twist_frame_id
                )
            )
        else:
            self._arm_pub.publish(safe)
        self._counts["commands"] += 1

    def _on_watchdog_timer(self) -> None:
        p = self._params.values
        now_ns = self.get_clock().now().nanoseconds
        now_s = now_ns * 1e-9
        if self._watchdog.last_kick is None or not self._watchdog.expired(now_s):
            return
        self._holding = True
        self._health.set_state(ERROR, f"no fresh action within {p.watchdog_timeout_s:g} s: holding")
        self._health.set_values(action_age_s=self._watchdog.age(now_s))
        if now_s - self._last_hold_s < p.watchdog_timeout_s:
            return
        self._last_hold_s = now_s
        hold = self._guard.hold()
        self._counts["holds"] += 1
        if not p.dry_run:
            msg = VlaAction(
                header=convert.header(now_ns),
                action=[float(v) for v in hold],
                fallback=True,
                fallback_reason="watchdog hold",
            )
            self._command(hold, msg, now_ns)
        self._health.set_values(**self._counts)

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
