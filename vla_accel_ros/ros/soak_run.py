"""One `vla-accel soak` run: the robot graph (inference, kinematics, controller with dry_run off) started
as separate processes as `vla-accel up` starts them, driven by this process's robot for a Plan.

- load: real time; messages dropped per subscriber, the control rate, the QoS of every endpoint, RSS.
- soak: use_sim_time on the nodes and /clock from here, running faster than wall time: RSS of each node
  over time and the camera -> arm command latency per window (wall clock, so the speed-up does not
  inflate it).

DDS stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, a random ROS_DOMAIN_ID).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from vla_accel_ros.evaluation.soak import Plan, RunReport, finish_report, rss_mb
from vla_accel_ros.ros.launcher import Graph, GraphConfig, default_params_files
from vla_accel_ros.ros.qos_census import local_endpoints
from vla_accel_ros.ros.soak_robot import Robot

NODES = ("inference_node", "kinematics_node", "controller_node")


def run_plan(
    plan: Plan, model: str, log: Callable[[str], None] = print, ready_timeout_s: float = 300.0
) -> RunReport:
    """Start the graph, drive it for the plan, stop it; returns the RunReport."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    domain = int(os.environ.get("VLA_ACCEL_SOAK_DOMAIN", random.randrange(100, 230)))
    os.environ["ROS_DOMAIN_ID"] = str(domain)
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
                if any(not hold for _, hold in robot.log.commands):
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
    return finish_report(report, plan, robot.log, start_ns, end_ns, wall_end - wall_start)


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
