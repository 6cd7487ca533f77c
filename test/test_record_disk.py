"""`vla-accel record` on a full disk and with size-based splits (vla_accel_ros.data.recording_writer).

A full disk is made two ways: a file size limit (RLIMIT_FSIZE with SIGXFSZ ignored: writes past it fail
with EFBIG), which needs no privileges and always runs, and a real tmpfs of a few MiB mounted in a mount
namespace of the test's own (`unshare -rm`, or as root `unshare -m`), where writes fail with ENOSPC; that
one runs wherever the machine lets a process mount. Every bag is read back with the package's reader
(vla_accel_ros.data.bag_io.open_reader, what `vla-accel replay` and `up --replay` use).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rclpy.qos import QoSProfile
from ros_fixtures import ros_harness, ros_test_env
from rosbags.rosbag2.enums import StoragePlugin
from ruamel.yaml import YAML
from std_msgs.msg import String
from test_record import Output, recorded_count, stop

from vla_accel_ros.data.bag_io import deserialize, open_reader, typestore
from vla_accel_ros.data.recording_writer import CHUNK_BYTES, RecordingWriter

PAYLOAD = 10_000  # bytes per message: a chunk holds ~26
LIMIT = 3 * 1024 * 1024  # the file size limit / the tmpfs size: ~300 messages fit

# Writes numbered messages into a RecordingWriter until done or a write error (then salvage), reads the
# bag back and prints what happened as JSON. argv: storage, file size limit (0: none), max_bytes (0: no
# splits), bag path, messages, payload bytes.
CHILD = r"""
import json, resource, signal, sys
from pathlib import Path
from rosbags.rosbag2.enums import StoragePlugin
from vla_accel_ros.data.bag_io import deserialize, open_reader, typestore
from vla_accel_ros.data.recording_writer import WRITE_ERRORS, RecordingWriter

storage, out = sys.argv[1], Path(sys.argv[4])
limit, max_bytes, n, payload = (int(v) for v in (sys.argv[2], sys.argv[3], sys.argv[5], sys.argv[6]))
if limit:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
store = typestore()
writer = RecordingWriter(out, StoragePlugin[storage.upper()], max_bytes or None)
writer.open()
conn = writer.add_connection("/blob", "std_msgs/msg/String", typestore=store)
result = {"written": 0, "error": None, "lost": 0}
try:
    for i in range(n):
        msg = store.types["std_msgs/msg/String"](data=f"{i:06d}" + "x" * payload)
        writer.write(conn, 1_000_000 + i, store.serialize_cdr(msg, "std_msgs/msg/String"))
        result["written"] += 1
    writer.close()
except WRITE_ERRORS as err:
    result["error"] = f"{type(err).__name__}: {err}"
    result["lost"] = writer.salvage()
result["in_bag"] = writer.message_count
reader = open_reader(out)
result["read"] = [int(deserialize(raw, c.msgtype).data[:6]) for c, _, raw in reader.messages()]
result["metadata_count"] = reader.message_count
result["files"] = sorted(p.name for p in out.iterdir())
print(json.dumps(result))
"""


def run_child(storage: str, limit: int, max_bytes: int, out: Path, n: int, prefix: tuple = ()) -> dict:
    cmd = [
        *prefix,
        sys.executable,
        "-c",
        CHILD,
        storage,
        str(limit),
        str(max_bytes),
        str(out),
        str(n),
        str(PAYLOAD),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_salvaged(result: dict) -> None:
    """A write error happened; the bag holds exactly the messages written before it, in order, and lost
    at most what had not reached the disk (one chunk, or the uncommitted rest)."""
    assert result["error"], result
    assert result["in_bag"] > 0 and result["in_bag"] == result["written"] + 1 - result["lost"], result
    assert result["read"] == list(range(result["in_bag"])), result["read"][-5:]
    assert result["metadata_count"] == result["in_bag"]
    assert result["lost"] <= CHUNK_BYTES // PAYLOAD + 2, result


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_file_size_limit_leaves_a_readable_bag(tmp_path, storage):
    """EFBIG mid-recording: caught, the bag closed readable with everything that reached the disk."""
    result = run_child(storage, LIMIT, 0, tmp_path / "bag", 2000)
    check_salvaged(result)
    assert "File too large" in result["error"] or "disk" in result["error"], result["error"]
    # and on this disk, outside the child: the same bag through the package's reader
    reader = open_reader(tmp_path / "bag")
    assert reader.message_count == result["in_bag"]


def _mount_prefix(probe_dir: Path) -> tuple[str, ...] | None:
    """How this process can mount a tmpfs in a mount namespace of its own (None: it cannot)."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (("unshare", "-rm"), ("unshare", "-m")):
        probe = subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe_dir)],
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return prefix
    return None


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("max_bytes", [0, 700 * 1024], ids=["one_file", "split"])
def test_a_full_tmpfs_leaves_a_readable_bag(tmp_path, storage, max_bytes):
    """ENOSPC on a real filesystem of 3 MiB (mounted in the child's own mount namespace), in one file or
    in the last of several split files."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    prefix = _mount_prefix(mnt)
    if prefix is None:
        pytest.skip("this process may not mount (no user namespaces, not root): the RLIMIT test covers it")
    script = (
        f"mount -t tmpfs -o size={LIMIT} tmpfs {mnt} && "
        f'exec "$@"'  # the child runs inside the namespace; the mount goes when it ends
    )
    cmd = (*prefix, "sh", "-c", script, "sh")
    result = run_child(storage, 0, max_bytes, mnt / "bag", 2000, prefix=cmd)
    check_salvaged(result)
    assert (len(result["files"]) > 2) == bool(max_bytes), result["files"]
    assert "No space left" in result["error"] or "full" in result["error"], result["error"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_a_split_bag_reads_back_as_one(tmp_path, storage):
    """Files of ~100 KiB named as rosbag2 names them, one metadata.yaml listing all: one bag to read."""
    out = tmp_path / "bag"
    writer = RecordingWriter(out, StoragePlugin[storage.upper()], 100 * 1024)
    writer.open()
    store = typestore()
    conns = [writer.add_connection(t, "std_msgs/msg/String", typestore=store) for t in ("/a", "/b")]
    for i in range(120):
        msg = store.types["std_msgs/msg/String"](data=f"{i:06d}" + "y" * 5000)
        writer.write(conns[i % 2], 10**9 + i * 10**6, store.serialize_cdr(msg, "std_msgs/msg/String"))
    writer.close()
    suffix = ".mcap" if storage == "mcap" else ".db3"
    names = [p.name for p in out.iterdir() if p.name != "metadata.yaml"]
    files = sorted(names, key=lambda name: int(re.search(r"_(\d+)\.", name)[1]))
    assert len(files) >= 5 and files == [f"bag_{i}{suffix}" for i in range(len(files))], files
    sizes = [(out / f).stat().st_size for f in files[:-1]]
    assert all(100 * 1024 <= s <= 100 * 1024 + 20_000 for s in sizes), sizes
    reader = open_reader(out)
    got = [(c.topic, deserialize(raw, c.msgtype).data[:6], t) for c, t, raw in reader.messages()]
    assert [int(d) for _, d, _ in got] == list(range(120))
    assert [t for t, _, _ in got] == ["/a", "/b"] * 60
    assert reader.message_count == 120 and reader.topics["/a"].msgcount == 60
    assert reader.start_time == 10**9
    info = YAML(typ="safe").load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["relative_file_paths"] == files == [f["path"] for f in info["files"]]
    assert sum(f["message_count"] for f in info["files"]) == info["message_count"] == 120


def test_max_bag_size_parses_as_ros2_bag_record(tmp_path, capsys):
    from vla_accel_ros.cli import main
    from vla_accel_ros.commands.record import size_bytes

    assert [size_bytes(s) for s in ("4096", "64K", "500M", "2G", "1MiB")] == [
        4096,
        64 * 1024,
        500 * 1024**2,
        2 * 1024**3,
        1024**2,
    ]
    with pytest.raises(SystemExit):
        main(["record", "--out", str(tmp_path / "bag"), "-b", "0"])
    assert "not a size > 0" in capsys.readouterr().err


def _limited(limit: int):
    def preexec() -> None:  # in the recorder's process: writes past `limit` bytes fail with EFBIG
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return preexec


def _recorder(ros, out: Path, *extra: str, limit: int | None = None) -> tuple[subprocess.Popen, Output]:
    cmd = [sys.executable, "-m", "vla_accel_ros.cli", "record", "--out", str(out), "--topics", "/test/blob"]
    proc = subprocess.Popen(
        [*cmd, *extra],
        env=ros_test_env(ros.domain_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_limited(limit) if limit else None,
    )
    return proc, Output(proc)


def _blob(i: int, size: int) -> String:
    return String(data=f"{i:06d}" + "z" * size)


def test_record_on_a_full_disk_exits_1_with_a_readable_bag(monkeypatch, tmp_path):
    """The recorder's file size limit is met mid-recording: it says so, exits 1, and the bag holds the
    messages it says it wrote, in order."""
    out = tmp_path / "bag"
    with ros_harness(monkeypatch) as ros:
        proc, output = _recorder(ros, out, limit=1024 * 1024)
        try:
            pub = ros.publisher(String, "/test/blob", QoSProfile(depth=100), timeout_s=30)
            assert output.wait_for(
                lambda line: "recording /test/blob" in line, 30, lambda: ros.spin_for(0.05)
            )
            deadline = time.monotonic() + 60
            sent = 0
            while proc.poll() is None and time.monotonic() < deadline:  # until the disk is full
                for _ in range(5):
                    pub.publish(_blob(sent, 20_000))
                    sent += 1
                ros.spin_for(0.02)
            assert proc.poll() is not None, output.text()
        finally:
            if proc.poll() is None:
                stop(proc, signal.SIGINT)
        rc = proc.wait(timeout=30)
    output.join()
    text = output.text()
    assert rc == 1, text
    match = re.search(r"closed and readable with the (\d+) messages written before the error", text)
    assert match and "File too large" in text, text
    reader = open_reader(out)
    got = [deserialize(raw, c.msgtype).data for c, _, raw in reader.messages()]
    assert len(got) == int(match[1]) == reader.message_count > 0
    assert all(len(d) == 20_006 for d in got)


def test_record_splits_at_max_bag_size_and_replays_whole(monkeypatch, tmp_path):
    """`-b 100K`: several files, every message once, in order, through the package's reader."""
    out, n = tmp_path / "bag", 30
    with ros_harness(monkeypatch) as ros:
        proc, output = _recorder(ros, out, "-b", "100K")
        try:
            pub = ros.publisher(String, "/test/blob", QoSProfile(depth=100), timeout_s=30)
            for i in range(n):
                pub.publish(_blob(i, 20_000))
            assert output.wait_for(recorded_count(n), 30, lambda: ros.spin_for(0.05)), output.text()
        finally:
            rc = stop(proc, signal.SIGINT)
    output.join()
    assert rc == 0, output.text()
    files = json.dumps(sorted(os.listdir(out)))
    assert "bag_0.mcap" in files and "bag_4.mcap" in files and "[record] split: bag_0.mcap" in output.text()
    assert f"[record] wrote {out}: {n} messages in " in output.text()
    reader = open_reader(out)
    assert [deserialize(raw, c.msgtype).data[:6] for c, _, raw in reader.messages()] == [
        f"{i:06d}" for i in range(n)
    ]


def test_when_even_the_index_does_not_fit_the_last_chunks_are_dropped(tmp_path, monkeypatch):
    """A disk that fills up right after a chunk: the index cannot follow it, so salvage drops chunks from
    the end until it fits; the bag keeps the earlier chunks' messages, readable."""
    from vla_accel_ros.data import recording_writer

    out = tmp_path / "bag"
    writer = RecordingWriter(out, StoragePlugin.MCAP)
    writer.open()
    store = typestore()
    conn = writer.add_connection("/blob", "std_msgs/msg/String", typestore=store)
    storage = writer.storage

    def put(i: int) -> None:
        msg = store.types["std_msgs/msg/String"](data=f"{i:06d}" + "x" * PAYLOAD)
        writer.write(conn, 10**9 + i, store.serialize_cdr(msg, "std_msgs/msg/String"))

    i = 0
    while len(storage._on_disk) < 2:  # two chunks on disk
        put(i)
        i += 1
    first_chunk = sum(storage._on_disk[0][1].values())
    cap = storage.bio.tell() + 16  # the disk is full 16 bytes after the second chunk
    whole = recording_writer._WholeWrites.write

    def capped(self, data) -> int:
        if self.tell() + memoryview(data).nbytes > cap:
            raise OSError(28, "No space left on device")
        return whole(self, data)

    monkeypatch.setattr(recording_writer._WholeWrites, "write", capped)
    with pytest.raises(OSError, match="No space"):
        while True:
            put(i)
            i += 1
    lost = writer.salvage()
    assert writer.message_count == first_chunk and lost == i + 1 - first_chunk
    reader = open_reader(out)
    assert [int(deserialize(raw, c.msgtype).data[:6]) for c, _, raw in reader.messages()] == list(
        range(first_chunk)
    )
