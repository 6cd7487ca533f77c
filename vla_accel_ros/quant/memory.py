"""Bytes of every tensor a module holds: parameters, buffers and plain tensor attributes.

Counting only `state_dict()` would miss a per-mode copy cached in an attribute, which is exactly what
the ladder must not have; shared storage (a tied head) is counted once.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def held_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) for every tensor reachable from the module tree's attributes."""
    for prefix, mod in module.named_modules():
        for name, value in vars(mod).items():
            if name in ("_parameters", "_buffers"):
                for sub, t in value.items():
                    if t is not None:
                        yield f"{prefix}.{sub}".lstrip("."), t
            elif isinstance(value, torch.Tensor):
                yield f"{prefix}.{name}".lstrip("."), value
            elif isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for key, t in items:
                    if isinstance(t, torch.Tensor):
                        yield f"{prefix}.{name}[{key}]".lstrip("."), t


def storage_bytes(tensors: Iterator[tuple[str, torch.Tensor]] | list[torch.Tensor]) -> int:
    """Total bytes of the distinct storages behind these tensors."""
    seen: dict[int, int] = {}
    for item in tensors:
        t = item[1] if isinstance(item, tuple) else item
        if t.device.type == "meta":
            continue
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
    return sum(seen.values())


def module_bytes(module: nn.Module) -> int:
    return storage_bytes(held_tensors(module))
