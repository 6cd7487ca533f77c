"""The DyQ-VLA precision ladder: one stored int4 copy of the decoder linears, several modes.

`quantize_model` replaces the decoder's q/k/v/o and gate/up/down projections in place by
`Int4Linear`s that hold only the packed int4 codes and their bf16 group scales. Every mode reads
those same tensors; a mode only decides how activations are rounded before the int4 kernel. So
switching is a pointer flip (microseconds) and memory does not grow with the number of modes.
A layer's q/k/v, and its gate/up, share one int4 matmul over their stacked rows (quant/fused.py).

Left at full precision: RMS norms, vision encoders, projector and proprio projection; also the token
embeddings and lm_head unless `vocab=True`, which adds them to the same copy (quant/vocab.py): the table
as int4 rows, the head cut to the action bins, an int4 linear like the others.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from vla_accel_ros.params.tables import QUANT_GROUP_SIZE
from vla_accel_ros.quant import unpack_kernel
from vla_accel_ros.quant.activation import fake_quantize, quantize_per_token
from vla_accel_ros.quant.fused import FUSED_SIBLINGS, ROW_ALIGN, SharedMatmul
from vla_accel_ros.quant.int4 import check_shape, cuda_inner_k_tiles, int4_matmul, pack, quantize_int4
from vla_accel_ros.quant.memory import storage_bytes
from vla_accel_ros.quant.modes import DEFAULT_MODES, Mode
from vla_accel_ros.quant.vocab import ActionHead, Int4Embedding, action_rows

DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LADDER_ATTR = "precision_ladder"
HEAD_MODE = Mode("w4a16", act_bits=16)


class _Selector:
    """The one mutable thing all quantized layers of a model share: the active mode."""

    __slots__ = ("mode",)

    def __init__(self, mode: Mode) -> None:
        self.mode = mode


class Int4Linear(nn.Module):
    """nn.Linear replacement computing with the ladder's int4 copy in the active mode."""

    def __init__(self, linear: nn.Linear, group: int, selector: _Selector) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group = linear.in_features, linear.out_features, group
        packed, scales_and_zeros = pack(quantize_int4(linear.weight, group))
        self.register_buffer("packed", packed)
        self.register_buffer("scales_and_zeros", scales_and_zeros)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)
        self._selector = selector

        self._shared: tuple[SharedMatmul, int] | None = None  # one matmul with its siblings (quant/fused.py)

    @classmethod
    def rows_of(cls, core: Int4Linear, start: int, stop: int) -> Int4Linear:
        """The layer made of output rows [start, stop) of `core`: its buffers are views, nothing is copied
        (`start` and `stop` on the kernel's row blocks, fused.ROW_ALIGN)."""
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features, layer.group = core.in_features, stop - start, core.group
        layer.register_buffer("packed", core.packed[start:stop])
        layer.register_buffer("scales_and_zeros", core.scales_and_zeros[:, start:stop])
        layer.register_buffer("bias", None if core.bias is None else core.bias[start:stop])
        layer._selector, layer._shared = core._selector, None
        return layer

    @property
    def shares_matmul(self) -> bool:
        """Whether this layer's rows are computed in one matmul with its siblings' (quant/fused.py)."""
        return self._shared is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shared is not None:
            shared, index = self._shared
            return shared.output(index, x, self.compute)
        return self.compute(x)

    def compute(self, x: torch.Tensor) -> torch.Tensor:
        """This layer's own matmul in the active mode."""
        mode = self._selector.mode
        x2 = x.reshape(-1, self.in_features)
        if mode.act_bits == 16:
            y = self._mm(x2.to(torch.bfloat16)).to(x.dtype)
        elif mode.act_group is None:
            codes, scales = quantize_per_token(x2, mode.act_bits)
            y = (self._mm(codes.to(torch.bfloat16)).float() * scales).to(x.dtype)
        else:
            y = self._mm(fake_quantize(x2, mode.act_bits, mode.act_group).to(torch.bfloat16)).to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        """x (M, K) bf16 @ W^T. Decode-sized calls on the int4 kernel (memory-bound: it reads a quarter
        of the bytes); prefill-sized ones on the dense GEMM, W unpacked from the same codes just before
        (compute-bound: the int4 kernel is slower there; quant/unpack_kernel.py)."""
        sz = self.scales_and_zeros  # a fused sibling's is a strided view: only its lone calls copy it
        if x.device.type == "cpu" and unpack_kernel.use_dense(x.shape[0], self.out_features):
            return unpack_kernel.dense_matmul(x, self.packed, sz, self.group)
        return int4_matmul(x.contiguous(), self.packed, sz.contiguous(), self.group)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}"


class Ladder:
    """The modes served by one model's int4 copy, and the switch between them.

    `set` may be called from any thread; `step` holds the switch for a whole control step, so a
    concurrent `set` lands between two steps, never inside one.
    """

    def __init__(
        self,
        modes: Sequence[Mode],
        layers: dict[str, nn.Module],
        selector: _Selector,
        group: int,
        bf16_bytes: int,
    ) -> None:
        self.modes = {m.name: m for m in modes}
        self.layers = layers
        self.group = group
        self.bf16_bytes = bf16_bytes  # what the replaced layers hold, were they stored in bf16
        self._selector = selector
        self._lock = threading.RLock()

    @property
    def names(self) -> list[str]:
        """Mode names, lowest precision first, top last."""
        return list(self.modes)

    @property
    def top(self) -> str:
        return self.names[-1]

    @property
    def mode(self) -> str:
        return self._selector.mode.name

    def set(self, name: str) -> None:
        if name not in self.modes:
            raise ValueError(f"unknown precision mode {name!r}; this ladder serves {self.names}")
        with self._lock:
            self._selector.mode = self.modes[name]

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one control step in `name`; switches requested meanwhile wait for the step to end."""
        with self._lock:
            self.set(name)
            yield

    def held_bytes(self) -> int:
        """Bytes of every tensor the quantized layers (and the int4 table) hold: all modes together."""
        return storage_bytes([t for layer in self.layers.values() for t in layer.buffers()])

    def transient_bytes(self) -> int:
        """Bytes of the buffer a dense prefill unpacks each weight into, one at a time (the largest
        matmul's; per thread that runs prefills), beside the stored copy: 0 where that path is off."""
        return unpack_kernel.buffer_bytes(self.matmul_shapes())

    def matmul_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of each int4 matmul the CPU runs: a fused group's shared one, not its parts."""
        shapes = set()
        for layer in self.layers.values():
            if isinstance(layer, Int4Linear) and layer.packed.device.type == "cpu":
                core = layer._shared[0].core if layer._shared is not None else layer
                shapes.add((core.out_features, core.in_features))
        return sorted(shapes)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()


def find_linears(model: nn.Module, names: Sequence[str]) -> list[tuple[str, nn.Module, str, nn.Linear]]:
    """(name, parent, attribute, layer) of each nn.Linear called one of `names` in the decoder."""
    root = getattr(model, "llama", model)  # VlaModel: only its Llama decoder
    found = []
    for parent_name, parent in root.named_modules():
        for child_name, child in parent.named_children():
            if child_name in names and isinstance(child, nn.Linear):
                found.append((f"{parent_name}.{child_name}".lstrip("."), parent, child_name, child))
    return found


def quantize_model(
    model: nn.Module,
    group: int = QUANT_GROUP_SIZE,
    modes: Sequence[Mode] = DEFAULT_MODES,
    targets: Sequence[str] = DECODER_LINEARS,
    vocab: bool = False,
    fuse: bool = True,
) -> Ladder:
    """Replace the decoder linears of `model` in place by one int4 copy serving `modes` (lowest
    first, top last; the model starts in the top mode). Every layer is checked before any is changed.

    vocab: also the token embeddings and the lm_head, the head cut to the action bins.
    fuse: q/k/v and gate/up of a layer share one int4 matmul where they can (quant/fused.py; on the CPU,
    each sibling's rows a multiple of the kernel's row block): the same codes and outputs, fewer calls.
    `model` is a VlaModel or an OpenVlaModel: both name their Llama decoder `llama` (the only part
    searched for `targets`, so vision towers and projector stay at the checkpoint's precision) and
    their head `lm_head`.
    A draft that reads the target's dense embedding or head must be built before this."""
    if hasattr(model, LADDER_ATTR):
        raise ValueError("model is already quantized")
    if not modes or len({m.name for m in modes}) != len(modes):
        raise ValueError(f"modes must be distinct and non-empty, got {[m.name for m in modes]}")
    found = find_linears(model, targets)
    if not found:
        raise ValueError(f"model has no linear layers named {list(targets)}")
    for name, _, _, linear in found:
        try:
            check_shape(linear.out_features, linear.in_features, group)
            if linear.weight.device.type == "cuda":
                cuda_inner_k_tiles(linear.out_features, linear.in_features)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from err
    if vocab:
        _check_vocab(model, group)
    if found[0][3].weight.device.type == "cpu":
        unpack_kernel.available()  # build or load the dense-prefill kernels now, not inside a control step
    selector = _Selector(modes[-1])
    layers: dict[str, nn.Module] = {}
    bf16_bytes = 0
    with torch.no_grad():
        for *_, linear in found:
            bf16_bytes += 2 * linear.weight.numel() + (0 if linear.bias is None else 2 * linear.bias.numel())
        for names, parent, linears in _fusion_groups(found, fuse):
            for (name, child_name), layer in zip(
                names, _quantize_group(linears, group, selector), strict=True
            ):
                layers[name] = layer
                setattr(parent, child_name, layer)
        layers = {name: layers[name] for name, *_ in found}  # the decoder's order, fused or not
        if vocab:
            bf16_bytes += _quantize_vocab(model, group, layers)
    ladder = Ladder(modes, layers, selector, group, bf16_bytes)
    setattr(model, LADDER_ATTR, ladder)
    return ladder


def _fusion_groups(
    found: list[tuple[str, nn.Module, str, nn.Linear]], fuse: bool
) -> list[tuple[list[tuple[str, str]], nn.Module, list[nn.Linear]]]:
    """The found linears as groups to quantize together: sibling projections of one parent that read the
    same input and can share a matmul (FUSED_SIBLINGS), every other linear alone."""
    by_parent: dict[int, dict[str, tuple[str, nn.Linear]]] = {}
    for name, parent, child_name, linear in found:
        by_parent.setdefault(id(parent), {})[child_name] = (name, linear)
    parents = {id(parent): parent for _, parent, _, _ in found}
    groups = []
    for key, children in by_parent.items():
        rest = dict(children)
        for siblings in FUSED_SIBLINGS if fuse else ():
            members = [children.get(s) for s in siblings]
            if all(m is not None for m in members) and _can_fuse([m[1] for m in members]):
                groups.append(
                    (
                        [(m[0], s) for m, s in zip(members, siblings, strict=True)],
                        parents[key],
                        [m[1] for m in members],
                    )
                )
                for s in siblings:
                    del rest[s]
        groups += [([(name, child)], parents[key], [linear]) for child, (name, linear) in rest.items()]
    return groups


def _can_fuse(linears: list[nn.Linear]) -> bool:
    w = linears[0].weight
    return (
        w.device.type == "cpu"  # the CUDA kernel's tiles are not sliced here: its layers stay apart
        and len({lin.in_features for lin in linears}) == 1
        and len({lin.bias is None for lin in linears}) == 1
        and len({lin.weight.dtype for lin in linears}) == 1
        and all(lin.out_features % ROW_ALIGN == 0 for lin in linears)
    )


def _quantize_group(linears: list[nn.Linear], group: int, selector: _Selector) -> list[Int4Linear]:
    """One Int4Linear per linear; siblings share one int4 copy of their stacked rows and one matmul."""
    if len(linears) == 1:
        return [Int4Linear(linears[0], group, selector)]
    stacked = nn.Linear(linears[0].in_features, sum(lin.out_features for lin in linears), bias=False)
    stacked.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
    if linears[0].bias is not None:
        stacked.bias = nn.Parameter(torch.cat([lin.bias.detach() for lin in linears]), requires_grad=False)
    core = Int4Linear(stacked, group, selector)
    sizes = tuple(lin.out_features for lin in linears)
    shared = SharedMatmul(core, sizes)
    parts, start = [], 0
    for index, size in enumerate(sizes):
        part = Int4Linear.rows_of(core, start, start + size)
        part._shared = (shared, index)
        parts.append(part)
        start += size
    return parts


def _check_vocab(model: nn.Module, group: int) -> None:
    head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "llama", None), "embed_tokens", None)
    if not isinstance(head, nn.Linear) or not isinstance(embed, nn.Embedding):
        raise ValueError("vocab=True needs a model with a dense lm_head and an nn.Embedding token table")
    if embed.embedding_dim % group:
        raise ValueError(f"embedding width {embed.embedding_dim} is not a multiple of the group size {group}")
    check_shape(model.config.n_bins, head.in_features, group)


def _quantize_vocab(model: nn.Module, group: int, layers: dict[str, nn.Module]) -> int:
    """Swap in the int4 table and action head; returns what the replaced tensors take in bf16."""
    head, embed = model.lm_head, model.llama.embed_tokens
    tied = head.weight.untyped_storage().data_ptr() == embed.weight.untyped_storage().data_ptr()
    bf16 = 2 * embed.weight.numel() + (0 if tied else 2 * head.weight.numel())
    first = model.action_first_id
    layers["embed_tokens"] = model.llama.embed_tokens = Int4Embedding(embed, group)
    # The head scores the bins directly, so low-bit activations there would move every logit: it keeps
    # bf16 activations in every mode (256 rows: its cost is negligible either way).
    bins = action_rows(head, first, model.config.n_bins)  # an OpenVLA head's padding rows stay out
    layers["lm_head.bins"] = Int4Linear(bins, group, _Selector(HEAD_MODE))
    model.lm_head = ActionHead(layers["lm_head.bins"], first, head.out_features)
    return bf16


def get_ladder(model: nn.Module) -> Ladder:
    ladder = getattr(model, LADDER_ATTR, None)
    if ladder is None:
        raise ValueError("model has no precision ladder: call quantize_model first")
    return ladder


def set_precision(model: nn.Module, mode: str) -> None:
    """Switch the model's ladder to `mode`; takes effect at the next forward pass (a pointer flip)."""
    get_ladder(model).set(mode)


def quantize_policy(
    policy, group: int = QUANT_GROUP_SIZE, modes: Sequence[Mode] = DEFAULT_MODES, vocab: bool = False
) -> Ladder:
    """Quantize a runtime Policy's model in place and let the policy serve the ladder's modes."""
    freeze = getattr(policy.draft, "freeze", None)
    if vocab and freeze is not None:
        freeze()  # the draft reads the target's dense embedding and head: take them before they go
    ladder = quantize_model(policy.model, group=group, modes=modes, vocab=vocab)
    policy.enable_ladder(ladder)
    return ladder
