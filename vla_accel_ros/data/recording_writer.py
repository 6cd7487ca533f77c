"""The bag writer of `vla-accel record`: size-based splits, and a bag that stays readable after a write
error (a full disk: ENOSPC, a file size limit: EFBIG, a quota, any OSError or sqlite3 error).

Why: rosbags writes one storage file per bag and makes an MCAP readable only in `close` (index and footer
at the end); on a full disk that close fails too, and the whole recording would be unreadable. So:
- MCAP: messages gather in chunks of at most CHUNK_BYTES in memory; a chunk reaches the file whole, or the
  file is cut back to where the chunk began. After an error `salvage` drops the chunk that did not make it
  and writes the index; if even the index does not fit, it drops chunks from the end until it does. What
  is lost is what had not reached the disk: the last chunk (at most CHUNK_BYTES of messages).
- sqlite3: a commit per CHUNK_BYTES of messages; `salvage` rolls back the uncommitted rest.
- splits (`max_bytes`, as `ros2 bag record -b`): once a storage file reaches max_bytes (give or take one
  message and the index) it is closed, complete, and the next one opened. The files are named as rosbag2
  names them (`<bag>_0.mcap`, `<bag>_1.mcap`, ...) in the one bag directory, whose metadata.yaml lists
  them all: rosbags' Reader (so this package's readers, vla_accel_ros.data.bag_io.open_reader) and
  `ros2 bag play` read a split bag as one.
Message counts in metadata.yaml are those of the messages in the files.
"""

from __future__ import annotations

import io
import sqlite3
from collections import Counter, defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionMode, StoragePlugin
from rosbags.rosbag2.metadata import dump_qos_v9
from rosbags.rosbag2.storage_mcap import McapWriter, PendingChunk
from rosbags.rosbag2.storage_sqlite3 import Sqlite3Writer

CHUNK_BYTES = 256 * 1024  # what a write error can cost at most: the messages not yet on disk
WRITE_ERRORS = (OSError, sqlite3.Error)  # what a full disk or a file size limit raises


class BagWriteError(RuntimeError):
    """Writing the bag failed (the message says why and what the bag holds); the bag was closed readable."""


class _WholeWrites:
    """An unbuffered file whose `write` writes every byte or raises (FileIO may write fewer without
    saying so to a caller that ignores its count), and which can be cut back to an earlier offset."""

    def __init__(self, raw: io.FileIO) -> None:
        self.raw = raw

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        while view:
            n = self.raw.write(view)
            if not n:
                raise OSError(f"cannot write to {self.raw.name}: nothing written")
            view = view[n:]
        return len(data)

    def tell(self) -> int:
        return self.raw.tell()

    def cut(self, offset: int) -> None:
        """Drop everything after `offset` (needs no space: what a full disk still allows)."""
        self.raw.truncate(offset)
        self.raw.seek(offset)

    def close(self) -> None:
        self.raw.close()


class _Replayable:
    """What a storage needs to open its next split file: the connections it was given, in order."""

    def __init__(self) -> None:
        self.added: list[tuple[str, Any, str]] = []  # ("msgtype" | "connection", connection, qos)


class GuardedMcap(McapWriter, _Replayable):
    """rosbags' MCAP storage with whole chunks of at most CHUNK_BYTES and `salvage` (module doc)."""

    def __init__(self, path: Path, compression: CompressionMode) -> None:
        McapWriter.__init__(self, path, compression)
        _Replayable.__init__(self)
        self.bio.flush()  # the header; from here on every write reaches the file or raises
        self.bio = _WholeWrites(self.bio.detach())  # type: ignore[assignment]
        self._pending: Counter[int] = Counter()  # messages per channel in the chunk in memory
        self._on_disk: list[tuple[int, Counter[int]]] = []  # per written chunk: its offset, its messages

    def add_msgtype(self, connection: Any) -> None:
        super().add_msgtype(connection)
        self.added.append(("msgtype", connection, ""))

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        super().add_connection(connection, offered_qos_profiles)
        self.added.append(("connection", connection, offered_qos_profiles))

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        self._pending[connection.id] += 1
        super().write(connection, timestamp, data)
        if self.chunk.bio.tell() > CHUNK_BYTES:
            self.close_chunk()

    def close_chunk(self) -> None:
        start = self.bio.tell()
        try:
            super().close_chunk()
        except OSError:
            self.bio.cut(start)  # type: ignore[attr-defined]
            raise
        self._on_disk.append((start, self._pending))
        self._pending = Counter()

    def size(self) -> int:
        """Bytes in the file and in the chunk in memory."""
        return self.bio.tell() + self.chunk.bio.tell()

    def close(self, version: int, metadata: str) -> None:
        if self.chunk.bio.tell():
            self.close_chunk()
        end = self.bio.tell()
        try:
            super().close(version, metadata)
        except OSError:
            self.bio.cut(end)  # type: ignore[attr-defined]
            raise

    def salvage(self, version: int, metadata: Any) -> Counter[int]:
        """After a write error: close the file readable with the chunks that fit; returns the messages
        per channel that are not in it. `metadata(lost)`: the bag metadata text once `lost` are gone."""
        lost, self._pending = self._pending, Counter()
        self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))
        while True:
            for cid, n in lost.items():
                self.channel_stats[cid] -= n
            try:
                self.close(version, metadata(lost))
                return lost
            except OSError:
                if not self._on_disk:
                    raise
                for cid, n in lost.items():  # counted again with the next chunk dropped
                    self.channel_stats[cid] += n
                start, messages = self._on_disk.pop()
                self.chunks.pop()
                self.bio.cut(start)  # type: ignore[attr-defined]
                lost += messages


class GuardedSqlite(Sqlite3Writer, _Replayable):
    """rosbags' sqlite3 storage with a commit per CHUNK_BYTES of messages and `salvage` (module doc)."""

    def __init__(self, path: Path, compression: CompressionMode) -> None:
        Sqlite3Writer.__init__(self, path, compression)
        _Replayable.__init__(self)
        self._pending: Counter[int] = Counter()
        self._pending_bytes = 0

    def add_msgtype(self, connection: Any) -> None:
        super().add_msgtype(connection)
        self.added.append(("msgtype", connection, ""))

    def add_connection(self, connection: Any, offered_qos_profiles: str) -> None:
        super().add_connection(connection, offered_qos_profiles)
        self.conn.commit()  # a topic row is never rolled back with messages
        self.added.append(("connection", connection, offered_qos_profiles))

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        self._pending[connection.id] += 1
        super().write(connection, timestamp, data)
        self._pending_bytes += len(data)
        if self._pending_bytes > CHUNK_BYTES:
            self.conn.commit()
            self._pending, self._pending_bytes = Counter(), 0

    def size(self) -> int:
        return self.path.stat().st_size + self._pending_bytes

    def salvage(self, version: int, metadata: Any) -> Counter[int]:
        lost, self._pending, self._pending_bytes = self._pending, Counter(), 0
        try:
            self.conn.rollback()
            self.close(version, metadata(lost))
        except WRITE_ERRORS:
            self.conn.close()  # the committed messages stay; only the metadata row is missing
        return lost


class RecordingWriter(Writer):
    """rosbags' Writer over the guarded storages, with splits at `max_bytes` and `salvage` (module doc)."""

    STORAGE_PLUGINS = {StoragePlugin.MCAP: GuardedMcap, StoragePlugin.SQLITE3: GuardedSqlite}

    def __init__(self, path: Path | str, storage_plugin: StoragePlugin, max_bytes: int | None = None) -> None:
        super().__init__(path, version=9, storage_plugin=storage_plugin)
        if max_bytes is not None and max_bytes <= 0:
            raise ValueError(f"max_bytes must be > 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.files: list[dict[str, Any]] = []  # the closed storage files, as metadata.yaml lists them
        self._file: Counter[int] = Counter()  # messages per connection in the open file
        self._file_times = (2**63 - 1, 0)

    def set_compression(self, mode: CompressionMode, fmt: Any) -> None:
        if mode == CompressionMode.FILE:
            raise ValueError("RecordingWriter: file compression is not supported (use storage compression)")
        super().set_compression(mode, fmt)

    def write(self, connection: Any, timestamp: int, data: bytes | memoryview) -> None:
        lo, hi = self._file_times
        self._file_times = (min(lo, timestamp), max(hi, timestamp))
        self._file[connection.id] += 1
        try:
            super().write(connection, timestamp, data)
        except WRITE_ERRORS:
            self.counts[connection.id] += 1  # it is in the storage's unwritten rest: `salvage` takes it off
            raise
        if self.max_bytes is not None and self.storage.size() >= self.max_bytes:  # type: ignore[union-attr]
            self._next_file()

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        """Close the open file and write metadata.yaml (a WRITE_ERRORS error: call `salvage`)."""
        assert self.storage is not None
        self.storage.close(self.version, self._metadata_text())
        self._finish_file()

    def salvage(self) -> int:
        """After a write error: close the bag readable with what reached the disk; returns the number of
        messages written to the writer that are not in the bag."""
        storage: Any = self.storage
        if storage is None:  # the error came between two split files: the closed ones are complete
            return 0

        def text(lost: Counter[int]) -> str:
            return self._metadata_text(lost)

        lost = storage.salvage(self.version, text)
        for cid, n in lost.items():
            self.counts[cid] -= n
            self._file[cid] -= n
        self._finish_file()
        return sum(lost.values())

    # -- files -----------------------------------------------------------------------------------------
    def _file_name(self, index: int) -> str:
        suffix = ".mcap" if self.storage_plugin == StoragePlugin.MCAP else ".db3"
        return f"{self.path.name}_{index}{suffix}"

    def _finish_file(self) -> None:
        """The open file is closed: name it, list it, and write metadata.yaml for all files."""
        storage: Any = self.storage
        self.storage = None
        name = storage.path.name
        if self.max_bytes is not None:  # split files are numbered from the first on, as rosbag2 does
            name = self._file_name(len(self.files))
            storage.path.rename(self.path / name)
        lo, hi = self._file_times
        count = sum(self._file.values())
        self.files.append(
            {
                "path": name,
                "starting_time": {"nanoseconds_since_epoch": lo if count else 0},
                "duration": {"nanoseconds": max(0, hi - lo) if count else 0},
                "message_count": count,
            }
        )
        tmp = self.metapath.with_suffix(".yaml.tmp")
        tmp.write_text(self._metadata_text(with_root=True), "utf8")
        tmp.replace(self.metapath)

    def _next_file(self) -> None:
        old: Any = self.storage
        old.close(self.version, self._metadata_text())
        self._finish_file()
        new: Any = None
        try:
            new = self.STORAGE_PLUGINS[self.storage_plugin](self.path, self.compression_mode)
            for kind, connection, qos in old.added:
                if kind == "msgtype":
                    new.add_msgtype(connection)
                else:
                    new.add_connection(connection, qos)
        except WRITE_ERRORS:  # no room for the next file: the bag ends with the closed ones
            if new is not None:
                new.abort()
            for partial in (self.path / f"{self.path.name}.mcap", self.path / f"{self.path.name}.db3"):
                partial.unlink(missing_ok=True)
            raise
        self.storage = new
        self._file, self._file_times = Counter(), (2**63 - 1, 0)

    def _metadata_text(self, lost: Counter[int] | None = None, with_root: bool = False) -> str:
        """rosbag2 metadata (version 9) of all files: the closed ones and, unless closed, the open one."""
        counts = Counter(self.counts)
        counts.subtract(lost or Counter())
        files = self.files
        spans = [
            (f["starting_time"]["nanoseconds_since_epoch"], f["duration"]["nanoseconds"])
            for f in files
            if f["message_count"]
        ]
        spans = [(lo, lo + d) for lo, d in spans]
        if self.storage is not None and sum(self._file.values()):
            spans.append(self._file_times)
        start = min((lo for lo, _ in spans), default=0)
        ends = [hi for _, hi in spans]
        mode = self.compression_mode
        info = {
            "version": self.version,
            "storage_identifier": self.storage_plugin.name.lower(),
            "relative_file_paths": [f["path"] for f in files],
            "duration": {"nanoseconds": max(0, max(ends, default=0) - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(counts.values()),
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": c.topic,
                        "type": c.msgtype,
                        "serialization_format": c.ext.serialization_format,
                        "offered_qos_profiles": dump_qos_v9(c.ext.offered_qos_profiles),
                        "type_description_hash": c.digest,
                    },
                    "message_count": counts[c.id],
                }
                for c in self.connections
            ],
            "compression_format": self.compression_format if mode == CompressionMode.MESSAGE else "",
            "compression_mode": mode.name.lower() if mode == CompressionMode.MESSAGE else "",
            "files": files,
            "custom_data": self.custom_data or None,
            "ros_distro": "rosbags",
        }
        text = yaml.safe_dump(
            {"rosbag2_bagfile_information": info} if with_root else info,
            default_flow_style=False,
            sort_keys=False,
        )
        return text if with_root else text.strip()
