"""The decoder compiled by torch.compile (Inductor's CPU backend): the same model, fewer dispatches.

A one-token decode pass of the realistic model is about twice its weight reading: the rest is 30
layers of small ops (norms, rotary, attention over a short cache, dtype casts around each int4 matmul)
dispatched one by one from Python. Inductor fuses those into C++ kernels (a compiler is on every
machine the package supports); the int4 matmuls stay the same aten kernels, so results are those of
the eager model up to float reassociation. The cost is a cold compile per model format and per ladder
mode (about 2-4 minutes each on 2 cores, cached on disk by Inductor for the next start), which the
benchmarks report apart and keep out of their medians. Opt-in: `inference_node.compile_decoder`.
"""

from __future__ import annotations

from typing import Any

# Every model's decoder shares one code object (transformers' forward), and each format, ladder mode and
# prefix length may add a compiled variant: torch's default limit (8) would silently fall back to eager.
RECOMPILE_LIMIT = 64


def compile_decoder(model: Any) -> None:
    """Replace `model.llama.forward` by its compiled form (dynamic shapes: prefill, one-token decode and
    verify passes of any length share one graph per format). Idempotent."""
    import torch

    llama = model.llama
    if getattr(llama, "_vla_compiled", False):
        return
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
    llama.forward = torch.compile(llama.forward, dynamic=True)
    llama._vla_compiled = True


def is_compiled(model: Any) -> bool:
    return bool(getattr(getattr(model, "llama", None), "_vla_compiled", False))
