"""`vla-accel foxglove`: a WebSocket client on 127.0.0.1 subscribes and receives a topic published here.

The client is a minimal RFC 6455 implementation over `socket` (no extra dependency): handshake with the
foxglove.sdk.v1 subprotocol, masked text frames out, text/binary frames in, pings answered.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest
from rclpy.serialization import deserialize_message
from ros_fixtures import ros_harness, ros_test_env
from test_record import Output, stop
from vla_accel_ros.msg import AccelConfig

from vla_accel_ros.ros import convert
from vla_accel_ros.ros.foxglove_bridge import exposure_warning
from vla_accel_ros.ros.qos import vla_qos

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    def __init__(self, host: str, port: int, protocol: str, timeout_s: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError(f"handshake cut short: {head!r}")
            head += chunk
        text = head.decode("latin-1")
        assert text.startswith("HTTP/1.1 101"), text
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert f"sec-websocket-accept: {accept.lower()}" in text.lower(), text
        assert protocol in text, text

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("connection closed")
            data += chunk
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_json(self, obj: dict) -> None:
        self._send(0x1, json.dumps(obj).encode())

    def recv(self, timeout_s: float) -> tuple[int, bytes] | None:
        """One whole message (opcode, payload), or None when nothing arrives in time."""
        self.sock.settimeout(timeout_s)
        try:
            first = self._exact(2)
        except TimeoutError:
            return None
        self.sock.settimeout(10.0)
        opcode, payload = first[0] & 0x0F, b""
        while True:
            n = first[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if first[1] & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            payload += data
            if first[0] & 0x80:
                break
            first = self._exact(2)  # continuation frame
        if opcode == 0x9:  # ping
            self._send(0xA, payload)
            return self.recv(timeout_s)
        return opcode, payload

    def close(self) -> None:
        self.sock.close()


def test_exposing_the_server_is_an_explicit_choice_with_a_warning():
    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    assert "without authentication" in exposure_warning("0.0.0.0")


def test_browser_client_receives_a_topic_published_in_the_test(monkeypatch):
    with ros_harness(monkeypatch) as ros:
        cmd = [sys.executable, "-m", "vla_accel_ros.cli", "foxglove", "--port", "0"]
        proc = subprocess.Popen(
            cmd, env=ros_test_env(ros.domain_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = Output(proc)
        ws = None
        try:
            assert output.wait_for(
                lambda line: "serving on ws://127.0.0.1:" in line, 60, lambda: time.sleep(0.05)
            )
            port = int(re.search(r"ws://127\.0\.0\.1:(\d+)", output.text()).group(1))
            pub = ros.publisher(AccelConfig, "/vla/accel_config", vla_qos(), timeout_s=30)
            ws = WebSocket("127.0.0.1", port, "foxglove.sdk.v1")
            channel = None
            deadline = time.monotonic() + 30
            while channel is None and time.monotonic() < deadline:
                msg = ws.recv(0.5)
                if msg is None or msg[0] != 0x1:
                    continue
                data = json.loads(msg[1])
                if data.get("op") == "advertise":
                    channel = next((c for c in data["channels"] if c["topic"] == "/vla/accel_config"), None)
            assert channel is not None, output.text()
            assert channel["schemaName"] == "vla_accel_ros/msg/AccelConfig"
            assert channel["encoding"] == "cdr" and channel["schemaEncoding"] == "ros2msg"
            assert "string precision" in channel["schema"]
            ws.send_json({"op": "subscribe", "subscriptions": [{"id": 7, "channelId": channel["id"]}]})
            received = None
            deadline = time.monotonic() + 30
            while received is None and time.monotonic() < deadline:
                pub.publish(convert.accel_config_msg("w4a8", "kerv", 7.5, "test", 123))
                ros.spin_for(0.05)
                msg = ws.recv(0.2)
                while msg is not None and received is None:
                    if msg[0] == 0x2 and msg[1][0] == 0x01 and struct.unpack_from("<I", msg[1], 1)[0] == 7:
                        received = deserialize_message(msg[1][13:], AccelConfig)
                    msg = ws.recv(0.05)
            assert received is not None, output.text()
            assert (received.precision, received.decoding, received.threshold) == ("w4a8", "kerv", 7.5)
            assert convert.stamp_to_ns(received.header.stamp) == 123
        finally:
            if ws is not None:
                ws.close()
            if proc.poll() is None:
                assert stop(proc, 2) == 0, output.text()
    assert "[foxglove] forwarding /vla/accel_config [vla_accel_ros/msg/AccelConfig]" in output.text()


@pytest.mark.parametrize("port", ["70000"])
def test_bad_port_is_refused(port, capsys):
    from vla_accel_ros.cli import main

    assert main(["foxglove", "--port", port]) == 2
    assert "not a TCP port" in capsys.readouterr().err
