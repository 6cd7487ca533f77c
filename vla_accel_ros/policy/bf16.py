"""The bf16 baseline: the same model with weights and activations cast to bf16.

DyQ-VLA quotes its speed-ups against bf16, and on a CPU with native bf16 (AMX, avx512_bf16) it is the
faster full precision, so every benchmark measures it beside fp32. It is a cast of the loaded fp32
model (the stored checkpoint stays fp32), served as the single precision "bf16".
"""

from __future__ import annotations

from typing import Any

import torch

from vla_accel_ros.policy.runtime import Policy, PolicyInput


class Bf16Policy(Policy):
    """A Policy whose model and inputs are bf16; its one precision is named "bf16" in every record."""

    def preprocess(self, inp: PolicyInput) -> Any:
        images, state, prompt = super().preprocess(inp)
        return {k: v.bfloat16() for k, v in images.items()}, state.bfloat16(), prompt

    @property
    def precisions(self) -> list[str]:
        return ["bf16"]


def cast_bf16(policy: Policy) -> Bf16Policy:
    """`policy`'s model cast to bf16 in place, as a Bf16Policy (no draft: the speculative rows run on
    fp32 or the ladder). Only the package's own model format: an OpenVLA checkpoint loads in bf16 with
    its `dtype` option instead."""
    if type(policy) is not Policy:
        raise ValueError(f"a bf16 cast needs the package's own model format, not {type(policy).__name__}")
    return Bf16Policy(policy.model.to(torch.bfloat16))
