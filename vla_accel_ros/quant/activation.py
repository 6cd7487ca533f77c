"""Symmetric integer quantization of activations (the "AX" of DyQ's W4AX modes).

The ladder's weights never change; a lower mode only rounds the activations entering each quantized
linear more coarsely. With one scale per token the integer codes themselves (|code| <= 127, exact in
bf16) go through the int4 kernel and the scale is applied to its output, so the product is the one a
true W4A8 kernel computes. With one scale per group of channels (needed for 4-bit activations to
survive outlier channels) the rounded values are formed in fp32 first; passing them to the bf16
kernel adds a rounding of at most 2^-9 relative, far below the 4-bit step.
"""

from __future__ import annotations

import torch


def _qmax(bits: int) -> int:
    if not 2 <= bits <= 8:
        raise ValueError(f"integer activation bits must be in 2..8, got {bits}")
    return 2 ** (bits - 1) - 1


def quantize_per_token(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (M, K) -> (integer-valued codes (M, K) float32, scales (M, 1)); x ~= codes * scales."""
    qmax = _qmax(bits)
    scales = x.abs().amax(dim=-1, keepdim=True).float().clamp_min(1e-12) / qmax
    return torch.round(x.float() / scales).clamp(-qmax, qmax), scales


def fake_quantize(x: torch.Tensor, bits: int, group: int | None = None) -> torch.Tensor:
    """x rounded to `bits`-bit integers per token (group None) or per token and group of channels."""
    if group is None:
        codes, scales = quantize_per_token(x, bits)
        return codes * scales
    if x.shape[-1] % group:
        raise ValueError(f"{x.shape[-1]} channels are not a multiple of the activation group {group}")
    g = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)
    codes, scales = quantize_per_token(g, bits)
    return (codes * scales).reshape(x.shape)
