"""bitsandbytes NF4 decoder weights, on CUDA only: the QLoRA-format row beside torch's int4 ladder.

OpenVLA's own 4-bit path is bitsandbytes (`load_in_4bit`), so a GPU comparison needs its numbers next to
the ladder's. bitsandbytes is an optional dependency (`requirements/cuda.txt`) and its 4-bit kernels are
CUDA kernels, so it is imported here, and only once the model is known to be on a CUDA device; on a CPU
the ladder (quant.ladder) is the 4-bit path. The same seven projections the ladder quantizes are
replaced; the vision towers, projector, table and head stay as loaded. This is one static format (no
DyQ modes): `Policy.precisions` does not change.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from vla_accel_ros.quant.ladder import DECODER_LINEARS, find_linears


def nf4_unavailable(device: torch.device | str) -> str | None:
    """Why NF4 cannot run on `device` (None: it can): CUDA is required, and bitsandbytes installed."""
    if torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return f"NF4 (bitsandbytes) runs on CUDA only; the model is on {device}"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install -r requirements/cuda.txt)"
    return None


def quantize_nf4(model: nn.Module, compute_dtype: torch.dtype = torch.bfloat16) -> int:
    """Replace the decoder's q/k/v/o and gate/up/down projections of a CUDA `model` in place by
    bitsandbytes Linear4bit (NF4, `compute_dtype` matmuls); returns how many. ValueError without CUDA
    or bitsandbytes (see nf4_unavailable), before anything is changed."""
    device = next(model.parameters()).device
    why = nf4_unavailable(device)
    if why:
        raise ValueError(why)
    from bitsandbytes.nn import Linear4bit

    found = find_linears(model, DECODER_LINEARS)
    for _, parent, attribute, layer in found:
        q = Linear4bit(
            layer.in_features,
            layer.out_features,
            bias=layer.bias is not None,
            compute_dtype=compute_dtype,
            quant_type="nf4",
        )
        q.load_state_dict({k: v.to("cpu", torch.bfloat16) for k, v in layer.state_dict().items()})
        setattr(parent, attribute, q.to(device))  # bitsandbytes quantizes on the move to CUDA
    return len(found)
