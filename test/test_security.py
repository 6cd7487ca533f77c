"""Security: weights load from safetensors only (a pickle is refused before it is opened, unless explicitly
allowed, then with a warning), the inference node refuses one through its `allow_pickle` parameter and says
why, and the Foxglove WebSocket view listens on loopback only unless told otherwise.
"""

from __future__ import annotations

import logging
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from ros_fixtures import ros_harness, ros_test_env
from test_policy import tiny_config

from vla_accel_ros.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vla_accel_ros.policy.model import VlaModel


class Payload:
    """Unpickling this runs code: it creates the file at `path` (what an attacker's checkpoint would do)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture
def model() -> VlaModel:
    torch.manual_seed(0)
    return VlaModel(tiny_config()).eval()


def pickle_checkpoint(directory: Path, model: VlaModel, payload: Path | None = None) -> Path:
    """config.json + pytorch_model.bin (a pickle); with `payload`, the pickle also runs code."""
    save_checkpoint(model, directory)
    (directory / "model.safetensors").unlink()
    state = dict(model.state_dict())
    if payload is not None:
        with open(directory / "pytorch_model.bin", "wb") as fh:
            pickle.dump({**state, "__payload__": Payload(payload)}, fh)
    else:
        torch.save(state, directory / "pytorch_model.bin")
    return directory


def test_a_pickle_checkpoint_is_refused_before_it_is_opened(tmp_path, model):
    marker = tmp_path / "pwned"
    ck = pickle_checkpoint(tmp_path / "ck", model, payload=marker)
    with pytest.raises(CheckpointError, match="pickle-based file, which can execute code"):
        load_checkpoint(ck)
    from vla_accel_ros.policy.runtime import Policy

    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        Policy.load(ck)
    assert not marker.exists()  # refused without unpickling anything


def test_safetensors_win_over_a_pickle_in_the_same_directory(tmp_path, model):
    marker = tmp_path / "pwned"
    ck = pickle_checkpoint(tmp_path / "ck", model, payload=marker)
    save_checkpoint(model, ck)  # model.safetensors next to the pickle
    loaded = load_checkpoint(ck)
    assert not marker.exists()
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_an_explicitly_allowed_pickle_loads_with_a_warning(tmp_path, model, caplog):
    ck = pickle_checkpoint(tmp_path / "ck", model)
    with caplog.at_level(logging.WARNING, logger="vla_accel_ros.policy.checkpoint"):
        loaded = load_checkpoint(ck, allow_pickle=True)
    assert any(
        "pickle-based checkpoint" in r.message and "allowed explicitly" in r.message for r in caplog.records
    )
    assert isinstance(loaded, VlaModel)


def test_the_inference_node_refuses_a_pickle_and_says_why_unless_its_parameter_allows_it(
    tmp_path, model, monkeypatch
):
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter

    from vla_accel_ros.ros.diagnostics import ERROR, level_of
    from vla_accel_ros.ros.inference_node import InferenceNode
    from vla_accel_ros.ros.qos import vla_qos

    marker = tmp_path / "pwned"
    evil = pickle_checkpoint(tmp_path / "evil", model, payload=marker)
    trusted = pickle_checkpoint(tmp_path / "trusted", model)
    with ros_harness(monkeypatch) as ros:
        statuses: list = []
        ros.probe.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: statuses.extend(m.status), vla_qos()
        )

        def start(path: Path, ns: str, **extra: object) -> InferenceNode:
            overrides = [Parameter("model_path", value=str(path))]
            overrides += [Parameter(k, value=v) for k, v in extra.items()]
            node = InferenceNode(context=ros.context, namespace=ns, parameter_overrides=overrides)
            ros.add(node)
            return node

        def status(ns: str, level: int, fragment: str):
            return next(
                (
                    s
                    for s in statuses
                    if s.name == f"{ns}/inference_node" and level_of(s) == level and fragment in s.message
                ),
                None,
            )

        refusing = start(evil, "/refusing")
        assert refusing.get_parameter("allow_pickle").value is False  # the default
        assert ros.spin_until(lambda: status("/refusing", ERROR, "load failed") is not None, 60.0)
        message = status("/refusing", ERROR, "load failed").message
        assert "pickle-based file" in message and "allow_pickle" in message, message
        assert not marker.exists() and refusing._policy is None

        allowing = start(trusted, "/allowing", allow_pickle=True)

        # Loaded ("running"; the WARN level only says no instruction has come yet).
        def running() -> bool:
            return any(
                s.name == "/allowing/inference_node" and s.message.startswith("running") for s in statuses
            )

        assert ros.spin_until(running, 60.0), [s.message for s in statuses if "allowing" in s.name]
        assert allowing._policy is not None
        result = allowing.set_parameters([Parameter("allow_pickle", value=False)])[0]
        assert not result.successful  # read-only: chosen at start-up, not flipped on a running robot


def test_the_foxglove_view_listens_on_loopback_only_by_default(monkeypatch):
    import argparse

    from vla_accel_ros.commands import foxglove as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"
    with ros_harness(monkeypatch) as ros:
        cmd = [sys.executable, "-m", "vla_accel_ros.cli", "foxglove", "--port", "0", "--duration", "60"]
        proc = subprocess.Popen(
            cmd, env=ros_test_env(ros.domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            lines: list[str] = []
            port = None
            deadline = time.monotonic() + 60
            assert proc.stdout is not None
            while port is None and time.monotonic() < deadline:
                line = proc.stdout.readline().decode()
                if not line:
                    break
                lines.append(line)
                m = re.search(r"serving on ws://([\d.]+):(\d+)", line)
                if m:
                    assert m.group(1) == "127.0.0.1", line
                    port = int(m.group(2))
            assert port, "".join(lines)
            assert not any("warning: serving on" in line for line in lines)
            listeners = listening_sockets(proc.pid)
            assert listeners, "the server's listening socket was not found"
            assert {addr for addr, p in listeners if p == port} == {"127.0.0.1"}, listeners
        finally:
            proc.terminate()
            proc.wait(30)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by `pid` (from /proc, no tools needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A = LISTEN
                continue
            hex_addr, hex_port = local.split(":")
            out.append((_address(hex_addr, v6), int(hex_port, 16)))
    return out


def _address(hex_addr: str, v6: bool) -> str:
    raw = bytes.fromhex(hex_addr)
    if not v6:
        return ".".join(str(b) for b in reversed(raw))
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]  # each 32-bit word is host-endian
    import ipaddress

    return str(ipaddress.IPv6Address(b"".join(words)))


def test_discovery_range_must_be_chosen_explicitly(monkeypatch):
    from vla_accel_ros.ros.launcher import discovery_warning

    monkeypatch.delenv("ROS_AUTOMATIC_DISCOVERY_RANGE", raising=False)
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE is not set" in discovery_warning()
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    assert discovery_warning() is None


def test_a_node_told_to_enforce_dds_security_fails_closed_without_its_keys(tmp_path):
    """ROS_SECURITY_STRATEGY=Enforce with no usable keystore (or, on the PyPI wheels, no security plugins in
    Fast DDS): the node must refuse to start, never run unprotected."""
    from ros_fixtures import unique_domain_id

    env = {
        **ros_test_env(unique_domain_id()),
        "ROS_SECURITY_ENABLE": "true",
        "ROS_SECURITY_STRATEGY": "Enforce",
        "ROS_SECURITY_KEYSTORE": str(tmp_path / "keystore"),
    }
    (tmp_path / "keystore" / "enclaves").mkdir(parents=True)
    argv = [
        sys.executable,
        "-m",
        "vla_accel_ros.ros.controller_node",
        "--ros-args",
        "--enclave",
        "/vla/controller",
    ]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "security" in (proc.stdout + proc.stderr).lower(), proc.stderr[-2000:]
