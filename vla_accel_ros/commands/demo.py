"""`vla-accel demo`: the closed loop on one machine, then a summary.

Brings up the simulated arm and the three nodes (lockstep, built-in model, dry_run off for the sim) as
`vla-accel up --sim` does, waits for the episodes to end, and prints per-task success, episode lengths,
the achieved control rate, the per-hop latency (camera stamp -> VlaAction publish -> arm command) and
the precision/decoding modes used. It is a simulation-only command: it keeps DDS discovery on this
machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST) and picks a random ROS_DOMAIN_ID unless they are set.

    vla-accel demo                          # one episode of each of the six tasks
    vla-accel demo --task push --episodes 5
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HELP = "Closed-loop demo: simulated arm + the three nodes + the built-in model, then a summary table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task (default 1)")
    parser.add_argument("--task", default="all", help="task name, comma-separated names, or 'all' (default)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=180.0,
        help="fail if no action comes out within this many seconds of the start",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="episode step limit (default: sim.yaml)")
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the built-in model)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="NODE.PARAM=VALUE",
        help="override one parameter (repeatable), as in `vla-accel up`",
    )
    parser.add_argument("--verbose", action="store_true", help="stream the nodes' logs")


# --- what the monitor records, and the summary (pure; tested without ROS) -----------------------------


@dataclass
class Observations:
    episodes: list[dict] = field(default_factory=list)  # "end" events + wall duration_s
    # image stamp -> (publish stamp, precision, decoding, policy ms, fallback reason or "")
    actions: dict[int, tuple[int, str, str, float, str]] = field(default_factory=dict)
    commands: dict[int, int] = field(default_factory=dict)  # image stamp -> arm command publish stamp
    images: int = 0
    diagnostics: dict[str, tuple[int, str]] = field(default_factory=dict)  # node -> (level, message)


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def summarize(obs: Observations) -> str:
    lines = []
    by_task: dict[str, list[dict]] = collections.defaultdict(list)
    for ep in obs.episodes:
        by_task[ep["task"]].append(ep)
    lines.append(f"{'task':<26}{'episodes':>9}{'success':>9}{'steps mean':>12}{'steps min-max':>15}")
    for task, eps in by_task.items():
        steps = [int(e["steps"]) for e in eps]
        wins = sum(bool(e["success"]) for e in eps)
        lines.append(
            f"{task:<26}{len(eps):>9}{f'{wins}/{len(eps)}':>9}{statistics.mean(steps):>12.1f}"
            f"{f'{min(steps)}-{max(steps)}':>15}"
        )
    total_steps = sum(int(e["steps"]) for e in obs.episodes)
    total_time = sum(float(e.get("duration_s", 0.0)) for e in obs.episodes)
    wins = sum(bool(e["success"]) for e in obs.episodes)
    if obs.episodes:
        lines.append(f"{'all':<26}{len(obs.episodes):>9}{f'{wins}/{len(obs.episodes)}':>9}")
    rate = total_steps / total_time if total_time > 0 else 0.0
    lines.append("")
    lines.append(
        f"control rate: {rate:.1f} Hz ({total_steps} steps in {total_time:.1f} s, first command to end)"
    )
    hop1 = [(pub - img) * 1e-6 for img, (pub, *_rest) in obs.actions.items()]
    hop2 = [
        (obs.commands[img] - pub) * 1e-6 for img, (pub, *_rest) in obs.actions.items() if img in obs.commands
    ]
    total = [(cmd - img) * 1e-6 for img, cmd in obs.commands.items() if img > 0]
    policy_ms = [a[3] for a in obs.actions.values()]
    lines.append(f"{'latency (ms)':<30}{'median':>9}{'p95':>9}{'n':>7}")
    for name, values in (
        ("camera -> VlaAction", hop1),
        ("VlaAction -> arm command", hop2),
        ("camera -> arm command", total),
        ("  of which policy.act", policy_ms),
    ):
        if values:
            lines.append(
                f"{name:<30}{statistics.median(values):>9.1f}{_pct(values, 95):>9.1f}{len(values):>7}"
            )
        else:
            lines.append(f"{name:<30}{'-':>9}{'-':>9}{0:>7}")
    modes = collections.Counter(f"{a[1]}/{a[2]}" for a in obs.actions.values())
    lines.append(
        "modes (precision/decoding): " + (", ".join(f"{m} x{n}" for m, n in modes.most_common()) or "-")
    )
    fallbacks = collections.Counter(a[4] for a in obs.actions.values() if a[4])
    if fallbacks:
        reason, n = fallbacks.most_common(1)[0]
        lines.append(f"fallbacks: {sum(fallbacks.values())} action(s), most often: {reason} (x{n})")
    return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------------


def _sim_env() -> None:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(10, 99)))
    os.environ.setdefault("MUJOCO_GL", "egl")


def run(args: argparse.Namespace) -> int:
    _sim_env()
    from vla_accel_ros.ros.launcher import SIM_NODES, Graph, GraphConfig, default_params_files, parse_set
    from vla_accel_ros.ros.params import ParameterError
    from vla_accel_ros.sim.tasks import parse_task_list

    if args.episodes < 1:
        print("error: --episodes must be >= 1", file=sys.stderr)
        return 2
    try:
        tasks = parse_task_list(args.task)
        overrides = parse_set(args.overrides)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    total = args.episodes * len(tasks)
    sim = overrides.setdefault("sim_arm_node", {})
    sim.update(task=",".join(tasks), episodes=total, lockstep=True)
    if args.max_steps is not None:
        sim["max_steps"] = args.max_steps
    overrides.setdefault("controller_node", {}).setdefault("dry_run", False)
    if args.model is not None:
        overrides.setdefault("inference_node", {})["model_path"] = str(Path(args.model).resolve())
    log_tail: collections.deque[str] = collections.deque(maxlen=60)

    def output(line: str) -> None:
        log_tail.append(line)
        if args.verbose:
            print(line, flush=True)

    try:
        graph = Graph(
            GraphConfig(nodes=SIM_NODES, params_files=default_params_files(sim=True), overrides=overrides),
            output=output,
        )
    except (ParameterError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"demo: {total} episode(s) of {', '.join(tasks)} on ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
        f"(discovery {os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']})",
        flush=True,
    )
    obs = Observations()
    try:
        graph.launcher.start()
        status = _monitor(obs, graph.launcher, total, args.timeout, args.startup_timeout)
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        graph.launcher.shutdown()
        graph.close()
    print()
    print(summarize(obs))
    if status != "done":
        print(f"\ndemo failed: {status}", file=sys.stderr)
        for name, (level, message) in sorted(obs.diagnostics.items()):
            print(f"  last status of {name}: level {level}: {message}", file=sys.stderr)
        if not args.verbose:
            print("last node output:\n" + "\n".join(log_tail), file=sys.stderr)
        return 1
    return 0


def _monitor(obs: Observations, launcher, total: int, timeout_s: float, startup_s: float) -> str:
    """Spin a monitor node until `total` episodes ended; returns 'done' or what went wrong."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from vla_accel_ros.msg import VlaAction
    from vla_accel_ros.ros.convert import stamp_to_ns
    from vla_accel_ros.ros.diagnostics import level_of
    from vla_accel_ros.ros.qos import camera_qos, episode_qos, vla_qos

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
