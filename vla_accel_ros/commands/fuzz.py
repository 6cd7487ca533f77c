"""`vla-accel fuzz`: malformed and extreme messages into every subscription callback of every node.

The four nodes (the inference node twice: raw and compressed images; the controller twice: VlaAction and
Twist output; the simulated arm twice, with a stand-in arm) run in this process, each in a namespace of
its own. The generator of vla_accel_ros.evaluation.fuzzing makes the messages; each is serialized and
deserialized (what a subscription gets over DDS) and handed to the subscription's callback directly, in
the executor's thread, as rclpy would. Recording spies replace the publishers that lead to an arm: the
inference node's actions (forwarded to the controller, as over DDS), the controllers' arm commands and
the stand-in arm's steps.

Order: good data first (each node acts once); then only bad data for 80 % of `--messages` (any action, arm
command or arm step then comes from bad data, except watchdog holds); then, for the other 20 %, one bad
camera frame or joint state among fresh good inputs, each followed by an inference step that must publish
nothing; then good data again: each node must act on it (responsive). The result goes to
docs/RELIABILITY.md and docs/results/reliability_fuzz.json.

DDS stays on this machine: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random ROS_DOMAIN_ID are set.

    vla-accel fuzz                       # 10,000 messages, written to docs/
    vla-accel fuzz --messages 300 --no-write
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = "Feed >= 10,000 malformed messages into every node's callbacks: crashes, commands from bad data"

REPO = Path(__file__).resolve().parents[2]
INSTRUCTION = "reach the red goal"
CLIPPED = "huge finite action clipped to the limits (SafetyGuard clips; the arm clips)"
HOLD_CONVENTION = "sim arm step on image_stamp 0, a command tied to no image (the controller's holds)"
MIXED_SHARE = 0.2  # of the messages: one bad input among good ones, then a step


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--messages", type=int, default=10_000, help="bad messages in all (default 10000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--model", default=None, help="checkpoint (default: built-in, else a random stand-in)"
    )
    parser.add_argument("--json", type=Path, default=REPO / "docs" / "results" / "reliability_fuzz.json")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    parser.add_argument("--no-write", action="store_true", help="print the report only")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.evaluation.fuzzing import write_doc_section

    if args.messages < 1:
        print("error: --messages must be >= 1", file=sys.stderr)
        return 2
    report = run_fuzz(args.messages, args.seed, args.model, log=lambda s: print(s, flush=True))
    text = report.markdown()
    print(text)
    if not args.no_write:
        data = {
            **report.to_dict(),
            "command": f"vla-accel fuzz --messages {args.messages} --seed {args.seed}",
        }
        data["machine"] = machine_note()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        body = (
            f"`vla-accel fuzz --messages {args.messages} --seed {args.seed}` ({machine_note()}).\n"
            "Every message carries a defect; see vla_accel_ros/evaluation/fuzzing.py for the catalogue.\n\n"
            + text
        )
        write_doc_section(args.doc, "fuzz", "Bad data (fuzz)", body)
        print(f"wrote {args.json} and {args.doc}")
    return 0 if report.ok else 1


def machine_note() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPU cores shared with other work, load average {load:.1f} at the end"


# --- the driver ---------------------------------------------------------------------------------------


class Spy:
    """Stands in for a publisher: records what a node publishes (and still publishes it)."""

    def __init__(self, real: Any, forward: Callable[[Any], None] | None = None) -> None:
        self.real = real
        self.forward = forward
        self.msgs: list[Any] = []

    def publish(self, msg: Any) -> None:
        self.msgs.append(msg)
        self.real.publish(msg)
        if self.forward is not None:
            self.forward(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class StandInArm:
    """The simulated arm's interface without MuJoCo: records each step."""

    action_dim = 4
    instruction = INSTRUCTION

    def __init__(self, *_: Any) -> None:
        import numpy as np

        self._np = np
        self.steps = 0
        self.success = False
        self.actions: list[Any] = []

    def reset(self, seed: int) -> Any:
        self.steps = 0
        return self._obs()

    def step(self, action: Any) -> Any:
        self.actions.append(self._np.array(action))
        self.steps += 1
        return self._obs()

    @property
    def done(self) -> bool:
        return False

    def _obs(self) -> Any:
        from types import SimpleNamespace

        np = self._np
        img = np.zeros((16, 16, 3), dtype=np.uint8)
        return SimpleNamespace(
            images={"corner": img, "wrist": img},
            joint_names=[f"joint_{i}" for i in range(9)],
            joint_positions=np.zeros(9),
            joint_velocities=np.zeros(9),
            success=False,
        )


@dataclass
class Target:
    name: str
    node: Any
    spies: dict[str, Spy] = field(default_factory=dict)
    arm: StandInArm | None = None


def _params(**values: Any) -> list:
    from rclpy.parameter import Parameter

    return [Parameter(k, value=v) for k, v in values.items()]


def _build(context: Any, model: str) -> tuple[list[Target], list[Any]]:
    """The nodes under test, with spies; returns (targets, forwarding queue of inference actions)."""
    from vla_accel_ros.ros.controller_node import ControllerNode
    from vla_accel_ros.ros.inference_node import InferenceNode, load_policy
    from vla_accel_ros.ros.kinematics_node import KinematicsNode
    from vla_accel_ros.ros.sim_arm_node import SimArmNode

    forwarded: list[Any] = []
    inference = dict(
        model_path=model,
        num_threads=1,
        trigger="timer",
        control_rate_hz=20.0,
        max_image_age_s=0.3,
        max_state_age_s=0.3,
    )
    controller = dict(dry_run=False, watchdog_timeout_s=0.5, max_rate_hz=1000.0, decoding="kerv")
    targets = []
    for name, transport in (("inference_raw", "raw"), ("inference_compressed", "compressed")):
        node = InferenceNode(
            policy_loader=load_policy,
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(image_transport=transport, **inference),
        )
        target = Target(name, node)
        target.spies["actions"] = node._action_pub = Spy(node._action_pub, forwarded.append)
        targets.append(target)
    node = KinematicsNode(context=context, namespace="/fuzz/kinematics")
    target = Target("kinematics", node)
    target.spies["state"] = node._state_pub = Spy(node._state_pub)
    target.spies["prediction"] = node._prediction_pub = Spy(node._prediction_pub)
    targets.append(target)
    for name, output in (("controller", "vla_action"), ("controller_twist", "twist")):
        node = ControllerNode(
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(output_type=output, **controller),
        )
        target = Target(name, node)
        target.spies["arm"] = node._arm_pub = Spy(node._arm_pub)
        target.spies["config"] = node._config_pub = Spy(node._config_pub)
        targets.append(target)
    for name, command in (("sim_arm", "vla_action"), ("sim_arm_twist", "twist")):
        arms: list[StandInArm] = []

        def factory(*a: Any, _arms: list = arms) -> StandInArm:
            _arms.append(StandInArm(*a))
            return _arms[-1]

        node = SimArmNode(
            arm_factory=factory,
            context=context,
            namespace=f"/fuzz/{name}",
            parameter_overrides=_params(command_type=command, image_size=16, hold_timeout_s=600.0),
        )
        targets.append(Target(name, node, arm=arms[0]))
    return targets, forwarded


def _is_hold(msg: Any) -> bool:
    if hasattr(msg, "twist"):
        t = msg.twist
        return all(
            v == 0.0 for v in (t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z)
        )
    holds = ("watchdog hold", "safety hold")  # the controller's holds: after a timeout, after a refusal
    return msg.fallback_reason in holds and all(v == 0.0 for v in list(msg.action)[:-1])


def _within_limits(msg: Any) -> bool:
    if hasattr(msg, "twist"):
        lin = msg.twist.linear
        return all(math.isfinite(v) and abs(v) <= 0.1 + 1e-6 for v in (lin.x, lin.y, lin.z))
    return all(math.isfinite(v) and abs(v) <= 1.0 + 1e-6 for v in msg.action)


class Driver:
    def __init__(
        self, context: Any, executor: Any, targets: list[Target], forwarded: list, report: Any
    ) -> None:
        self.context, self.executor, self.targets = context, executor, targets
        self.forwarded, self.report = forwarded, report
        self.by_name = {t.name: t for t in targets}
        self.in_window = False
        self.attributed: dict[str, int] = {}

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
            self.call(controller, "vla/action_raw", controller.node._on_action, msg, "forwarded")

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
        from vla_accel_ros.evaluation.fuzzing import png
        from vla_accel_ros.ros import convert

        node = target.node
        now = self.now_ns()
        p = node._params.values
        for cam in p.camera_names:
            if cam == skip:
                continue
            if p.image_transport == "compressed":
                from sensor_msgs.msg import CompressedImage

                msg = CompressedImage(header=convert.header(now), format="png", data=png(16, 16))
            else:
                import numpy as np

                msg = convert.numpy_to_image(np.full((16, 16, 3), 90, dtype=np.uint8), now, cam)
            node._on_image(cam, msg)
        if skip != "joints":
            positions = [0.01 * i for i in range(9)]
            js = convert.arrays_to_joint_state([f"joint_{i}" for i in range(9)], positions, None, now)
            node._on_joint_state(js)

    def act_on_good_data(
        self, target: Target, timeout_s: float = 60.0, config: Any = None, want: Callable[[Any], bool] = bool
    ) -> Any:
        """Feed good inputs until the inference node publishes an action `want` accepts; it, or None."""
        from std_msgs.msg import String

        spy = target.spies["actions"]
        start = len(spy.msgs)
        target.node._on_instruction(String(data=INSTRUCTION))
        if config is not None:
            target.node._on_config(config)

        def found() -> Any:
            return next((m for m in spy.msgs[start:] if want(m)), None)

        self.spin_until(lambda: found() is not None, timeout_s, lambda: self.good_inputs(target))
        return found()

    def good_action(self, stamp_ns: int) -> Any:
        from vla_accel_ros.msg import VlaAction
        from vla_accel_ros.ros import convert

        msg = VlaAction(
            header=convert.header(stamp_ns), image_stamp=convert.ns_to_stamp(stamp_ns - 1_000_000)
        )
        msg.action = [0.1, 0.0, -0.1, 0.5]
        msg.precision, msg.decoding = "fp32", "ar"
        return msg

    def warm_up(self) -> None:
        for name in ("inference_raw", "inference_compressed"):
            if self.act_on_good_data(self.by_name[name]) is None:
                raise RuntimeError(
                    f"{name} never acted on good data: {self.by_name[name].node._health.status()}"
                )
        self.pump()
        arm = self.by_name["controller"].spies["arm"]
        if not any(not _is_hold(m) for m in arm.msgs):
            raise RuntimeError("the controller never commanded the arm on good data")
        self.by_name["controller_twist"].node._on_action(self.good_action(self.now_ns()))
        kinematics = self.by_name["kinematics"]
        if (
            not self._kinematics_responsive(kinematics)
            or not kinematics.spies["state"].msgs[-1].joint_velocity
        ):
            raise RuntimeError("the kinematics node never published a state on good data")
        # Let every good input go stale before the bad data starts.
        inference = [self.by_name[n].node for n in ("inference_raw", "inference_compressed")]
        self.spin_until(lambda: False, 0.5)
        self.spin_until(
            lambda: all(not n._worker._busy and not n._worker._requested for n in inference), 10.0
        )

    # -- bad data ----------------------------------------------------------------------------------------
    def window(self, n: int, gen: Any) -> None:
        from rclpy.serialization import deserialize_message, serialize_message

        pairs = [(t, s) for t in self.targets for s in t.node.subscriptions if gen.knows(s.msg_type)]
        inference = ("inference_raw", "inference_compressed")
        controllers = ("controller", "controller_twist")
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
        self.spin_until(lambda: False, 0.3)
        for k, start in zip(inference, actions_start, strict=True):
            for msg in self.by_name[k].spies["actions"].msgs[start:]:
                self.report.commands_from_bad_data.append(f"{k} published an action: {list(msg.action)}")
        for k, start in zip(controllers, arm_start, strict=True):
            window = self.by_name[k].spies["arm"].msgs[start:]
            holds = sum(_is_hold(m) for m in window)
            self.report.holds_in_window += holds
            for _ in range(len(window) - holds - self.attributed[k]):
                self.report.commands_from_bad_data.append(f"{k} commanded the arm outside a fuzzed callback")
        self.in_window = False
        for name in ("controller", "controller_twist"):
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
        from rclpy.serialization import deserialize_message, serialize_message
        from sensor_msgs.msg import CompressedImage, Image, JointState

        from vla_accel_ros.ros.inference_node import Skip

        names = ("inference_raw", "inference_compressed")
        starts = [len(self.by_name[k].spies["actions"].msgs) for k in names]
        rng = random.Random(gen.rng.random())
        for i in range(n):
            target = self.by_name[rng.choice(names)]
            node = target.node
            p = node._params.values
            bad = rng.choice([*p.camera_names, "joints"])
            with node._lock:  # the previous step's inputs are gone, as if stale
                node._images, node._joints = {}, None
            self.good_inputs(target, skip=bad)
            if bad == "joints":
                cls: Any = JointState
            else:
                cls = CompressedImage if p.image_transport == "compressed" else Image
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
            if bad == "joints":
                self.call(target, topic, node._on_joint_state, msg, case.label)
            else:
                self.call(target, topic, functools.partial(node._on_image, bad), msg, case.label)
            try:
                out = node._infer()
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
        self.spin_until(lambda: False, 0.3)
        for k, start in zip(names, starts, strict=True):
            for msg in self.by_name[k].spies["actions"].msgs[start:]:
                self.report.commands_from_bad_data.append(f"{k} published an action: {list(msg.action)}")
            with self.by_name[k].node._lock:
                self.by_name[k].node._images, self.by_name[k].node._joints = {}, None

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
            for msg in target.spies["arm"].msgs[before:]:
                if _is_hold(msg):
                    continue  # a watchdog hold that fell due during the call: counted at the end
                self.attributed[target.name] += 1
                if case.must_refuse or not _within_limits(msg):
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
        from vla_accel_ros.ros import convert

        first = self.act_on_good_data(target, 30.0)
        if first is None:
            return False
        unknown = convert.accel_config_msg("no-such-mode", "ar", 0.0, "fuzz check", self.now_ns())
        flagged = self.act_on_good_data(
            target, 30.0, config=unknown, want=lambda m: m.fallback and "no-such-mode" in m.fallback_reason
        )
        return flagged is not None

    def _controller_responsive(self, target: Target) -> bool:
        from vla_accel_ros.msg import KinematicState
        from vla_accel_ros.ros import convert

        arm, config = target.spies["arm"], target.spies["config"]
        n_arm, n_config = len(arm.msgs), len(config.msgs)
        now = self.now_ns()
        target.node._on_kinematics(
            KinematicState(header=convert.header(now), sensitivity=0.2, fluctuation=0.3)
        )
        # Good actions until one passes (one right after a forwarded action may meet the rate limit).
        moved = self.spin_until(
            lambda: any(not _is_hold(m) for m in arm.msgs[n_arm:]),
            5.0,
            lambda: target.node._on_action(self.good_action(self.now_ns())),
        )
        return moved and len(config.msgs) > n_config and math.isfinite(config.msgs[-1].threshold)

    def _kinematics_responsive(self, target: Target) -> bool:
        from vla_accel_ros.msg import VlaAction
        from vla_accel_ros.ros import convert

        state = target.spies["state"]
        n = len(state.msgs)
        now = self.now_ns()
        names = [f"joint_{i}" for i in range(9)]
        for k in range(3):
            js = convert.arrays_to_joint_state(names, [0.01 * k] * 9, None, now + k * 10**7)
            target.node._on_joint_state(js)
        target.node._on_executed(
            VlaAction(header=convert.header(now + 3 * 10**7), action=[0.1, 0.0, 0.0, 0.5])
        )
        if len(state.msgs) <= n:
            return False
        last = state.msgs[-1]
        if len(last.joint_velocity) != 9 and self.report.messages:
            # After an episode start the node takes the first joint set it gets as the arm's (it cannot
            # know the arm); a malformed set that comes first stays until the next start.
            names = target.node._joint_names or []
            self.report.notes.append(
                f"kinematics: joint derivatives follow a {len(names)}-joint set that arrived first after a "
                "fuzzed episode start (the node keeps the first joint set after a reset)"
            )
        values = [last.translation_speed, last.angular_jerk, last.motion_fineness, last.sensitivity]
        return all(math.isfinite(v) for v in values)

    def _sim_arm_responsive(self, target: Target) -> bool:
        from vla_accel_ros.ros import convert

        assert target.arm is not None
        steps = len(target.arm.actions)
        if target.node._params.values.command_type == "vla_action":
            msg = self.good_action(self.now_ns())
            msg.image_stamp = convert.ns_to_stamp(target.node._obs_stamp_ns)
            target.node._on_action(msg)
        else:
            target.node._on_twist(
                convert.twist_from_action([0.5, 0.0, 0.0, 1.0], 0.1, 0.5, self.now_ns(), "")
            )
        return len(target.arm.actions) == steps + 1


def run_fuzz(
    messages: int, seed: int = 0, model: str | None = None, log: Callable[[str], None] = print
) -> Any:
    """Run the fuzz in this process; returns the FuzzReport."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain = int(
        os.environ.get("VLA_ACCEL_FUZZ_DOMAIN", random.Random(os.getpid() ^ seed).randrange(100, 230))
    )
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from vla_accel_ros.evaluation.fuzzing import BadMessages, FuzzReport, stand_in_checkpoint
    from vla_accel_ros.policy.checkpoint import BUILTIN

    report = FuzzReport(seed=seed)
    with tempfile.TemporaryDirectory(prefix="vla-fuzz-") as tmp:
        if model is None:
            if (BUILTIN / "config.json").is_file():
                model = "builtin"
            else:
                model = str(stand_in_checkpoint(Path(tmp) / "stand_in", seed))
                report.notes.append(
                    "no built-in model yet: a random stand-in checkpoint of the same interface"
                )
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor(context=context)
        targets: list[Target] = []
        try:
            targets, forwarded = _build(context, model)
            for t in targets:
                executor.add_node(t.node)
            driver = Driver(context, executor, targets, forwarded, report)
            log(f"[fuzz] {len(targets)} nodes, model {model}; warming up on good data")
            driver.warm_up()
            gen = BadMessages(seed, driver.now_ns)
            log(f"[fuzz] {messages} bad messages")
            t0 = time.monotonic()
            mixed = int(messages * MIXED_SHARE)
            driver.window(messages - mixed, gen)
            driver.mixed(mixed, gen)
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
