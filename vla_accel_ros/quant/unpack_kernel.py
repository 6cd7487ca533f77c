"""A prefill from the one int4 copy on the dense GEMM: the int4 codes unpacked per call by a C kernel.

PyTorch's CPU int4 kernel is memory-bound by design: it is the fastest there is for a decode (one row),
but a 45-row prefill is compute-bound and there it is slower than the dense bf16 GEMM of the same
weights (docs/PRECISION.md, kernel survey). The weights exist only as the int4 copy, so a dense prefill
has to rebuild each weight just before its matmul. Rebuilt with eager PyTorch ops that costs more than
it saves (a dozen full-size temporaries per layer); `csrc/int4_unpack.c` does it in one pass over the
packed bytes, writing W^T into one reused buffer that stays in the CPU's cache, and then the dense
GEMM reads it from there. Memory stays one int4 copy plus that buffer (the largest fused layer, counted
in the memory table).

The buffer's precision is the faster dense GEMM of the machine: bf16 where the CPU has native bf16
(avx512_bf16, AMX), fp32 where bf16 is emulated (AVX2), where the bf16 GEMM is 3x slower than fp32.
In fp32 the rebuilt weights are exactly those the int4 kernel computes with; in bf16 each is rounded
once more, to nearest (a relative 2^-9 at most), and the GEMM sums in another order: outputs are close
to the int4 kernel's, not bitwise equal (measured in test/test_unpack_kernel.py).

The library is built at first use with the host's C compiler for the host CPU (`-march=native`), into
a per-user cache keyed by the source, the flags and the CPU, and loaded with ctypes, which releases the
GIL for the call. Without a compiler, or if the build fails, `available()` is False and the ladder's
prefill stays on the int4 kernel: slower, never wrong.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from vla_accel_ros.evaluation.reporting import cpu_model_and_flags
from vla_accel_ros.quant.int4 import cpu_row_block

LOG = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("csrc") / "int4_unpack.c"
CACHE_ENV = "VLA_ACCEL_KERNEL_CACHE"  # where built kernels go (default ~/.cache/vla_accel_ros/kernels)
DISABLE_ENV = "VLA_ACCEL_NO_C_KERNELS"  # set to 1 to keep every matmul on PyTorch's own kernels
FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC")  # and -march: the host CPU's
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Rows from which the dense path beats the int4 kernel (the realistic decoder's linears, AVX-512 EPYC,
# 2 threads: int4 23 ms vs dense 25 ms at 16 rows, 42 vs 34 ms at 32, 63 vs 44 ms at 45), so a prefill
# goes dense and decode passes and KERV's verify passes (8 rows) stay on the int4 kernel.
MIN_ROWS = 24
# plain values, so that torch.compile reads them without tracing the loader: loaded, switched on, the
# packing's row block, the dense GEMM's dtype
_state: dict = {"ready": False, "enabled": True, "block": 0, "dtype": torch.float32}

_ARGS = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
         ctypes.c_void_p, ctypes.c_int]  # fmt: skip


def _cpu_flags() -> set[str]:
    return cpu_model_and_flags()[1]


@functools.cache
def dense_dtype() -> torch.dtype:
    """The precision of the dense prefill GEMM: bf16 where it is native, fp32 where it is emulated."""
    return torch.bfloat16 if NATIVE_BF16_FLAGS & _cpu_flags() else torch.float32


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vla_accel_ros" / "kernels")


def _build(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile into a temporary file and rename it into place, so that concurrent processes (the graph's
    nodes start together) never load a half-written library."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *flags, str(SOURCE), "-o", tmp], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def build_library(march: str = "native") -> ctypes.CDLL:
    """The kernels compiled for `march` (native: this CPU; the tests also build the AVX2 and the plain C
    paths to check them against each other), from the on-disk cache when built before.
    Raises OSError or CalledProcessError if no compiler or the build fails."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise OSError("no C compiler found (gcc or cc, or $CC)")
    flags = (*FLAGS, f"-march={march}")
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((compiler, *flags)).encode())
    key.update(" ".join(sorted(_cpu_flags())).encode())
    target = _cache_dir() / f"int4_unpack-{key.hexdigest()[:16]}.so"
    if not target.exists():
        _build(compiler, flags, target)
    lib = ctypes.CDLL(str(target))
    for name in ("vla_int4_unpack_t_bf16", "vla_int4_unpack_t_f32"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = _ARGS, ctypes.c_int
    return lib


@functools.cache
def library() -> ctypes.CDLL | None:
    """The kernels for this CPU, or None (with the reason logged once) when they cannot be had here."""
    if os.environ.get(DISABLE_ENV) == "1":
        return None
    if platform.system() != "Linux" or cpu_row_block() is None:
        LOG.info("int4 unpack kernel: not on this platform; the prefill stays on the int4 kernel")
        return None
    try:
        lib = build_library()
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", "") or err
        LOG.warning("int4 unpack kernel: build or load failed (%s); the prefill stays on the int4 kernel",
                    detail)  # fmt: skip
        return None
    _state.update(ready=True, block=cpu_row_block(), dtype=dense_dtype())
    return lib


def available() -> bool:
    """Whether dense prefills from the int4 copy can run here (builds the kernels on the first call)."""
    return library() is not None


def use_dense(rows: int, out_features: int) -> bool:
    """Whether a CPU matmul of `rows` rows runs dense (the kernels must have been loaded by `available`;
    the layer's rows must be whole row blocks, since the kernel packs a partial block differently)."""
    return rows >= MIN_ROWS and _state["ready"] and _state["enabled"] and out_features % _state["block"] == 0


@contextmanager
def dense_prefill(enabled: bool) -> Iterator[None]:
    """Within the block, prefills run on the dense path (if available) or all on the int4 kernel: the
    A/B of the benchmarks. Process-wide; not for use while another thread runs the model."""
    before, _state["enabled"] = _state["enabled"], enabled
    try:
        yield
    finally:
        _state["enabled"] = before


class _Buffers(threading.local):
    """One W^T buffer per thread, grown to the largest layer seen: two threads running prefills of two
    models (a node's target and a benchmark's baseline) never share one."""

    def __init__(self) -> None:
        self.flat: dict[torch.dtype, torch.Tensor] = {}

    def get(self, dtype: torch.dtype, k: int, n: int) -> torch.Tensor:
        flat = self.flat.get(dtype)
        if flat is None or flat.numel() < k * n:
            flat = self.flat[dtype] = torch.empty(k * n, dtype=dtype)
        return flat[: k * n].view(k, n)


_BUFFERS = _Buffers()


def unpack_t(
    packed: torch.Tensor,
    scales_and_zeros: torch.Tensor,
    group: int,
    n: int,
    k: int,
    dtype: torch.dtype,
    block: int | None = None,
    lib: ctypes.CDLL | None = None,
) -> torch.Tensor:
    """W^T (k, n) of a CPU-packed int4 weight in `dtype` (bf16 or fp32), in this thread's reused buffer:
    valid until the thread's next call. `block`: the packing's row block and `lib` the kernels (default
    this machine's; the tests check the other classes' paths too)."""
    lib, block = lib or library(), block or cpu_row_block()
    if lib is None or block is None:
        raise RuntimeError("the int4 unpack kernel is not available on this machine")
    if packed.dtype != torch.uint8 or packed.shape != (n, k // 2) or not packed.is_contiguous():
        raise ValueError(f"packed codes must be contiguous uint8 ({n}, {k // 2}), got {tuple(packed.shape)}")
    sz = scales_and_zeros.contiguous()
    if sz.dtype != torch.bfloat16 or sz.shape != (k // group, n, 2):
        raise ValueError(f"scales_and_zeros must be bf16 ({k // group}, {n}, 2), got {tuple(sz.shape)}")
    if dtype not in (torch.bfloat16, torch.float32):
        raise ValueError(f"unpack to bf16 or fp32, not {dtype}")
    out = _BUFFERS.get(dtype, k, n)
    fn = lib.vla_int4_unpack_t_bf16 if dtype == torch.bfloat16 else lib.vla_int4_unpack_t_f32
    if fn(packed.data_ptr(), sz.data_ptr(), n, k, group, block, out.data_ptr(), n) != 0:
        raise ValueError(f"int4 unpack kernel rejected shape n={n} k={k} group={group} block={block}")
    return out


def _dense_mm(
    x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int
) -> torch.Tensor:
    n, k = packed.shape[0], packed.shape[1] * 2
    return x @ unpack_t(packed, scales_and_zeros, group, n, k, x.dtype)


@torch.library.custom_op("vla_accel::int4_dense_mm", mutates_args=())
def _dense_mm_op(
    x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int
) -> torch.Tensor:
    """One opaque op for torch.compile: the buffer it writes is private, so the compiled graph neither
    breaks here nor sees an output that aliases anything."""
    return _dense_mm(x, packed, scales_and_zeros, group)


@_dense_mm_op.register_fake
def _(x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int) -> torch.Tensor:
    return x.new_empty(x.shape[0], packed.shape[0])


def dense_matmul(
    x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int
) -> torch.Tensor:
    """x (M, K) @ W^T -> (M, N) on the machine's faster dense GEMM (`dense_dtype`), W unpacked from the
    CPU-packed int4 copy just before; the result in that dtype. Eager calls skip the custom op's
    dispatch (tens of microseconds a call, 120 calls a prefill); compiled graphs get the opaque op."""
    x = x.to(_state["dtype"]).contiguous()
    if torch.compiler.is_compiling():
        return _dense_mm_op(x, packed, scales_and_zeros, group)
    return _dense_mm(x, packed, scales_and_zeros, group)


def buffer_bytes(shapes: list[tuple[int, int]]) -> int:
    """The transient W^T buffer a ladder with layers of these (out, in) shapes uses, in bytes."""
    if not available():
        return 0
    dense = [n * k for n, k in shapes if n % _state["block"] == 0]
    return max(dense, default=0) * torch.empty((), dtype=dense_dtype()).element_size()
