"""`vla-accel soak`: the robot graph under sensor load, and an accelerated soak in sim time.

The three nodes (inference with the built-in model or a random stand-in, kinematics, controller with
dry_run off) run as separate processes, started as `vla-accel up` starts them. This process is the robot:
it publishes both cameras and the joint states, plays the arm (each command comes back as an executed
action for the kinematics node) and listens to /diagnostics, where the nodes count what they received.

- load: real time, cameras at 60 Hz and joint states at 500 Hz: messages dropped per subscriber
  (published - received), the control rate, the QoS history and depth of every endpoint, RSS.
- soak: use_sim_time on the nodes and /clock from here, running faster than wall time; >= 30 minutes of
  simulated operation: RSS of each node over time (slope in MB per simulated hour) and the camera ->
  arm command latency per window (wall clock, so the speed-up does not inflate it).

DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random ROS_DOMAIN_ID). Results go to
docs/RELIABILITY.md and docs/results/reliability_{load,soak}.json.

    vla-accel soak                                 # load 60 s, then soak 30 simulated minutes
    vla-accel soak --mode load --load-seconds 10 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HELP = "Sensor load (60 Hz cameras, 500 Hz joints) and an accelerated soak: drops, rate, memory, latency"

REPO = Path(__file__).resolve().parents[2]
NODES = ("inference_node", "kinematics_node", "controller_node")
INSTRUCTION = "reach the red goal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("load", "soak", "both"), default="both")
    parser.add_argument("--load-seconds", type=float, default=60.0, help="measured load time (wall)")
    parser.add_argument("--camera-hz", type=float, default=60.0, help="load: camera rate")
    parser.add_argument("--joint-hz", type=float, default=500.0, help="load: joint-state rate")
    parser.add_argument("--soak-minutes", type=float, default=30.0, help="soak: simulated minutes")
    parser.add_argument("--speedup", type=float, default=4.0, help="soak: simulated seconds per wall second")
    parser.add_argument("--soak-camera-hz", type=float, default=10.0, help="soak: camera rate (sim time)")
    parser.add_argument("--soak-joint-hz", type=float, default=50.0, help="soak: joint-state rate (sim time)")
    parser.add_argument("--control-hz", type=float, default=10.0, help="inference rate (timer trigger)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--model", default=None, help="checkpoint (default: built-in, else a random stand-in)"
    )
    parser.add_argument("--nice", type=int, default=10, help="niceness of this process and the nodes")
    parser.add_argument("--json-dir", type=Path, default=REPO / "docs" / "results")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "RELIABILITY.md")
    parser.add_argument("--no-write", action="store_true")


def run(args: argparse.Namespace) -> int:
    from vla_accel_ros.commands.fuzz import machine_note
    from vla_accel_ros.evaluation.fuzzing import stand_in_checkpoint, write_doc_section

    if args.nice:
        os.nice(args.nice)  # the nodes inherit it: a soak must not starve the machine's other work
    plans = []
    if args.mode in ("load", "both"):
        plans.append(
            Plan(
                "load",
                args.load_seconds,
                args.camera_hz,
                args.joint_hz,
                args.control_hz,
                1.0,
                args.image_size,
            )
        )
    if args.mode in ("soak", "both"):
        plans.append(
            Plan(
                "soak",
                args.soak_minutes * 60.0,
                args.soak_camera_hz,
                args.soak_joint_hz,
                args.control_hz,
                args.speedup,
                args.image_size,
            )
        )
    ok = True
    with tempfile.TemporaryDirectory(prefix="vla-soak-") as tmp:
        model, note = resolve_model(args.model, Path(tmp), stand_in_checkpoint)
        for plan in plans:
            report = run_plan(plan, model, log=lambda s: print(s, flush=True))
            if note:
                report.notes.append(note)
            report.notes.append(f"ran at niceness {args.nice} on a machine with {machine_note()}")
            text = report.markdown()
            print(text)
            ok = ok and report.bounded_queues() and report.commands > 0
            if not args.no_write:
                args.json_dir.mkdir(parents=True, exist_ok=True)
                path = args.json_dir / f"reliability_{plan.kind}.json"
                data = {**report.to_dict(), "command": " ".join(["vla-accel", *sys.argv[1:]])}
                path.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
                title = "Load (real time)" if plan.kind == "load" else "Soak (sim time, accelerated)"
                body = f"`vla-accel {' '.join(sys.argv[1:]) or 'soak'}`\n\n{plan.describe()}\n\n{text}"
                write_doc_section(args.doc, plan.kind, title, body)
                print(f"wrote {path} and {args.doc}")
    return 0 if ok else 1


def resolve_model(model: str | None, tmp: Path, make: Callable[[Path], Path]) -> tuple[str, str | None]:
    from vla_accel_ros.policy.checkpoint import BUILTIN

    if model is not None:
        return model, None
    if (BUILTIN / "config.json").is_file():
        return "builtin", None
    return str(
        make(tmp / "stand_in")
    ), "no built-in model yet: a random stand-in checkpoint of the same interface"


@dataclass
class Plan:
    kind: str  # "load" (real time) or "soak" (sim time)
    duration_s: float  # measured time after the first command, in the run's own time
    camera_hz: float
    joint_hz: float
    control_hz: float
    speedup: float  # 1.0 for load
    image_size: int = 64

    @property
    def sim_time(self) -> bool:
        return self.kind == "soak"

    @property
    def window_s(self) -> float:
        return max(self.duration_s / 10.0, 1.0)

    def describe(self) -> str:
        if self.sim_time:
            return (
                f"Simulated operation: {self.duration_s / 60:.0f} min at {self.speedup:g}x wall speed "
                f"(nodes on /clock), cameras {self.camera_hz:g} Hz and joint states {self.joint_hz:g} Hz "
                f"in sim time, inference {self.control_hz:g} Hz; {self.image_size}-pixel square images."
            )
        return (
            f"Real time: cameras (two) {self.camera_hz:g} Hz, joint states {self.joint_hz:g} Hz, inference "
            f"{self.control_hz:g} Hz, {self.duration_s:g} s measured after the first arm command; "
            f"{self.image_size} x {self.image_size} images."
        )


class Robot:
    """Camera, joint states, arm and diagnostics listener, on one rclpy node of this process."""

    def __init__(self, context: Any, plan: Plan) -> None:
        import numpy as np
        from builtin_interfaces.msg import Time
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String

        from vla_accel_ros.msg import VlaAction
        from vla_accel_ros.ros.qos import camera_qos, command_qos, instruction_qos, joint_states_qos, vla_qos

        self.plan = plan
        self._np, self._time, self._clock_cls, self._js_cls = np, Time, Clock, JointState
        self._img_cls, self._action_cls = Image, VlaAction
        self.node = Node("soak_robot", context=context)
        self.cams = [
            self.node.create_publisher(Image, "camera/image_raw", camera_qos()),
            self.node.create_publisher(Image, "wrist_camera/image_raw", camera_qos()),
        ]
        self.joints = self.node.create_publisher(JointState, "joint_states", joint_states_qos())
        self.instruction = self.node.create_publisher(String, "instruction", instruction_qos())
        self.instruction.publish(String(data=INSTRUCTION))
        self.executed = self.node.create_publisher(VlaAction, "arm/executed_action", vla_qos())
        self.clock = self.node.create_publisher(Clock, "/clock", QoSProfile(depth=1))
        self.node.create_subscription(VlaAction, "arm/command", self._on_command, command_qos())
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, reliable)
        self.lock = threading.Lock()
        self.sent_wall: dict[int, float] = {}  # image stamp -> wall (monotonic) time it was published
        self._sent_order: deque[int] = deque()
        self.published = {"camera frames": 0, "joint states": 0}
        self.published_at: list[tuple[int, int, int]] = []  # (stamp ns, frames, joint states)
        self.latencies: list[tuple[int, float]] = []  # (run-clock stamp ns at arrival, wall ms)
        self.commands: list[tuple[int, bool]] = []  # (stamp ns at arrival, is hold)
        self.diags: dict[str, list[tuple[int, dict[str, str]]]] = {}
        self.now_ns = 0  # the run's clock: sim time for a soak, else the node clock
        size = plan.image_size
        self._frame = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
        self._positions = np.linspace(-0.5, 0.5, 9)
        self._names = [f"joint_{i}" for i in range(9)]

    def stamp_ns(self) -> int:
        return self.now_ns if self.plan.sim_time else self.node.get_clock().now().nanoseconds

    def tick_clock(self, sim_ns: int) -> None:
        self.now_ns = sim_ns
        sec, nanosec = divmod(sim_ns, 1_000_000_000)
        self.clock.publish(self._clock_cls(clock=self._time(sec=sec, nanosec=nanosec)))

    def publish_joints(self) -> None:
        from vla_accel_ros.ros import convert

        stamp = self.stamp_ns()
        self._positions = self._positions + 1e-4
        self.joints.publish(convert.arrays_to_joint_state(self._names, self._positions, None, stamp))
        self.published["joint states"] += 1

    def publish_frames(self) -> None:
        from vla_accel_ros.ros import convert

        stamp = self.stamp_ns()
        with self.lock:
            self.sent_wall[stamp] = time.monotonic()
            self._sent_order.append(stamp)
            while len(self._sent_order) > 5000:
                self.sent_wall.pop(self._sent_order.popleft(), None)
        for pub, frame in zip(self.cams, ("corner", "wrist"), strict=True):
            pub.publish(convert.numpy_to_image(self._frame, stamp, frame))
        self.published["camera frames"] += 2

    def snapshot(self) -> None:
        self.published_at.append(
            (self.stamp_ns(), self.published["camera frames"], self.published["joint states"])
        )

    # -- callbacks (executor thread) ---------------------------------------------------------------------
    def _on_command(self, msg: Any) -> None:
        from vla_accel_ros.ros import convert

        now = self.stamp_ns()
        hold = msg.fallback_reason == "watchdog hold"
        self.commands.append((now, hold))
        if not hold:
            with self.lock:
                sent = self.sent_wall.get(convert.stamp_to_ns(msg.image_stamp))
            if sent is not None:
                self.latencies.append((now, (time.monotonic() - sent) * 1000.0))
        out = self._action_cls(header=convert.header(now), action=list(msg.action))
        self.executed.publish(out)

    def _on_diag(self, msg: Any) -> None:
        from vla_accel_ros.ros import convert

        for s in msg.status:
            name = s.name.rsplit("/", 1)[-1]
            values = {kv.key: kv.value for kv in s.values}
            self.diags.setdefault(name, []).append((convert.stamp_to_ns(msg.header.stamp), values))


def _published_before(robot: Robot, stamp: int) -> tuple[int, int] | None:
    best = None
    for t, frames, joints in robot.published_at:
        if t <= stamp:
            best = (frames, joints)
    return best


def _counts(robot: Robot, start_ns: int) -> list:
    """Received vs published per subscriber, between the first and last diagnostics after start_ns."""
    from vla_accel_ros.evaluation.soak import Counts

    wanted = {
        "inference_node": (
            ("received_frames", "camera frames", "camera/image_raw + wrist_camera/image_raw"),
            ("received_joint_states", "joint states", "joint_states"),
        ),
        "kinematics_node": (("received_joint_states", "joint states", "joint_states"),),
    }
    out = []
    for node, keys in wanted.items():
        for key, kind, topic in keys:
            samples = [(t, int(v[key])) for t, v in robot.diags.get(node, []) if t >= start_ns and key in v]
            if len(samples) < 2:
                continue
            (t0, r0), (t1, r1) = samples[0], samples[-1]
            p0, p1 = _published_before(robot, t0), _published_before(robot, t1)
            if p0 is None or p1 is None:
                continue
            idx = 0 if kind == "camera frames" else 1
            out.append(Counts(node, topic, p1[idx] - p0[idx], r1 - r0))
    return out


def local_endpoints(overrides: dict[str, dict[str, Any]], domain: int) -> list:
    """History, depth and reliability of every publisher and subscription of the three nodes, read from
    node objects built here with the run's parameters (DDS discovery does not carry history or depth)."""
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.qos import HistoryPolicy, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions

    from vla_accel_ros.evaluation.soak import Endpoint
    from vla_accel_ros.ros.controller_node import ControllerNode
    from vla_accel_ros.ros.inference_node import InferenceNode
    from vla_accel_ros.ros.kinematics_node import KinematicsNode

    def no_model(_p: Any) -> Any:
        raise RuntimeError("not loaded: this copy of the node only lists its QoS (vla-accel soak)")

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    out = []
    try:
        for cls, name in (
            (InferenceNode, "inference_node"),
            (KinematicsNode, "kinematics_node"),
            (ControllerNode, "controller_node"),
        ):
            params = [Parameter(k, value=v) for k, v in overrides.get(name, {}).items() if k != "model_path"]
            kwargs = {"policy_loader": no_model} if cls is InferenceNode else {}
            node = cls(context=context, namespace="/qos_census", parameter_overrides=params, **kwargs)
            for kind, endpoints in (("publisher", node.publishers), ("subscription", node.subscriptions)):
                for e in endpoints:
                    q = e.qos_profile
                    out.append(
                        Endpoint(
                            name,
                            e.topic_name.removeprefix("/qos_census"),
                            kind,
                            "KEEP_LAST" if q.history == HistoryPolicy.KEEP_LAST else q.history.name,
                            int(q.depth),
                            "reliable" if q.reliability == ReliabilityPolicy.RELIABLE else "best effort",
                        )
                    )
            node.destroy_node()
    finally:
        context.try_shutdown()
    return out


def run_plan(
    plan: Plan, model: str, log: Callable[[str], None] = print, ready_timeout_s: float = 300.0
) -> Any:
    """Start the graph, drive it for the plan, stop it; returns the RunReport."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain = int(os.environ.get("VLA_ACCEL_SOAK_DOMAIN", random.randrange(100, 230)))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from vla_accel_ros.evaluation.soak import RunReport, percentiles, rss_mb
    from vla_accel_ros.ros.launcher import Graph, GraphConfig, default_params_files

    settings = {**plan.__dict__, "control_hz": plan.control_hz, "model": model}
    report = RunReport(plan.kind, settings)
    cfg = GraphConfig(
        nodes=NODES,
        params_files=default_params_files(sim=False),
        overrides={
            "inference_node": {
                "model_path": model,
                "trigger": "timer",
                "control_rate_hz": plan.control_hz,
                "num_threads": 1,
            },
            "controller_node": {"dry_run": False, "max_rate_hz": 1000.0},
        },
        use_sim_time=plan.sim_time,
    )
    report.endpoints = local_endpoints(dict(cfg.overrides), domain)
    lines: list[str] = []
    graph = Graph(cfg, output=lines.append)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    robot = Robot(context, plan)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(robot.node)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: _spin(executor, stop), daemon=True)
    spinner.start()
    try:
        graph.launcher.start()
        pids = {name: proc.pid for name, proc in graph.launcher.procs.items()}
        log(f"[soak] {plan.kind}: nodes {pids}; waiting for the first arm command")
        sim_ns = 1_000 * 1_000_000_000  # sim time starts at 1000 s
        dt_ns = int(1e9 / plan.joint_hz)
        cam_dt_s = 1.0 / plan.camera_hz
        ticks, frames, start_ns, wall_start, next_rss = 0, 0, None, None, 0.0
        wall0 = time.monotonic()
        while True:
            if plan.sim_time:
                sim_ns += dt_ns
                robot.tick_clock(sim_ns)
            robot.publish_joints()
            if ticks * dt_ns * 1e-9 >= frames * cam_dt_s:  # cameras on their own period
                robot.publish_frames()
                frames += 1
            ticks += 1
            if start_ns is None:
                if any(not hold for _, hold in robot.commands):
                    start_ns, wall_start = robot.stamp_ns(), time.monotonic()
                    robot.snapshot()
                    log(f"[soak] first command after {wall_start - wall0:.1f} s; measuring")
                elif time.monotonic() - wall0 > ready_timeout_s:
                    raise RuntimeError("no arm command from the graph:\n" + "\n".join(lines[-30:]))
                elif graph.launcher.poll() is not None:
                    raise RuntimeError(f"{graph.launcher.failure}:\n" + "\n".join(lines[-30:]))
            else:
                run_s = (robot.stamp_ns() - start_ns) * 1e-9
                if ticks % 50 == 0:
                    robot.snapshot()
                if run_s >= next_rss:
                    for name, pid in pids.items():
                        mb = rss_mb(pid)
                        if mb is not None:
                            report.rss.setdefault(name, []).append((run_s, mb))
                    next_rss += max(plan.duration_s / 60.0, 1.0)
                if run_s >= plan.duration_s:
                    break
                if graph.launcher.poll() is not None:
                    raise RuntimeError(f"{graph.launcher.failure}:\n" + "\n".join(lines[-30:]))
            _pace(plan, ticks, wall0, dt_ns)
        end_ns, wall_end = robot.stamp_ns(), time.monotonic()
        robot.snapshot()
        # A last round of /diagnostics (1 Hz in the nodes' clock) before the counts are read.
        settle_end = time.monotonic() + 3.0
        while time.monotonic() < settle_end:
            if plan.sim_time:
                sim_ns += dt_ns * 5
                robot.tick_clock(sim_ns)
            time.sleep(0.01)
    finally:
        graph.launcher.shutdown()
        graph.close()
        stop.set()
        spinner.join(5.0)
        executor.remove_node(robot.node)
        robot.node.destroy_node()
        executor.shutdown()
        context.try_shutdown()
    codes = {n: p.returncode for n, p in graph.launcher.procs.items()}
    if any(c != 0 for c in codes.values()):
        report.notes.append(f"exit codes on SIGINT: {codes}")
    duration = (end_ns - start_ns) * 1e-9
    report.sim_s, report.wall_s = duration, wall_end - wall_start
    frames, joints = (
        robot.published_at[-1][1] - robot.published_at[0][1],
        robot.published_at[-1][2] - robot.published_at[0][2],
    )
    report.published = {"camera frames (two cameras)": frames, "joint states": joints}
    report.achieved_hz = {
        "camera frames (two cameras)": frames / 2 / duration,
        "joint states": joints / duration,
    }
    in_run = [(t, hold) for t, hold in robot.commands if start_ns <= t <= end_ns]
    report.commands = sum(not hold for _, hold in in_run)
    report.holds = sum(hold for _, hold in in_run)
    report.control_hz = report.commands / duration
    report.counts = _counts(robot, start_ns)
    edges = [start_ns + int(i * plan.window_s * 1e9) for i in range(int(plan.duration_s / plan.window_s) + 1)]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        window = [ms for t, ms in robot.latencies if lo <= t < hi]
        report.latency_windows.append({"t_end_s": (hi - start_ns) * 1e-9, **percentiles(window)})
    if plan.sim_time:
        report.notes.append(
            f"achieved speed-up {duration / max(report.wall_s, 1e-9):.2f}x (asked {plan.speedup:g}x)"
        )
    return report


def _spin(executor: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # shutting down
            if stop.is_set():
                return
            raise


def _pace(plan: Plan, ticks: int, wall0: float, dt_ns: int) -> None:
    """Sleep until this tick's wall time (sim time runs `speedup` x faster); never sleeps when behind."""
    target = wall0 + ticks * dt_ns * 1e-9 / plan.speedup
    delay = target - time.monotonic()
    if delay > 0:
        time.sleep(delay)
