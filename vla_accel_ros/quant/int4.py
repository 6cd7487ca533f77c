"""Group-wise int4 weights in the layout of PyTorch's CPU int4 kernel (tinygemm).

One weight matrix becomes 4-bit codes (two per byte, in the kernel's packed order) plus one bf16
(scale, zero) pair per group of `group` input channels: w ~= (code - 8) * scale + zero. That is
0.5 + 4 / group bytes per weight (0.5625 at group 64: 28.1 % of bf16). The kernel
`aten._weight_int4pack_mm_for_cpu` multiplies bf16 activations by these weights without expanding
them; it is the only int4 kernel that is fast on this CPU (see docs/PRECISION.md).
The packed order depends on the CPU's vector width (AVX2 and AVX-512 builds differ): quantize where the
model runs, from full-precision weights; never ship packed buffers between machines.

On CUDA the same codes and (scale, zero) pairs go to torch's CUDA tinygemm kernel
(`aten._weight_int4pack_mm`, sm80 and newer), which wants the codes two per byte first ([N][K/2] uint8,
high nibble first) and tiles them itself (`innerKTiles`); `pack` and `int4_matmul` pick the kernel from
the tensors' device, so the ladder's layers serve either device unchanged. This path exists and has its
tests (skipped without a GPU), but no GPU has run it in this package yet.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

KERNEL_GROUP_SIZES = (32, 64, 128, 256)  # what the CPU kernel accepts
_MID = 8  # code that maps to `zero`


@dataclass
class Int4Weight:
    """Unpacked codes and their group parameters (reference form; the ladder keeps only the packed one)."""

    codes: torch.Tensor  # (N, K) uint8 in [0, 15]
    scales: torch.Tensor  # (N, K // group) float32, exactly bf16-representable
    zeros: torch.Tensor  # (N, K // group) float32, exactly bf16-representable
    group: int

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight these codes stand for: what every ladder mode multiplies by."""
        n, k = self.codes.shape
        q = self.codes.float().reshape(n, k // self.group, self.group) - _MID
        return (q * self.scales.unsqueeze(-1) + self.zeros.unsqueeze(-1)).reshape(n, k)


def check_shape(out_features: int, in_features: int, group: int) -> None:
    """Raise ValueError unless the CPU kernel can take a weight of this shape."""
    if group not in KERNEL_GROUP_SIZES:
        raise ValueError(f"group size {group} not supported by the int4 kernel (one of {KERNEL_GROUP_SIZES})")
    if in_features % group:
        raise ValueError(f"in_features {in_features} is not a multiple of the group size {group}")
    if out_features % 16:
        raise ValueError(f"out_features {out_features} is not a multiple of 16 (int4 kernel layout)")


def quantize_int4(weight: torch.Tensor, group: int = 64) -> Int4Weight:
    """Round-to-nearest asymmetric int4 per group, with scale and zero rounded to bf16 first so the
    codes are the best ones for the parameters that are actually stored."""
    if weight.ndim != 2:
        raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    check_shape(*weight.shape, group)
    return quantize_groups(weight, group)


def quantize_groups(weight: torch.Tensor, group: int) -> Int4Weight:
    """quantize_int4 without the kernel's shape rules (for tables read by row, never multiplied)."""
    n, k = weight.shape
    if k % group:
        raise ValueError(f"row length {k} is not a multiple of the group size {group}")
    w = weight.detach().float().reshape(n, k // group, group)
    lo, hi = w.amin(-1), w.amax(-1)
    scales = ((hi - lo) / 15).clamp_min(1e-8).to(torch.bfloat16).float()
    zeros = (lo + _MID * scales).to(torch.bfloat16).float()
    codes = torch.round((w - (zeros - _MID * scales).unsqueeze(-1)) / scales.unsqueeze(-1)).clamp(0, 15)
    return Int4Weight(codes.reshape(n, k).to(torch.uint8), scales, zeros, group)


CUDA_INNER_K_TILES = (8, 4, 2)  # what the CUDA kernel accepts, the widest tiling that fits first


def cuda_inner_k_tiles(out_features: int, in_features: int) -> int:
    """The CUDA kernel's K tiling for a weight of this shape; ValueError if it cannot take the shape."""
    if out_features % 8:
        raise ValueError(f"out_features {out_features} is not a multiple of 8 (CUDA int4 kernel layout)")
    for tiles in CUDA_INNER_K_TILES:
        if in_features % (tiles * 16) == 0:
            return tiles
    raise ValueError(f"in_features {in_features} is not a multiple of 32 (CUDA int4 kernel layout)")


def pack(q: Int4Weight) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed codes, scales_and_zeros (K/group, N, 2) bf16) as the kernel of the codes' device wants them:
    on the CPU (N, K/2) uint8, on CUDA the kernel's own int32 tiles."""
    scales_and_zeros = (
        torch.stack([q.scales, q.zeros], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
    )
    if q.codes.device.type == "cuda":
        n, k = q.codes.shape
        codes = q.codes.to(torch.uint8)
        pairs = ((codes[:, 0::2] << 4) | codes[:, 1::2]).contiguous()
        packed = torch.ops.aten._convert_weight_to_int4pack(pairs, cuda_inner_k_tiles(n, k))
        return packed, scales_and_zeros
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.codes.to(torch.int32).contiguous(), 1)
    return packed, scales_and_zeros


def int4_matmul(
    x: torch.Tensor, packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int
) -> torch.Tensor:
    """x (M, K) bf16 @ W^T -> (M, N) bf16; fp32 accumulation inside the kernel (CPU or CUDA, by device)."""
    if x.device.type == "cuda":
        return torch.ops.aten._weight_int4pack_mm(x, packed, group, scales_and_zeros)
    return torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, group, scales_and_zeros)


CPU_ROW_BLOCKS = (64, 32)  # rows per block of the CPU kernel's packed order: AVX-512 builds, AVX2 builds


def unpack_cpu(packed: torch.Tensor, out_features: int, in_features: int, block: int) -> torch.Tensor:
    """The (N, K) uint8 codes behind a CPU-packed weight: the inverse of `pack` on the CPU.

    The kernel packs rows in blocks of `block` (64 on AVX-512 builds, 32 on AVX2 ones), each block stored
    as K columns of block / 2 bytes, byte j holding row j in its low nibble and row block / 2 + j in its
    high one (aten/src/ATen/native/cpu/int4mm_kernel.cpp). That order is the kernel's private layout:
    `cpu_row_block` finds which block this machine uses, by a round trip, before anything relies on it.
    `out_features` must be a multiple of `block` (partial blocks are packed differently).
    """
    b = packed.view(out_features // block, in_features, block // 2)
    codes = torch.stack((b & 15, b >> 4), dim=1)  # (blocks, 2 halves, K, block / 2 rows)
    return codes.transpose(2, 3).reshape(out_features, in_features)


def dequantize_cpu(
    packed: torch.Tensor, scales_and_zeros: torch.Tensor, group: int, out_features: int, in_features: int
) -> torch.Tensor:
    """The bf16 weight a CPU-packed int4 copy stands for, rebuilt from the packed bytes alone: what a
    prefill on a bf16 GEMM from the one stored int4 copy has to compute for every layer, every action."""
    block = cpu_row_block()
    if block is None:
        raise NotImplementedError("this CPU build packs int4 in an order unpack_cpu does not read")
    codes = unpack_cpu(packed, out_features, in_features, block).view(out_features, -1, group)
    scales, zeros = scales_and_zeros.transpose(0, 1).unbind(-1)  # (N, K / group) each
    w = (codes.to(torch.bfloat16) - _MID) * scales.unsqueeze(-1) + zeros.unsqueeze(-1)
    return w.view(out_features, in_features)


@functools.cache
def cpu_row_block() -> int | None:
    """The row block of this machine's CPU int4 packing (it depends on the build's vector width), found
    by packing known codes and reading them back; None if no known order reads them back."""
    n, k = 2 * max(CPU_ROW_BLOCKS), 64
    codes = (torch.arange(n * k).reshape(n, k) * 7 % 16).to(torch.uint8)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 1)
    for block in CPU_ROW_BLOCKS:
        if torch.equal(unpack_cpu(packed, n, k, block), codes):
            return block
    return None
