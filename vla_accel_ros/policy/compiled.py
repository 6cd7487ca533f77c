"""The decoder compiled by torch.compile (Inductor's CPU backend): the same model, fewer dispatches.

A one-token decode pass of the realistic model is about twice its weight reading: the rest is 30
layers of small ops (norms, rotary, attention over a short cache, dtype casts around each int4 matmul)
dispatched one by one from Python. Inductor fuses those into C++ kernels (a compiler is on every
machine the package supports); the int4 matmuls stay the same aten kernels, so results are those of
the eager model up to float reassociation. The cost is a cold compile per model format and per ladder
mode (about 1-4 minutes each on 2 cores, cached on disk by Inductor for the next start), which the
benchmarks report apart and keep out of their medians. Opt-in (`inference_node.compile_decoder`);
`vla-accel bench-precision --compile` measures it beside the eager baselines (docs/PRECISION.md).
"""

from __future__ import annotations

from typing import Any

# Every model's decoder shares one code object (transformers' forward), and each format, ladder mode and
# prefix length may add a compiled variant: torch's default limit (8) would silently fall back to eager.
RECOMPILE_LIMIT = 64


def compile_decoder(model: Any) -> None:
    """Run `model.llama.forward` through its compiled form (dynamic shapes: prefill, one-token decode
    and verify passes of any length share a graph per format). Idempotent.

    The compiled function is the class's forward, bound to this decoder as a method: a deep copy of the
    model then binds it to the copy (copy's rule for methods), where compiling the bound method would
    keep calling the original's decoder from every copy."""
    import types

    import torch

    llama = model.llama
    if is_compiled(model):
        return
    dynamo = torch._dynamo.config
    dynamo.recompile_limit = max(dynamo.recompile_limit, RECOMPILE_LIMIT)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
    llama.forward = types.MethodType(torch.compile(_own_copy(type(llama).forward), dynamic=True), llama)


def _own_copy(fn: Any) -> Any:
    """`fn` with a code object of its own. Dynamo keeps one cache per code object: decoders compiled
    from the one class forward would share it, and every call would check the guards of every other
    format's graphs first (measured on the built-in model with fp32, bf16 and int4 compiled in one
    process: int4 25.3 ms per action shared, 14.7 ms with a code object each)."""
    import types

    code = fn.__code__.replace()
    copy = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__, copy.__doc__ = fn.__qualname__, fn.__doc__
    return copy


def uncompile_decoder(model: Any) -> None:
    """Back to the eager forward (a benchmark that compiled a model for its timings only)."""
    if is_compiled(model):
        del model.llama.forward


def is_compiled(model: Any) -> bool:
    llama = getattr(model, "llama", None)
    return llama is not None and "forward" in vars(llama)
