"""The whole graph as separate OS processes over loopback DDS, on a ROS_DOMAIN_ID of its own.

The simulated arm and the three nodes run with the real built-in model (vla_accel_ros.policy.runtime,
`Policy.load(None)`), started by the same launcher as `vla-accel up --sim`. Also: the launcher's handling
of a dying node, restarts, and Ctrl-C.

VLA_ACCEL_TEST_MODEL=<checkpoint dir> runs the graph test on another checkpoint (a developer hook for
machines without the built-in weights); unset, the built-in model is used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from ros_fixtures import ros_harness, ros_test_env, unique_domain_id
from sensor_msgs.msg import Image, JointState
from vla_accel_ros.msg import VlaAction

from vla_accel_ros.ros import convert as C
from vla_accel_ros.ros.launcher import (
    SIM_NODES,
    Graph,
    GraphConfig,
    Launcher,
    ProcessSpec,
    default_params_files,
)
from vla_accel_ros.ros.qos import camera_qos, joint_states_qos, vla_qos

RATE_HZ = 5.0


@pytest.fixture
def ros(monkeypatch):
    with ros_harness(monkeypatch) as harness:
        yield harness


def test_sim_arm_and_three_nodes_close_the_loop(ros):
    model = os.environ.get("VLA_ACCEL_TEST_MODEL", "builtin")
    lines: list[str] = []
    cfg = GraphConfig(
        nodes=SIM_NODES,
        params_files=default_params_files(sim=True),
        overrides={
            "inference_node": {"trigger": "timer", "control_rate_hz": RATE_HZ, "model_path": model},
            "sim_arm_node": {"task": "reach", "max_steps": 500},
        },
    )
    graph = Graph(cfg, output=lines.append)
    images = ros.collect(Image, "camera/image_raw", camera_qos())
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    commands = ros.collect(
        VlaAction, "arm/command", QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    )
    joints = ros.collect(JointState, "joint_states", joint_states_qos())
    received: list[float] = []
    ros.probe.create_subscription(
        VlaAction, "vla/action_raw", lambda _m: received.append(time.monotonic()), vla_qos()
    )
    try:
        graph.launcher.start()

        def running() -> bool:
            assert graph.launcher.poll() is None, f"{graph.launcher.failure}\n" + "\n".join(lines[-40:])
            failed = [line for line in lines if "load failed" in line]
            assert not failed, f"model {model!r}: {failed[0]}"
            return True

        assert ros.spin_until(lambda: running() and images, 60.0), (
            "no image from the simulated arm\n" + "\n".join(lines[-40:])
        )
        assert ros.spin_until(lambda: running() and actions, 120.0), "no VlaAction\n" + "\n".join(lines[-40:])
        # Rate: count actions over a 5 s window once the loop runs.
        t0 = time.monotonic() + 1.0
        ros.spin_until(lambda: running() and time.monotonic() > t0 + 5.0, 10.0)
        window = [t for t in received if t0 <= t <= t0 + 5.0]
        rate = len(window) / 5.0
        assert 0.7 * RATE_HZ <= rate <= 1.2 * RATE_HZ, f"{rate:.2f} Hz, configured {RATE_HZ} Hz"
        # Commands reach the arm and the arm moves.
        assert len(commands) >= 10
        assert {C.stamp_to_ns(c.image_stamp) for c in commands} <= {
            C.stamp_to_ns(a.image_stamp) for a in actions
        }
        first, last = np.array(joints[0].position), np.array(joints[-1].position)
        assert np.abs(last - first).max() > 1e-3, "the arm's joints did not move"
        # The camera stamp travels with the action: camera -> action latency is positive and bounded.
        latencies = [(C.stamp_to_ns(a.header.stamp) - C.stamp_to_ns(a.image_stamp)) * 1e-9 for a in actions]
        assert all(0 < x < 0.5 for x in latencies[-10:]), latencies[-10:]
    finally:
        graph.launcher.shutdown()
        graph.close()
    codes = {name: proc.returncode for name, proc in graph.launcher.procs.items()}
    assert codes == dict.fromkeys(SIM_NODES, 0), codes  # every node stopped cleanly on SIGINT


def test_dyq_overlay_switches_precision_live_through_accel_config(ros):
    """config/dyq.yaml: the inference node serves the int4 ladder and every VlaAction runs the mode the
    controller's AccelConfig asked for; over a reach episode more than one mode is used."""
    from vla_accel_ros.msg import AccelConfig

    from vla_accel_ros.quant import DEFAULT_MODES
    from vla_accel_ros.ros.launcher import config_dir

    lines: list[str] = []
    cfg = GraphConfig(
        nodes=SIM_NODES,
        params_files=[*default_params_files(sim=True), config_dir() / "dyq.yaml"],
        overrides={
            "inference_node": {"trigger": "timer", "control_rate_hz": RATE_HZ},
            "sim_arm_node": {"task": "reach", "max_steps": 500},
        },
    )
    graph = Graph(cfg, output=lines.append)
    actions = ros.collect(VlaAction, "vla/action_raw", vla_qos())
    configs = ros.collect(AccelConfig, "vla/accel_config", vla_qos())
    ladder = {m.name for m in DEFAULT_MODES}
    try:
        graph.launcher.start()

        def modes_seen() -> set[str]:
            assert graph.launcher.poll() is None, f"{graph.launcher.failure}\n" + "\n".join(lines[-40:])
            return {a.precision for a in actions}

        ros.spin_until(lambda: len(modes_seen()) >= 2 and len(actions) >= 10, 180.0)
        assert actions, "no VlaAction\n" + "\n".join(lines[-40:])
        assert modes_seen() <= ladder, modes_seen()
        assert not [a.fallback_reason for a in actions if a.fallback], "a requested mode was not served"
        assert len(modes_seen()) >= 2, f"one mode only over {len(actions)} actions: {modes_seen()}"
        assert modes_seen() <= {c.precision for c in configs}
    finally:
        graph.launcher.shutdown()
        graph.close()


# --- the launcher on its own --------------------------------------------------------------------------


def _python(name: str, code: str) -> ProcessSpec:
    return ProcessSpec(name, [sys.executable, "-c", code])


def first_exit(launcher: Launcher, timeout_s: float) -> int | None:
    """Poll the launcher until a child ends (its status), or None once `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    status = None
    while status is None and time.monotonic() < deadline:
        status = launcher.poll()
        time.sleep(0.05)
    return status


def test_launcher_reports_a_dead_node_and_stops_the_rest():
    lines: list[str] = []
    launcher = Launcher(
        [
            # SIGINT's handler set explicitly: a child of a background job inherits SIGINT ignored
            _python("sleeper", "import signal as s, time; s.signal(s.SIGINT, s.SIG_DFL); time.sleep(60)"),
            _python("crasher", "import sys; print('bye'); sys.exit(3)"),
        ],
        output=lines.append,
        stop_timeout_s=10.0,  # SIGINT first; SIGTERM only if it is ignored for this long
    )
    launcher.start()
    status = first_exit(launcher, 20.0)
    launcher.shutdown()
    assert status == 3 and launcher.failure == "crasher exited with code 3"
    assert "[crasher] bye" in lines
    assert launcher.procs["sleeper"].returncode == -signal.SIGINT


def test_launcher_names_the_signal_and_restarts_when_asked():
    lines: list[str] = []
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    launcher = Launcher([_python("segv", code)], output=lines.append, restart_on_failure=True, max_restarts=2)
    launcher.start()
    status = first_exit(launcher, 30.0)
    launcher.shutdown()
    assert launcher.restarts["segv"] == 2
    assert status == 1 and launcher.failure == "segv killed by signal SIGSEGV"
    assert sum("restarting" in line for line in lines) == 2


def test_up_stops_every_node_on_ctrl_c():
    env = ros_test_env(unique_domain_id())
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_accel_ros.cli", "up"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen: list[str] = []
    ready = threading.Event()
    marks = ("loading model", "ready: waiting for executed actions", "waiting for the first action")

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if all(any(m in s for s in seen) for m in marks):  # each node has logged from its constructor
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(90.0), "".join(seen)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(5.0)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = "".join(seen)
    assert proc.returncode == 0, text
    for node in ("inference_node", "kinematics_node", "controller_node"):
        assert f"started {node}" in text
    assert "all nodes stopped" in text and "did not stop" not in text


def test_up_refuses_a_bad_override_before_starting_anything():
    env = ros_test_env(unique_domain_id())
    proc = subprocess.run(
        [sys.executable, "-m", "vla_accel_ros.cli", "up", "--set", "controller_node.watchdog_timeout_s=0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "watchdog_timeout_s" in proc.stderr and "started" not in proc.stdout


def test_demo_summary_table():
    from vla_accel_ros.evaluation.demo_summary import Observations, summarize

    obs = Observations()
    obs.episodes = [
        {"task": "reach-v3", "seed": 1, "steps": 10, "success": True, "duration_s": 1.0},
        {"task": "reach-v3", "seed": 2, "steps": 30, "success": False, "duration_s": 3.0},
        {"task": "push-v3", "seed": 1, "steps": 20, "success": True, "duration_s": 1.0},
    ]
    ms = 1_000_000
    for i in range(10):
        img = 1_000 * ms + i * 100 * ms
        obs.actions[img] = (img + 30 * ms, "fp32", "ar", 25.0, "decoding 'kerv' unavailable" if i < 3 else "")
        obs.commands[img] = img + 32 * ms
    text = summarize(obs)
    assert "reach-v3" in text and "1/2" in text and "push-v3" in text and "2/3" in text
    assert "control rate: 12.0 Hz" in text  # 60 steps in 5 s
    assert "camera -> VlaAction" in text and "30.0" in text
    assert "VlaAction -> arm command" in text and "2.0" in text
    assert "fp32/ar x10" in text
    assert "fallbacks: 3 action(s), most often: decoding 'kerv' unavailable (x3)" in text
