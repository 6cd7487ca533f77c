"""Keep glibc's malloc from returning and re-mapping the large blocks every forward pass allocates.

glibc serves blocks above its mmap threshold (128 KiB, raised dynamically as such blocks are freed)
with a fresh `mmap` and gives them back with `munmap` when freed, so a pass whose activations and
temporaries are a few MiB each pays page faults on every allocation. Which passes pay depends on what
ran before (the dynamic threshold follows the last frees): measured on the realistic model, 2 threads,
a w4a16 prefill took 134 ms right after an fp32 action and 89 ms with the thresholds fixed (fp32 160 ->
135 ms, bf16 93 -> 87 ms in the same run). Fixing the thresholds once per process makes every
format's time its own. Memory stays bounded by the process's peak: freed blocks are reused, not
returned, until more than `TRIM_BYTES` are free at the top of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest allowed mmap threshold on 64-bit
TRIM_BYTES = 1024 * 1024 * 1024

_tuned: list[bool] = []


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once); False where libc is not glibc."""
    if _tuned:
        return _tuned[0]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # musl and others have no mallopt: nothing to tune
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    _tuned.append(ok)
    return ok
