"""The modes of the precision ladder: one int4 weight copy, activations at 16, 8 or 4 bits.

A mode is named for what it runs. Only "w4a16" has a fast kernel on this CPU (int4 weights with
bf16 activations, `aten._weight_int4pack_mm_for_cpu`, prefill and decode alike). Int8 x int8
(`torch._int_mm`) and int4 x dynamic-int8 (`aten._dyn_quant_matmul_4bit`) exist but are 10-100x slower
here (no VNNI, no KleidiAI on this x86 CPU; measured by `vla-accel bench-precision`), so the lower
modes are accuracy emulations: they give the numerics of W4A8 / W4A4 at the speed of W4A16, and
their names end in "-emu" so no report can mistake them for a speed-up.
"""

from __future__ import annotations

from dataclasses import dataclass

INT4_KERNEL = "aten._weight_int4pack_mm_for_cpu (int4 x bf16, fp32 accumulate)"


@dataclass(frozen=True)
class Mode:
    """One rung of the precision ladder: activation bits and grouping over the shared int4 weights.

    Validated on creation, so a mode the kernels cannot run is refused before it reaches the graph.
    """

    name: str
    act_bits: int  # 16: bf16 activations; 2..8: integer activations
    act_group: int | None = None  # None: one scale per token; else per token and group of channels
    emulated: bool = False  # True: the numerics of the mode, run on the w4a16 kernel
    kernel: str = INT4_KERNEL

    def __post_init__(self) -> None:
        if self.act_bits != 16 and not 2 <= self.act_bits <= 8:
            raise ValueError(f"mode {self.name}: act_bits must be 16 or 2..8, got {self.act_bits}")
        if self.act_bits == 16 and self.act_group is not None:
            raise ValueError(f"mode {self.name}: bf16 activations take no group")
        if self.act_bits != 16 and not self.emulated:
            raise ValueError(f"mode {self.name}: integer activations have no fast kernel: mark it emulated")
        if self.emulated != self.name.endswith("-emu"):
            raise ValueError(f"mode {self.name}: emulated modes, and only they, are named '...-emu'")

    def describe(self) -> str:
        acts = (
            "bf16"
            if self.act_bits == 16
            else f"int{self.act_bits} "
            + ("per token" if self.act_group is None else f"per token and {self.act_group} channels")
        )
        tail = " (accuracy emulation: run on the w4a16 kernel)" if self.emulated else ""
        return f"int4 weights, {acts} activations{tail}"


# Lowest precision first, the top mode last (the order PrecisionPolicy and the node params use).
DEFAULT_MODES: tuple[Mode, ...] = (
    Mode("w4a4-emu", act_bits=4, act_group=32, emulated=True),
    Mode("w4a8-emu", act_bits=8, emulated=True),
    Mode("w4a16", act_bits=16),
)
