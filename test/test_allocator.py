"""policy/allocator.py: glibc's thresholds are fixed once per process by the thread set-up."""

from __future__ import annotations

import ctypes.util
import platform
import subprocess
import sys

import pytest

from vla_accel_ros.policy import allocator

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_tune_is_applied_once_and_reports_glibc() -> None:
    first = allocator.tune()
    assert first is GLIBC
    assert allocator.tune() is first  # cached: mallopt runs once per process
    assert allocator._tuned == [first]


def test_use_threads_tunes_the_allocator_in_a_fresh_process() -> None:
    """A fresh interpreter: nothing has tuned it before use_threads."""
    code = (
        "from vla_accel_ros.policy import allocator, threads\n"
        "assert allocator._tuned == []\n"
        "threads.use_threads(1)\n"
        "print(allocator._tuned)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"[{GLIBC}]"


@pytest.mark.skipif(not GLIBC or ctypes.util.find_library("c") is None, reason="needs glibc's mallopt")
def test_thresholds_are_ones_glibc_accepts() -> None:
    """mallopt returns 1 only for values in range: the 32 MiB mmap threshold is glibc's 64-bit maximum."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    assert libc.mallopt(allocator.M_MMAP_THRESHOLD, allocator.MMAP_BYTES) == 1
    assert libc.mallopt(allocator.M_TRIM_THRESHOLD, allocator.TRIM_BYTES) == 1
