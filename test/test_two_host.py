"""Two hosts: the inference node on one, kinematics + controller + simulated arm on the other.

The "hosts" are two network namespaces joined by a veth pair that this test creates and deletes: their
only interfaces are their own loopback and one end of the veth, addresses 10.231.N.1/24 and .2/24, no
route out, so nothing they send can leave them. DDS runs with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
ROS_STATIC_PEERS=<the other end> (unicast discovery to one address), on a ROS_DOMAIN_ID of its own, and
FASTDDS_BUILTIN_TRANSPORTS=UDPv4 so the veth is the only path (no shared memory between the namespaces).
Cutting the link (`ip link set down`) must make the controller hold the arm within about one watchdog
period; restoring it resumes the loop. A cheaper test checks which discovery settings cross the link.

Needs root and `ip netns` (skipped with the reason otherwise).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
import time

import pytest
from ros_fixtures import unique_domain_id, wait_until
from test_faults import WATCHDOG_S, Proc, record, tiny_checkpoint

from vla_accel_ros.ros.launcher import SIM_NODES, Graph, GraphConfig, default_params_files

START_S = 240.0  # torch on one side, MuJoCo on the other, on a loaded 2-core machine


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"vlaprobe{os.getpid()}"
    out = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if out.returncode != 0:
        return f"`ip netns add` fails here: {out.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


pytestmark = pytest.mark.skipif(bool(_why_not()), reason=_why_not() or "")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class TwoHosts:
    """Namespaces `a` (compute) and `b` (robot), one veth between them, nothing routed out."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{random.randrange(100)}"
        self.ns = {"a": f"vla2h{tag}a", "b": f"vla2h{tag}b"}
        self.dev = {"a": f"v2h{tag}a", "b": f"v2h{tag}b"}
        net = random.randrange(1, 250)
        self.addr = {"a": f"10.231.{net}.1", "b": f"10.231.{net}.2"}
        self.procs: list[Proc] = []

    def __enter__(self) -> TwoHosts:
        for side in "ab":
            ip("netns", "add", self.ns[side])
        try:
            ip("link", "add", self.dev["a"], "type", "veth", "peer", "name", self.dev["b"])
            for side in "ab":
                ns, dev = self.ns[side], self.dev[side]
                ip("link", "set", dev, "netns", ns)
                ip("-n", ns, "addr", "add", f"{self.addr[side]}/24", "dev", dev)
                ip("-n", ns, "link", "set", "lo", "up")
                ip("-n", ns, "link", "set", dev, "up")
                routes = subprocess.run(["ip", "-n", ns, "route"], capture_output=True, text=True).stdout
                assert "default" not in routes, routes  # nothing can leave the pair
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        for proc in self.procs:
            proc.stop()
        for side in "ab":
            subprocess.run(["ip", "netns", "del", self.ns[side]], capture_output=True)

    def env(self, side: str, domain: int, discovery: str = "LOCALHOST", peers: bool = True) -> dict[str, str]:
        other = "b" if side == "a" else "a"
        env = {
            **os.environ,
            "ROS_DOMAIN_ID": str(domain),
            "ROS_AUTOMATIC_DISCOVERY_RANGE": discovery,
            "FASTDDS_BUILTIN_TRANSPORTS": "UDPv4",
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "PYTHONUNBUFFERED": "1",
            "RCUTILS_COLORIZED_OUTPUT": "0",
        }
        env.pop("ROS_STATIC_PEERS", None)
        if peers:
            env["ROS_STATIC_PEERS"] = self.addr[other]
        return env

    def run(self, side: str, argv: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(["ip", "netns", "exec", self.ns[side], *argv], env)
        self.procs.append(proc)
        return proc

    def link(self, up: bool) -> None:
        ip("-n", self.ns["a"], "link", "set", self.dev["a"], "up" if up else "down")


TALKER = textwrap.dedent(
    """
    import sys, time, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("talker")
    pub = node.create_publisher(String, "chatter", 10)
    node.create_timer(0.1, lambda: pub.publish(String(data="hi")))
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    """
)
LISTENER = textwrap.dedent(
    """
    import sys, time, rclpy
    from std_msgs.msg import String
    rclpy.init()
    node = rclpy.create_node("listener")
    got = []
    node.create_subscription(String, "chatter", got.append, 10)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end and len(got) < 5:
        rclpy.spin_once(node, timeout_sec=0.1)
    print("RECEIVED" if len(got) >= 5 else "NOTHING", flush=True)
    """
)


def test_which_discovery_settings_cross_the_link():
    """Kilted's Fast DDS: SUBNET and LOCALHOST + ROS_STATIC_PEERS cross; LOCALHOST alone and OFF do not."""
    cases = {
        ("SUBNET", False): True,
        ("LOCALHOST", True): True,
        ("LOCALHOST", False): False,
        ("OFF", True): False,
    }
    base = unique_domain_id()  # drawn once: cases on one domain would discover each other across the link
    domains = [100 + (base + 7 * i) % 120 for i in range(len(cases))]
    with TwoHosts() as hosts:
        listeners = {}
        for domain, (discovery, peers) in zip(domains, cases, strict=True):
            hosts.run("a", [sys.executable, "-c", TALKER, "20"], hosts.env("a", domain, discovery, peers))
            listeners[(discovery, peers)] = hosts.run(
                "b", [sys.executable, "-c", LISTENER, "12"], hosts.env("b", domain, discovery, peers)
            )
        assert wait_until(lambda: all(not p.alive() for p in listeners.values()), 40.0)
        got = {case: "RECEIVED" in p.text() for case, p in listeners.items()}
    assert got == cases, ({f"{d} peers={p}": v for (d, p), v in got.items()}, f"domains {domains}")


OBSERVER = textwrap.dedent(
    """
    import json, sys, time, rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vla_accel_ros.msg import VlaAction
    rclpy.init()
    node = rclpy.create_node("observer")
    def out(**kw):
        print(json.dumps({"t": time.monotonic(), **kw}), flush=True)
    def on_command(m):
        now = node.get_clock().now().nanoseconds
        img = m.image_stamp.sec * 10**9 + m.image_stamp.nanosec
        hold = m.fallback_reason == "watchdog hold"
        out(kind="command", hold=hold, age=None if hold else (now - img) * 1e-9)
    def on_diag(m):
        for s in m.status:
            if s.name.endswith("/controller_node"):
                out(kind="diag", level=s.level[0], message=s.message[:300])
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(VlaAction, "arm/command", on_command, reliable)
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, QoSProfile(depth=100))
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    """
)


class Observer:
    """Arm commands and controller statuses as seen on the robot side (monotonic clock, shared with us)."""

    def __init__(self, proc: Proc) -> None:
        self.proc = proc

    def events(self, kind: str, after: float = 0.0) -> list[dict]:
        out = []
        for line in list(self.proc.lines):
            if line.startswith("{"):
                event = json.loads(line)
                if event["kind"] == kind and event["t"] > after:
                    out.append(event)
        return out

    def motion(self, after: float) -> list[dict]:
        return [e for e in self.events("command", after) if not e["hold"]]

    def holds(self, after: float) -> list[dict]:
        return [e for e in self.events("command", after) if e["hold"]]

    def diag(self, level: int, fragment: str, after: float) -> list[dict]:
        return [e for e in self.events("diag", after) if e["level"] == level and fragment in e["message"]]


def test_cutting_the_link_holds_the_arm_and_restoring_it_resumes(tmp_path):
    model = os.environ.get("VLA_ACCEL_TEST_MODEL") or str(tiny_checkpoint(tmp_path / "ck"))
    cfg = GraphConfig(
        nodes=SIM_NODES,
        params_files=default_params_files(sim=True),
        overrides={
            "inference_node": {"model_path": model},
            "controller_node": {"watchdog_timeout_s": WATCHDOG_S},
            "sim_arm_node": {"task": "reach"},
        },
    )
    graph = Graph(cfg)
    specs = graph.launcher.specs
    domain = unique_domain_id()
    try:
        with TwoHosts() as hosts:
            logs: dict[str, Proc] = {}
            for name in ("sim_arm_node", "kinematics_node", "controller_node"):
                logs[name] = hosts.run("b", specs[name].argv, hosts.env("b", domain))
            observer = Observer(hosts.run("b", [sys.executable, "-c", OBSERVER], hosts.env("b", domain)))
            logs["inference_node"] = hosts.run("a", specs["inference_node"].argv, hosts.env("a", domain))

            def tail() -> str:
                return "\n".join(f"--- {n}\n{p.text(15)}" for n, p in logs.items())

            assert wait_until(lambda: len(observer.motion(0.0)) >= 5, START_S), tail()
            t_cut = time.monotonic()
            hosts.link(up=False)
            assert wait_until(lambda: bool(observer.holds(t_cut)), 10 * WATCHDOG_S), tail()
            first_hold = observer.holds(t_cut)[0]["t"]
            latency = first_hold - t_cut
            assert wait_until(lambda: bool(observer.diag(2, "holding", t_cut)), 10.0), tail()
            assert wait_until(lambda: len(observer.holds(t_cut)) >= 3, 10 * WATCHDOG_S)
            late_motion = observer.motion(first_hold)
            assert not late_motion, late_motion  # only holds while the link is down

            t_up = time.monotonic()
            hosts.link(up=True)
            assert wait_until(lambda: len(observer.motion(t_up)) >= 5, 60.0), tail()
            resumed_s = observer.motion(t_up)[0]["t"] - t_up
            assert wait_until(lambda: bool(observer.diag(0, "commanding the arm", t_up)), 10.0), tail()
            ages = [e["age"] for e in observer.motion(t_up)]
            refused_stale = observer.diag(1, "s old (watchdog_timeout_s", t_up)
            assert all(procs.alive() for procs in logs.values()), tail()
    finally:
        graph.close()
    record(
        "two hosts: link down",
        hold_latency_s=round(latency, 3),
        resume_after_link_up_s=round(resumed_s, 2),
        max_image_age_after_resume_s=round(max(ages), 3),
        stale_refusals_reported=len(refused_stale),
    )
    assert latency <= 2 * WATCHDOG_S, f"first hold {latency:.3f} s after the link went down"
    assert max(ages) <= WATCHDOG_S  # no command computed on an image older than the watchdog period
