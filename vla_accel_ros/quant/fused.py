"""One int4 matmul for sibling projections that read the same input: q/k/v, and gate/up.

A one-token decode pass of the realistic model is 210 int4 matmuls of one row each, and half its time is
not the weight reading but what surrounds every call: the kernel's own start-up, the casts of the
activation to bf16 and of the result back, the activation rounding of the low modes. The attention's
q, k and v projections multiply the same hidden state, and so do the MLP's gate and up projections, so
their int4 rows can be one matrix: 4 matmuls per layer instead of 7, one cast and one rounding of the
input instead of three. The codes, scales and zeros are exactly those of the separate layers (int4
groups run along the input dimension, within a row), so memory is unchanged and each layer's output is
the same numbers (measured in test/test_quant.py).

The layers keep their names and modules (transformers' attention and MLP call them one by one): each
is an `Int4Linear` whose buffers are views into the shared copy. The first sibling called with an input
runs the shared matmul; the others then take their slice of its result, computed from the same tensor
object. A sibling called with another tensor (nothing in transformers' Llama does) computes its own
rows alone, so the result never depends on the call order.
"""

from __future__ import annotations

from typing import Any

import torch

FUSED_SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
ROW_ALIGN = 64  # the CPU kernel packs its rows in blocks of (at most) 64: each sibling is whole blocks


class SharedMatmul:
    """The concatenated int4 layer of some siblings, and the result of its last call until every
    sibling has taken its part (then dropped, so no activation is held between passes)."""

    def __init__(self, core: Any, sizes: tuple[int, ...]) -> None:
        self.core = core  # an Int4Linear over the siblings' rows, stacked in order
        self.sizes = sizes
        self._input: torch.Tensor | None = None
        self._parts: list[torch.Tensor | None] = [None] * len(sizes)

    def output(self, index: int, x: torch.Tensor, alone: Any) -> torch.Tensor:
        """Sibling `index`'s output for `x`: a slice of one shared matmul (`alone(x)` computes it by
        itself, for an input the siblings do not share)."""
        if self._input is not x or self._parts[index] is None:
            if any(p is not None for p in self._parts):  # a sibling never took its part: not shared input
                self._input, self._parts = None, [None] * len(self.sizes)
                return alone(x)
            self._input = x
            self._parts = list(self.core.compute(x).split(self.sizes, dim=-1))
        part, self._parts[index] = self._parts[index], None
        if all(p is None for p in self._parts):
            self._input = None
        return part

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_input": None, "_parts": [None] * len(self.sizes)}
