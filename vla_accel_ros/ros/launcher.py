"""`vla-accel up`: the graph of launch/*.launch.py as separate OS processes, from the same params YAML.

Why not `ros2 launch`: the launch packages are not on PyPI, and pip users still need the graph. Each
node runs as `python -m vla_accel_ros.ros.<node> --ros-args --params-file ...`; its output is streamed
with a `[node]` prefix. Ctrl-C or SIGTERM stops every node (SIGINT, then SIGTERM, then SIGKILL). When a
node dies the launcher says which one and how (exit code or signal), then stops the others, or
restarts it when asked to (at most `max_restarts` times).

Replay hook: `replay_process(bag)` returns the process that plays a bag into the graph (with
use_sim_time on the nodes): vla_accel_ros.ros.bag_player, which waits for the inference node's model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vla_accel_ros.params import (
    NODE_PARAMS,
    ParameterError,
    config_dir,
    default_files,
    read_params_files,
    render_yaml,
    validate_sections,
)

ROBOT_NODES = ("inference_node", "kinematics_node", "controller_node")
SIM_NODES = ("sim_arm_node", *ROBOT_NODES)
PACKAGE = "vla_accel_ros"


def discovery_warning() -> str | None:
    """On a shared machine, DDS discovery must be set explicitly; robot users set it for their network."""
    if "ROS_AUTOMATIC_DISCOVERY_RANGE" not in os.environ:
        return (
            "ROS_AUTOMATIC_DISCOVERY_RANGE is not set: DDS discovery uses every network interface. "
            "Set it (LOCALHOST for a single machine, SUBNET for a robot network) and ROS_DOMAIN_ID."
        )
    return None


# What `up --replay` forces, as launch/replay.launch.py does: a recorded bag never moves an arm, and the
# bag's episode starts reset the gate and the AccelConfig as a simulated arm's do.
REPLAY_OVERRIDES: dict[str, dict[str, Any]] = {"controller_node": {"dry_run": True, "use_sim_episode": True}}


def with_replay_overrides(overrides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """`overrides` with REPLAY_OVERRIDES applied last (a user's --set cannot arm a replay)."""
    out = {node: dict(values) for node, values in overrides.items()}
    for node, values in REPLAY_OVERRIDES.items():
        out.setdefault(node, {}).update(values)
    return out


def parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`node.param=value` strings -> {node: {param: typed value}}; ParameterError on an unknown name."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        node, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ParameterError(f"--set {item!r}: expected node.param=value")
        cls = NODE_PARAMS.get(node)
        if cls is None:
            raise ParameterError(f"--set {item!r}: unknown node {node!r}; nodes: {', '.join(NODE_PARAMS)}")
        info = cls.info(name)
        if info.kind.element.name == "STR" and not info.kind.is_array:
            value: Any = text  # a path or a name is a string as typed (YAML would read `on` as true)
        else:
            try:
                value = yaml.safe_load(text)
            except yaml.YAMLError as err:
                raise ParameterError(f"--set {item!r}: {err}") from err
            if info.kind.name == "FLOAT" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if info.kind.name == "FLOAT_ARRAY" and isinstance(value, list):
                value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        out.setdefault(node, {})[name] = info.coerce(value, f"--set {node}.{name}")
    return out


@dataclass
class ProcessSpec:
    """One process the launcher starts besides the graph's nodes (e.g. the bag player)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to the launcher's environment
    ros_node: bool = False  # an extra process that is a ROS node: gets the graph's namespace and remaps


@dataclass
class GraphConfig:
    """Which nodes to start, with which parameter files, overrides, namespace and remaps.

    One object, so `vla-accel up`, the tests and replay start the graph the same way.
    """

    nodes: Sequence[str] = ROBOT_NODES
    params_files: Sequence[Path] = ()
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    namespace: str = ""
    remaps: Sequence[str] = ()  # "from:=to", applied to every node
    use_sim_time: bool = False
    extra: Sequence[ProcessSpec] = ()  # e.g. the bag player


def default_params_files(sim: bool) -> list[Path]:
    """The graph's files as every offline run loads them (`params.settings.default_files`: vla_accel.yaml,
    then calibration.yaml if present), then sim.yaml for --sim."""
    files = [f for f in default_files() if f.is_file()]
    return files + [config_dir() / "sim.yaml"] if sim else files


def validate(cfg: GraphConfig) -> None:
    """Fail before starting anything if a params file or override is invalid (names the parameter)."""
    sections = read_params_files([str(p) for p in cfg.params_files])
    for node, values in cfg.overrides.items():
        sections.setdefault(node, {}).update(values)
    validate_sections(sections)


def _remap_args(cfg: GraphConfig) -> list[str]:
    """Namespace and remaps: the same for every node, so an extra node (the bag player) meets them."""
    argv = ["-r", f"__ns:=/{cfg.namespace.strip('/')}"] if cfg.namespace else []
    for remap in cfg.remaps:
        argv += ["-r", remap]
    return argv


def process_specs(cfg: GraphConfig, overrides_file: Path | None) -> list[ProcessSpec]:
    specs = []
    for node in cfg.nodes:
        argv = [sys.executable, "-m", f"vla_accel_ros.ros.{node}", "--ros-args"]
        for path in cfg.params_files:
            argv += ["--params-file", str(path)]
        if overrides_file is not None:
            argv += ["--params-file", str(overrides_file)]
        argv += _remap_args(cfg)
        if cfg.use_sim_time:
            argv += ["-p", "use_sim_time:=true"]
        specs.append(ProcessSpec(node, argv))
    for spec in cfg.extra:
        extra = _remap_args(cfg) if spec.ros_node else []
        specs.append(
            ProcessSpec(spec.name, [*spec.argv, "--ros-args", *extra] if extra else spec.argv, spec.env)
        )
    return specs


def replay_process(bag: Path, rate: float = 1.0) -> ProcessSpec:
    """The process that plays `bag` into the graph (launch/replay.launch.py starts the same player).

    Contract: return a ProcessSpec whose command publishes the bag's /camera/image_raw,
    /wrist_camera/image_raw, /joint_states and /instruction with their recorded stamps, and /clock, at
    `rate` x real time, then exits 0 (the launcher then stops the graph). `vla-accel up --replay BAG`
    starts it next to the three nodes with use_sim_time:=true.
    """
    argv = [sys.executable, "-m", "vla_accel_ros.ros.bag_player", str(bag), "--rate", str(rate)]
    return ProcessSpec("bag_player", [*argv, "--wait-node", "inference_node"], ros_node=True)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Launcher:
    """Starts, watches, restarts and stops the graph's processes."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        output: Callable[[str], None] | None = None,
        restart_on_failure: bool = False,
        max_restarts: int = 3,
        stop_timeout_s: float = 5.0,
        finished_ok: Sequence[str] = (),
    ) -> None:
        self.specs = {s.name: s for s in specs}
        self._output = output or _print_line
        self.restart_on_failure = restart_on_failure
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.finished_ok = set(finished_ok)  # processes whose exit code 0 ends the graph normally
        self.procs: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}
        self.failure: str | None = None
        self._readers: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        for name in self.specs:
            self._spawn(name)

    def _spawn(self, name: str) -> None:
        spec = self.specs[name]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        proc = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops the children in order
        )
        self.procs[name] = proc
        reader = threading.Thread(target=self._pump, args=(name, proc), name=f"log-{name}", daemon=True)
        reader.start()
        self._readers.append(reader)
        self._output(f"[launcher] started {name} (pid {proc.pid})")

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._output(f"[{name}] {raw.decode('utf-8', 'replace').rstrip()}")

    def poll(self) -> int | None:
        """Check the children once: None while the graph runs, else the launcher's exit status."""
        for name, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            if code == 0 and name in self.finished_ok:
                self._output(f"[launcher] {name} finished")
                return 0
            how = _describe_exit(code)
            if self.restart_on_failure and self.restarts.get(name, 0) < self.max_restarts:
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._output(
                    f"[launcher] {name} {how}; restarting ({self.restarts[name]}/{self.max_restarts})"
                )
                self._spawn(name)
                continue
            self.failure = f"{name} {how}"
            self._output(f"[launcher] {self.failure}; stopping the other nodes")
            return 1 if code <= 0 else code
        return None

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def run(self, poll_s: float = 0.2) -> int:
        """Start, then wait for Ctrl-C, SIGTERM or a failure; always stops every child."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            status: int | None = None
            while status is None and not self._stop.wait(poll_s):
                status = self.poll()
            return 0 if status is None else status
        finally:
            self.shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def shutdown(self) -> None:
        """SIGINT every running child, then SIGTERM, then SIGKILL after stop_timeout_s each."""
        running = {n: p for n, p in self.procs.items() if p.poll() is None}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if not running:
                break
            for proc in running.values():
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + self.stop_timeout_s
            for name, proc in list(running.items()):
                try:
                    proc.wait(max(0.0, deadline - time.monotonic()))
                    del running[name]
                except subprocess.TimeoutExpired:
                    if sig != signal.SIGKILL:
                        self._output(f"[launcher] {name} did not stop on {sig.name}")
        for reader in self._readers:
            reader.join(1.0)
        self._output("[launcher] all nodes stopped")


_PRINT_LOCK = threading.Lock()


def _print_line(line: str) -> None:
    with _PRINT_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Graph:
    """GraphConfig -> validated, running Launcher; the overrides file lives as long as the graph."""

    def __init__(self, cfg: GraphConfig, **launcher_kwargs: Any) -> None:
        validate(cfg)
        self._tmp = tempfile.TemporaryDirectory(prefix="vla-accel-up-")
        overrides_file = None
        if cfg.overrides:
            overrides_file = Path(self._tmp.name) / "overrides.yaml"
            overrides_file.write_text(render_yaml(cfg.overrides, comments=False), encoding="utf-8")
        self.launcher = Launcher(process_specs(cfg, overrides_file), **launcher_kwargs)

    def close(self) -> None:
        self._tmp.cleanup()
