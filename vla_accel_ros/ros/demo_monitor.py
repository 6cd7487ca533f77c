"""The monitor of `vla-accel demo`: runs the simulated graph until its episodes end, recording what the
nodes publish (episode events, actions, arm commands, images, /diagnostics) into an Observations
(vla_accel_ros.evaluation.demo_summary, which also prints the summary).

A simulation-only tool: DDS discovery stays on this machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and
a random ROS_DOMAIN_ID is picked unless they are set.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import String

from vla_accel_ros.evaluation.demo_summary import Observations
from vla_accel_ros.msg import VlaAction
from vla_accel_ros.ros.convert import stamp_to_ns
from vla_accel_ros.ros.diagnostics import level_of
from vla_accel_ros.ros.launcher import Graph, Launcher
from vla_accel_ros.ros.qos import camera_qos, episode_qos, vla_qos


def sim_env() -> None:
    """Keep DDS on this machine and MuJoCo headless, unless the caller set otherwise."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    os.environ.setdefault("MUJOCO_GL", "egl")


def demo_overrides(
    overrides: dict[str, dict[str, Any]],
    tasks: list[str],
    total: int,
    max_steps: int | None,
    model: str | None,
) -> dict[str, dict[str, Any]]:
    """The demo's parameters on top of `--set` ones: the tasks and episode count in lockstep, dry_run off
    (a simulated arm), the step limit and the model when given."""
    sim = overrides.setdefault("sim_arm_node", {})
    sim.update(task=",".join(tasks), episodes=total, lockstep=True)
    if max_steps is not None:
        sim["max_steps"] = max_steps
    overrides.setdefault("controller_node", {}).setdefault("dry_run", False)
    if model is not None:
        overrides.setdefault("inference_node", {})["model_path"] = model
    return overrides


def run_graph(graph: Graph, total: int, timeout_s: float, startup_s: float) -> tuple[Observations, str]:
    """Start the graph, monitor it until `total` episodes ended (or it failed), stop it; returns what was
    seen and 'done', 'interrupted' or what went wrong."""
    obs = Observations()
    try:
        graph.launcher.start()
        status = monitor(obs, graph.launcher, total, timeout_s, startup_s)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        graph.launcher.shutdown()
        graph.close()
    return obs, status


def monitor(obs: Observations, launcher: Launcher, total: int, timeout_s: float, startup_s: float) -> str:
    """Spin a monitor node until `total` episodes ended; returns 'done' or what went wrong."""
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("vla_accel_demo_monitor", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    started: dict[int, float] = {}  # episode -> first command (or start) time: startup is not control time
    current = [-1]

    def on_episode(msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("event") == "start":
            current[0] = event["episode"]
        elif event.get("event") == "end":
            event["duration_s"] = time.monotonic() - started.get(event["episode"], time.monotonic())
            obs.episodes.append(event)
            mark = "success" if event["success"] else "failure"
            print(
                f"  episode {event['episode']}: {event['task']} seed {event['seed']}: {mark} in "
                f"{event['steps']} steps ({event['duration_s']:.1f} s)",
                flush=True,
            )

    def on_action(msg: VlaAction) -> None:
        obs.actions[stamp_to_ns(msg.image_stamp)] = (
            stamp_to_ns(msg.header.stamp),
            msg.precision,
            msg.decoding,
            msg.total_ms,
            msg.fallback_reason if msg.fallback else "",
        )

    def on_command(msg: VlaAction) -> None:
        obs.commands[stamp_to_ns(msg.image_stamp)] = stamp_to_ns(msg.header.stamp)
        started.setdefault(current[0], time.monotonic())

    def on_image(_: Image) -> None:
        obs.images += 1

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            obs.diagnostics[status.name] = (level_of(status), status.message)

    node.create_subscription(String, "sim/episode", on_episode, episode_qos())
    node.create_subscription(VlaAction, "vla/action_raw", on_action, vla_qos())
    node.create_subscription(
        VlaAction, "arm/command", on_command, QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    )
    node.create_subscription(Image, "camera/image_raw", on_image, camera_qos())
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, vla_qos())
    t0 = time.monotonic()
    try:
        while True:
            executor.spin_once(timeout_sec=0.1)
            if len(obs.episodes) >= total:
                return "done"
            if launcher.poll() is not None:
                return launcher.failure or "a node stopped"
            broken = [f"{n}: {m}" for n, (_lvl, m) in obs.diagnostics.items() if "load failed" in m]
            if broken:
                return broken[0]
            elapsed = time.monotonic() - t0
            if elapsed > timeout_s:
                return f"timeout after {timeout_s:.0f} s ({len(obs.episodes)}/{total} episodes)"
            if not obs.actions and elapsed > startup_s:
                what = "no images from the simulated arm" if not obs.images else "no actions"
                return f"the graph did not come up in {startup_s:.0f} s: {what}"
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
