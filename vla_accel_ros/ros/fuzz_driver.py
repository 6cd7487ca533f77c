"""The fuzz of `vla-accel fuzz`: malformed and extreme messages into every subscription callback of every
node, run in this process.

The nodes (vla_accel_ros.ros.fuzz_targets) each run in a namespace of their own. The generator of
vla_accel_ros.evaluation.fuzzing makes the messages; each is serialized and deserialized (what a
subscription gets over DDS) and handed to the subscription's callback directly, in the executor's
thread, as rclpy would. Recording spies sit on the publishers that lead to an arm: the inference node's
actions (forwarded to the controller, as over DDS), the controllers' arm commands and the stand-in
arm's steps.

Order: good data first (each node acts once); then only bad data for 75 % of the messages (any action,
arm command or arm step then comes from bad data, except watchdog holds); then, for 20 %, one bad camera
frame or joint state among fresh good inputs, each followed by an inference step that must publish
nothing; for 5 %, the controllers' own inputs (joint_states, ee_pose) among good ones
(vla_accel_ros.ros.fuzz_controller_inputs); then good data again: each node must act on it (responsive).

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random ROS_DOMAIN_ID are set.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.serialization import deserialize_message, serialize_message
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from vla_accel_ros.evaluation.fuzz_report import CLIPPED, HOLD_CONVENTION, FuzzReport, is_hold, within_limits
from vla_accel_ros.evaluation.fuzzing import JOINT_GUARD_DEFECTS, BadMessages, png
from vla_accel_ros.evaluation.reliability import resolve_model
from vla_accel_ros.msg import KinematicState, VlaAction
from vla_accel_ros.params import InferenceParams
from vla_accel_ros.ros import convert
from vla_accel_ros.ros.fuzz_controller_inputs import action, good_input, mixed_controller_inputs
from vla_accel_ros.ros.fuzz_targets import INSTRUCTION, Target, build_targets, callback_of, joint_reference
from vla_accel_ros.ros.inference_node import Skip

MIXED_SHARE = 0.2  # of the messages: one bad input among good ones, then a step
CONTROLLER_MIXED_SHARE = 0.05  # of the messages: a bad joint_states / ee_pose, then an action to refuse
CONTROLLERS = ("controller", "controller_twist", "controller_joints", "controller_box")


def camera_topic(p: InferenceParams, camera: str) -> str:
    """The inference node's subscription topic for `camera` (with /compressed on that transport)."""
    topic = p.camera_topics[list(p.camera_names).index(camera)]
    return f"{topic}/compressed" if p.image_transport == "compressed" else topic


class Driver:
    """Feeds the targets good and bad data and tallies what reaches an arm into the report."""

    def __init__(
        self, context: Any, executor: Any, targets: list[Target], forwarded: list, report: Any
    ) -> None:
        self.context, self.executor, self.targets = context, executor, targets
        self.forwarded, self.report = forwarded, report
        self.by_name = {t.name: t for t in targets}
        self.in_window = False
        self.attributed: dict[str, int] = {}
        self.joints = joint_reference()  # what the joint_trajectory controller may command

    def reference(self, target: Target) -> Any:
        """The joint reference of the joint_trajectory controller (None for the other targets)."""
        return self.joints if target.name == "controller_joints" else None

    def now_ns(self) -> int:
        return self.targets[0].node.get_clock().now().nanoseconds

    def pump(self, rounds: int = 5) -> None:
        """Run due timers and callbacks; hand forwarded inference actions to the controller."""
        for _ in range(rounds):
            try:
                self.executor.spin_once(timeout_sec=0.0)
            except Exception as err:  # a timer callback raised: the node would have died
                self.report.crash("executor", "timer", "window" if self.in_window else "setup", err)
        controller = self.by_name["controller"]
        while self.forwarded:
            msg = self.forwarded.pop(0)
            self.call(
                controller, "vla/action_raw", callback_of(controller.node, "vla/action_raw"), msg, "forwarded"
            )

    def call(self, target: Target, topic: str, callback: Callable[[Any], None], msg: Any, label: str) -> bool:
        try:
            callback(msg)
        except Exception as err:
            self.report.crash(target.name, topic, label, err)
            return False
        return True

    def spin_until(
        self, cond: Callable[[], bool], timeout_s: float, feed: Callable[[], None] | None = None
    ) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if feed is not None:
                feed()
            self.pump()
            if cond():
                return True
            time.sleep(0.02)
        return cond()

    # -- good data ---------------------------------------------------------------------------------------
    def good_inputs(self, target: Target, skip: str = "") -> None:
        """Fresh good frames from every camera and a joint state, except the input named `skip`."""
        node = target.node
        now = self.now_ns()
        p = node.params
        for cam in p.camera_names:
            if cam == skip:
                continue
            if p.image_transport == "compressed":
                msg = CompressedImage(header=convert.header(now), format="png", data=png(16, 16))
            else:
                msg = convert.numpy_to_image(np.full((16, 16, 3), 90, dtype=np.uint8), now, cam)
            callback_of(node, camera_topic(p, cam))(msg)
        if skip != "joints":
            positions = [0.01 * i for i in range(9)]
            js = convert.arrays_to_joint_state([f"joint_{i}" for i in range(9)], positions, None, now)
            callback_of(node, "joint_states")(js)

    def act_on_good_data(
        self, target: Target, timeout_s: float = 60.0, config: Any = None, want: Callable[[Any], bool] = bool
    ) -> Any:
        """Feed good inputs until the inference node publishes an action `want` accepts; it, or None."""
        spy = target.spies["actions"]
        start = len(spy.msgs)
        callback_of(target.node, "instruction")(String(data=INSTRUCTION))
        if config is not None:
            callback_of(target.node, "vla/accel_config")(config)

        def found() -> Any:
            return next((m for m in spy.msgs[start:] if want(m)), None)

        self.spin_until(lambda: found() is not None, timeout_s, lambda: self.good_inputs(target))
        return found()

    def good_action(self, stamp_ns: int) -> VlaAction:
        """A good action every controller passes on its good inputs (inward: first dim negative)."""
        return action(stamp_ns, -0.1)

    def warm_up(self) -> None:
        for name in ("inference_raw", "inference_compressed"):
            if self.act_on_good_data(self.by_name[name]) is None:
                raise RuntimeError(
                    f"{name} never acted on good data: {self.by_name[name].node.health_status()}"
                )
        self.pump()
        arm = self.by_name["controller"].spies["arm"]
        if not any(not is_hold(m) for m in arm.msgs):
            raise RuntimeError("the controller never commanded the arm on good data")
        twist = self.by_name["controller_twist"].node
        callback_of(twist, "vla/action_raw")(self.good_action(self.now_ns()))
        for name in ("controller_joints", "controller_box"):
            if not self._controller_moves(self.by_name[name]):
                raise RuntimeError(f"{name} never commanded the arm on good data")
        kinematics = self.by_name["kinematics"]
        if (
            not self._kinematics_responsive(kinematics)
            or not kinematics.spies["state"].msgs[-1].joint_velocity
        ):
            raise RuntimeError("the kinematics node never published a state on good data")
        # Let every good input go stale before the bad data starts.
        inference = [self.by_name[n].node for n in ("inference_raw", "inference_compressed")]
        self.spin_until(lambda: False, 0.5)
        self.spin_until(lambda: all(n.idle for n in inference), 10.0)

    # -- bad data ----------------------------------------------------------------------------------------
    def window(self, n: int, gen: Any) -> None:
        pairs = [(t, s) for t in self.targets for s in t.node.subscriptions if gen.knows(s.msg_type)]
        inference = ("inference_raw", "inference_compressed")
        controllers = CONTROLLERS
        actions_start = [len(self.by_name[k].spies["actions"].msgs) for k in inference]
        arm_start = [len(self.by_name[k].spies["arm"].msgs) for k in controllers]
        self.attributed = dict.fromkeys(controllers, 0)
        self.in_window = True
        rng = random.Random(gen.rng.random())
        for i in range(n):
            target, sub = rng.choice(pairs)
            topic = sub.topic_name
            case = gen.make(sub.msg_type, topic)
            try:
                msg = deserialize_message(serialize_message(case.msg), sub.msg_type)
            except Exception:
                self.report.unsendable += 1
                continue
            self.report.messages += 1
            self.report.per_topic[f"{target.name} {topic}"] += 1
            self.report.per_label[case.label] += 1
            before = self._arm_state(target)
            self.call(target, topic, sub.callback, msg, case.label)
            self._check_arm(target, before, case)
            if i % 10 == 0:
                self.pump(rounds=3)
        self._report_late_actions(inference, actions_start)
        for k, start in zip(controllers, arm_start, strict=True):
            window = self.by_name[k].spies["arm"].msgs[start:]
            holds = sum(is_hold(m, self.reference(self.by_name[k])) for m in window)
            self.report.holds_in_window += holds
            for _ in range(len(window) - holds - self.attributed[k]):
                self.report.commands_from_bad_data.append(f"{k} commanded the arm outside a fuzzed callback")
        self.in_window = False
        for name in CONTROLLERS:
            for msg in self.by_name[name].spies["config"].msgs:
                if not math.isfinite(msg.threshold):
                    self.report.non_finite_outputs.append(f"{name} AccelConfig threshold {msg.threshold}")
        for msg in self.by_name["kinematics"].spies["state"].msgs:
            values = [
                msg.translation_speed,
                msg.angular_jerk,
                msg.motion_fineness,
                msg.sensitivity,
                msg.fluctuation,
            ]
            if not all(math.isfinite(v) for v in values):
                self.report.non_finite_outputs.append(f"kinematics KinematicState {values}")

    def mixed(self, n: int, gen: Any) -> None:
        """One bad camera frame or joint state among fresh good inputs, then one inference step run
        directly: it must publish nothing (a refused input leaves its slot empty, so the step skips)."""
        names = ("inference_raw", "inference_compressed")
        starts = [len(self.by_name[k].spies["actions"].msgs) for k in names]
        rng = random.Random(gen.rng.random())
        for i in range(n):
            target = self.by_name[rng.choice(names)]
            node = target.node
            p = node.params
            bad = rng.choice([*p.camera_names, "joints"])
            node.forget_inputs()  # the previous step's inputs are gone, as if stale
            self.good_inputs(target, skip=bad)
            if bad == "joints":
                cls: Any = JointState
            else:
                cls = CompressedImage if p.image_transport == "compressed" else Image
            case = gen.make(cls)
            while not_a_defect_here(p, case):
                case = gen.make(cls)
            try:
                msg = deserialize_message(serialize_message(case.msg), cls)
            except Exception:
                self.report.unsendable += 1
                continue
            self.report.messages += 1
            self.report.mixed_steps += 1
            topic = "joint_states" if bad == "joints" else f"{bad} camera"
            self.report.per_topic[f"{target.name} {topic} (among good inputs)"] += 1
            self.report.per_label[case.label] += 1
            sub_topic = "joint_states" if bad == "joints" else camera_topic(p, bad)
            self.call(target, topic, callback_of(node, sub_topic), msg, case.label)
            try:
                out = node.infer()
            except Skip:
                out = None
            except Exception:
                self.report.worker_errors += 1
                out = None
            if out is not None:
                self.report.commands_from_bad_data.append(
                    f"{target.name} acted with a bad {topic}: {case.label}"
                )
            if i % 10 == 0:
                self.pump(rounds=3)
        self._report_late_actions(names, starts)
        for k in names:
            self.by_name[k].node.forget_inputs()

    def _report_late_actions(self, names: Sequence[str], starts: Sequence[int]) -> None:
        """Let in-flight callbacks finish, then count every action the inference targets `names` published
        since their spies held `starts` messages: on bad data an inference node must publish none."""
        self.spin_until(lambda: False, 0.3)
        for k, start in zip(names, starts, strict=True):
            for msg in self.by_name[k].spies["actions"].msgs[start:]:
                self.report.commands_from_bad_data.append(f"{k} published an action: {list(msg.action)}")

    def _arm_state(self, target: Target) -> int:
        if target.arm is not None:
            return len(target.arm.actions)
        if "arm" in target.spies:
            return len(target.spies["arm"].msgs)
        return 0

    def _check_arm(self, target: Target, before: int, case: Any) -> None:
        if target.arm is not None:
            for action in target.arm.actions[before:]:
                if case.label == "vla_action.image_zero_stamp":
                    self.report.passed_by_design[HOLD_CONVENTION] += 1
                elif case.must_refuse:
                    self.report.commands_from_bad_data.append(
                        f"{target.name} stepped on {case.label}: {action}"
                    )
                else:
                    self.report.passed_by_design[CLIPPED] += 1
        elif "arm" in target.spies:
            joints = self.reference(target)
            for msg in target.spies["arm"].msgs[before:]:
                if is_hold(msg, joints):
                    continue  # a watchdog hold that fell due during the call: counted at the end
                self.attributed[target.name] += 1
                if case.must_refuse or not within_limits(msg, joints):
                    self.report.commands_from_bad_data.append(f"{target.name} commanded on {case.label}")
                else:
                    self.report.passed_by_design[CLIPPED] += 1

    # -- good data again -----------------------------------------------------------------------------------
    def responsive(self) -> None:
        """Each node must act on good data after the bad data (an exception here is a crash too)."""
        for name, check in (
            ("inference_raw", self._inference_responsive),
            ("inference_compressed", self._inference_responsive),
            ("controller", self._controller_responsive),
            ("controller_twist", self._controller_responsive),
            ("controller_joints", self._controller_responsive),
            ("controller_box", self._controller_responsive),
            ("kinematics", self._kinematics_responsive),
            ("sim_arm", self._sim_arm_responsive),
            ("sim_arm_twist", self._sim_arm_responsive),
        ):
            try:
                self.report.responsive[name] = bool(check(self.by_name[name]))
            except Exception as err:
                self.report.crash(name, "(good data after the bad)", "responsive", err)
                self.report.responsive[name] = False

    def _inference_responsive(self, target: Target) -> bool:
        first = self.act_on_good_data(target, 30.0)
        if first is None:
            return False
        unknown = convert.accel_config_msg("no-such-mode", "ar", 0.0, "fuzz check", self.now_ns())
        flagged = self.act_on_good_data(
            target, 30.0, config=unknown, want=lambda m: m.fallback and "no-such-mode" in m.fallback_reason
        )
        return flagged is not None

    def _controller_responsive(self, target: Target) -> bool:
        config = target.spies["config"]
        n_config = len(config.msgs)
        now = self.now_ns()
        callback_of(target.node, "vla/kinematics")(
            KinematicState(header=convert.header(now), sensitivity=0.2, fluctuation=0.3)
        )
        moved = self._controller_moves(target)
        return moved and len(config.msgs) > n_config and math.isfinite(config.msgs[-1].threshold)

    def _controller_moves(self, target: Target) -> bool:
        """Good inputs and good actions until the controller sends a command that is no hold (one right
        after a forwarded action may meet the rate limit; joint states that jumped settle for a watchdog
        period); whether it did within 5 s."""
        arm = target.spies["arm"]
        n_arm = len(arm.msgs)
        on_action = callback_of(target.node, "vla/action_raw")

        def feed() -> None:
            good_input(target, self.now_ns())
            on_action(self.good_action(self.now_ns()))

        joints = self.reference(target)
        return self.spin_until(lambda: any(not is_hold(m, joints) for m in arm.msgs[n_arm:]), 5.0, feed)

    def _kinematics_responsive(self, target: Target) -> bool:
        state = target.spies["state"]
        n = len(state.msgs)
        now = self.now_ns()
        names = [f"joint_{i}" for i in range(9)]
        for k in range(3):
            js = convert.arrays_to_joint_state(names, [0.01 * k] * 9, None, now + k * 10**7)
            callback_of(target.node, "joint_states")(js)
        callback_of(target.node, "arm/executed_action")(
            VlaAction(header=convert.header(now + 3 * 10**7), action=[0.1, 0.0, 0.0, 0.5])
        )
        if len(state.msgs) <= n:
            return False
        last = state.msgs[-1]
        if len(last.joint_velocity) != 9 and self.report.messages:
            # After an episode start the node takes the first joint set it gets as the arm's (it cannot
            # know the arm); a malformed set that comes first stays until the next start.
            names = target.node.joint_names or []
            self.report.notes.append(
                f"kinematics: joint derivatives follow a {len(names)}-joint set that arrived first after a "
                "fuzzed episode start (the node keeps the first joint set after a reset)"
            )
        values = [last.translation_speed, last.angular_jerk, last.motion_fineness, last.sensitivity]
        return all(math.isfinite(v) for v in values)

    def _sim_arm_responsive(self, target: Target) -> bool:
        assert target.arm is not None
        steps = len(target.arm.actions)
        on_command = callback_of(target.node, "arm/command")
        if target.node.params.command_type == "vla_action":
            msg = self.good_action(self.now_ns())
            msg.image_stamp = convert.ns_to_stamp(target.node.observation_stamp_ns)
            on_command(msg)
        else:
            on_command(convert.twist_from_action([0.5, 0.0, 0.0, 1.0], 0.1, 0.5, self.now_ns(), ""))
        return len(target.arm.actions) == steps + 1


def not_a_defect_here(params: Any, case: Any) -> bool:
    """A named joint state of another length is no defect for a node reading its joints by name
    (state_joint_names: an arm and a gripper publish apart); physical ones are the joint guard's
    (mixed_controller_inputs). Neither may be counted as bad data among good inputs."""
    if case.label in JOINT_GUARD_DEFECTS:
        return True
    return bool(params.state_joint_names) and case.label == "joint_state.wrong_length" and bool(case.msg.name)


def run_fuzz(
    messages: int, seed: int = 0, model: str | None = None, log: Callable[[str], None] = print
) -> FuzzReport:
    """Run the fuzz in this process; returns the FuzzReport."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain = int(
        os.environ.get("VLA_ACCEL_FUZZ_DOMAIN", random.Random(os.getpid() ^ seed).randrange(100, 230))
    )
    report = FuzzReport(seed=seed)
    with tempfile.TemporaryDirectory(prefix="vla-fuzz-") as tmp:
        model, note = resolve_model(model, Path(tmp), seed)
        report.notes.append(note or f"model of the inference nodes: {model}")
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor(context=context)
        targets: list[Target] = []
        try:
            targets, forwarded = build_targets(context, model)
            for t in targets:
                executor.add_node(t.node)
            driver = Driver(context, executor, targets, forwarded, report)
            log(f"[fuzz] {len(targets)} nodes, model {model}; warming up on good data")
            driver.warm_up()
            gen = BadMessages(seed, driver.now_ns)
            log(f"[fuzz] {messages} bad messages")
            t0 = time.monotonic()
            mixed = int(messages * MIXED_SHARE)
            mixed_controllers = int(messages * CONTROLLER_MIXED_SHARE)
            driver.window(messages - mixed - mixed_controllers, gen)
            driver.mixed(mixed, gen)
            mixed_controller_inputs(driver, mixed_controllers, gen, driver.joints)
            report.duration_s = time.monotonic() - t0
            log("[fuzz] good data again")
            driver.responsive()
        finally:
            for t in targets:
                executor.remove_node(t.node)
                t.node.destroy_node()
            executor.shutdown()
            context.try_shutdown()
    return report
