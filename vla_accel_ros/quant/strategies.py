"""Ways to keep several precisions of the decoder linears, side by side for `vla-accel bench-precision`.

- "int4-master" (what the ladder uses, quant/ladder.py): one int4 copy; modes switch activations.
- "int4-whole": the same ladder with the token table and the (action-bins) head in the copy too.
- "int8-master": one int8 per-channel copy; "w8a16" runs on it directly, "w4a16" needs int4 group
  codes re-derived from the int8 values and packed at every switch into 4 bits (held while active).
- "pre-packed": one ready copy per mode (int4 packed, int8, bf16 dense); a switch is a flag, memory
  is the sum of the copies.
The two int4 ones are served by the runtime (`quant_vocab` picks); the others exist to be measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vla_accel_ros.params.tables import QUANT_GROUP_SIZE
from vla_accel_ros.quant.int4 import int4_matmul, pack, quantize_int4
from vla_accel_ros.quant.ladder import DECODER_LINEARS, Ladder, find_linears, quantize_model
from vla_accel_ros.quant.memory import storage_bytes


def int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = weight.detach().float()
    scales = (w.abs().amax(dim=1) / 127).clamp_min(1e-12).to(torch.bfloat16)
    return torch.round(w / scales.float().unsqueeze(1)).clamp(-127, 127).to(torch.int8), scales


def int8_matmul(x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 weights, bf16 activations (aten._weight_int8pack_mm, per-channel scales)."""
    return torch.ops.aten._weight_int8pack_mm(x, codes, scales)


class _SwitchableLinear(nn.Module):
    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = linear.in_features, linear.out_features, group
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(), False)
        self.mode = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        y = self._mm(x2).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class Int8MasterLinear(_SwitchableLinear):
    """A linear kept as one int8 copy that re-derives int4 codes at each switch (to be measured)."""

    modes = ("w8a16", "w4a16")

    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__(linear, group)
        codes, scales = int8_per_channel(linear.weight)
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.derived: tuple[torch.Tensor, torch.Tensor] | None = None  # int4 copy while in w4a16
        self.switch("w8a16")

    def switch(self, mode: str) -> None:
        if mode == self.mode:
            return
        if mode == "w4a16":
            master = self.codes.float() * self.scales.float().unsqueeze(1)
            self.derived = pack(quantize_int4(master, self.group))
        else:
            self.derived = None
        self.mode = mode

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        if self.derived is not None:
            return int4_matmul(x, *self.derived, self.group)
        return int8_matmul(x, self.codes, self.scales)


class PrePackedLinear(_SwitchableLinear):
    """A linear holding one ready copy per mode: instant switches at the sum of the copies' memory."""

    modes = ("w4a16", "w8a16", "bf16")

    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__(linear, group)
        packed, scales_and_zeros = pack(quantize_int4(linear.weight, group))
        codes, scales = int8_per_channel(linear.weight)
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("dense", linear.weight.detach().to(torch.bfloat16).clone())
        self.mode = "w4a16"

    def switch(self, mode: str) -> None:
        self.mode = mode

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "w4a16":
            return int4_matmul(x, self.packed, self.scales_and_zeros, self.group)
        if self.mode == "w8a16":
            return int8_matmul(x, self.codes, self.scales)
        return F.linear(x, self.dense)


@dataclass
class Strategy:
    """One way of storing several precisions, with its layers, so bench-precision can compare them."""

    name: str
    description: str
    modes: list[str]
    layers: list[nn.Module] = field(default_factory=list)
    ladder: Ladder | None = None

    def set(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"strategy {self.name} has no mode {mode!r} (modes: {self.modes})")
        if self.ladder is not None:
            self.ladder.set(mode)
        else:
            for layer in self.layers:
                layer.switch(mode)

    def held_bytes(self) -> int:
        """Every tensor the decoder linears hold now (for int8-master: plus the derived copy, if any)."""
        if self.ladder is not None:
            return self.ladder.held_bytes()
        tensors = [t for layer in self.layers for t in layer.buffers()]
        tensors += [t for layer in self.layers for t in (getattr(layer, "derived", None) or ())]
        return storage_bytes(tensors)


STRATEGIES = {
    "int4-master": "one int4 copy (group-wise); modes switch the activations only",
    "int4-whole": "int4-master plus the token table (int4 rows) and the head cut to the action bins (int4)",
    "int8-master": "one int8 per-channel copy; w4a16 re-derived from it (requantize + pack) at each switch",
    "pre-packed": "one ready copy per mode: int4 packed + int8 + bf16 dense",
}


def install_strategy(model: nn.Module, name: str, group: int = QUANT_GROUP_SIZE) -> Strategy:
    """Replace the decoder linears of `model` in place by the layers of strategy `name` (int4 groups of
    `group`: by default the graph's, inference_node.quant_group_size)."""
    if name in ("int4-master", "int4-whole"):
        ladder = quantize_model(model, group=group, vocab=name == "int4-whole")
        return Strategy(name, STRATEGIES[name], ladder.names, list(ladder.layers.values()), ladder)
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; known: {sorted(STRATEGIES)}")
    cls = Int8MasterLinear if name == "int8-master" else PrePackedLinear
    layers = []
    with torch.no_grad():
        for _, parent, child_name, linear in find_linears(model, DECODER_LINEARS):
            layers.append(cls(linear, group))
            setattr(parent, child_name, layers[-1])
    return Strategy(name, STRATEGIES[name], list(cls.modes), layers)
