"""The physical limit beside every decode time: this machine's read bandwidth, and what a pass reads.

A one-token decode pass is memory-bound: it streams every decoder weight once (in whatever format the
model holds it), the action bins of the head and the KV cache so far. So `bytes / bandwidth` is the
fastest that pass can be on this machine, and the ratio measured / limit says how much of a decode
pass is not weight reading (attention, norms, rotary, Python dispatch) -- what kernels cannot fix.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from vla_accel_ros.quant.memory import storage_bytes


def read_bandwidth(mib: int = 512, repeats: int = 5) -> dict[str, Any]:
    """The best of `repeats` reductions over a `mib` MiB fp32 tensor (far above any cache), with
    torch's current thread count: GB/s as a decode pass can see it, not the DIMMs' datasheet."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32)
    x.sum()  # first touch: page faults stay out of the timing
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t0)
    nbytes = x.numel() * x.element_size()
    return {
        "gb_per_s": nbytes / best / 1e9,
        "bytes": nbytes,
        "threads": torch.get_num_threads(),
        "method": f"torch.sum over a {mib} MiB fp32 tensor, best of {max(1, repeats)}, "
        f"{torch.get_num_threads()} torch threads",
    }


def _head_bytes(model: nn.Module) -> int:
    """What scoring reads of the head: the action-bin rows only (VlaModel.score), else all of it."""
    head = model.lm_head
    if isinstance(head, nn.Linear):
        rows = head.out_features - model.action_first_id
        return rows * head.in_features * head.weight.element_size()
    return storage_bytes(list(head.buffers()) + list(head.parameters()))


def mean_decode_context(config: Any) -> int:
    """The KV length of an action's average decode pass: the prefix (cameras, proprio, prompt) plus
    half the action's tokens."""
    prefix = len(config.cameras) * config.tokens_per_image + 1 + config.prompt_length
    return prefix + config.action_dim // 2


def decode_pass_bytes(model: nn.Module, context_tokens: int) -> int:
    """Bytes one decode pass of a VlaModel must read: every decoder layer and the final norm as the
    model holds them (int4 codes and scales for the ladder), the head's action rows, one embedding row
    and the KV cache of `context_tokens` (keys and values of every layer, in the activations' dtype)."""
    llama = model.llama
    weights = storage_bytes(
        [t for m in (llama.layers, llama.norm) for t in list(m.parameters()) + list(m.buffers())]
    )
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_heads
    act_bytes = model.llama.norm.weight.element_size()
    kv = 2 * cfg.num_layers * cfg.num_kv_heads * head_dim * context_tokens * act_bytes
    embed_row = cfg.hidden_size * act_bytes
    return weights + _head_bytes(model) + kv + embed_row


def limit_ms(nbytes: int, bandwidth: dict[str, Any]) -> float:
    """The fastest a pass reading `nbytes` can be at the measured bandwidth, in ms."""
    return nbytes / (bandwidth["gb_per_s"] * 1e9) * 1e3
