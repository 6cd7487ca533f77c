"""Pieces every decoder shares: constrained argmax and per-stage timing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def action_argmax(logits: torch.Tensor, first_action_id: int) -> torch.Tensor:
    """Greedy choice restricted to the action ids (>= first_action_id), whatever the weights.

    Only the action slice takes part in the argmax, so no other id can ever be emitted.
    """
    return logits[..., first_action_id:].argmax(dim=-1) + first_action_id


class StageTimer:
    """Wall-clock milliseconds per named stage of one control step.

    On a GPU, kernels run after the Python call that launches them returns, so a stage's time is only its
    own once the device has finished: `sync` (for_device: torch.cuda.synchronize) runs before and after
    each stage. On the CPU there is nothing to wait for, and nothing is called.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.ms: dict[str, float] = {}
        self._sync = sync

    @classmethod
    def for_device(cls, device: torch.device | str) -> StageTimer:
        device = torch.device(device)
        if device.type == "cuda":
            return cls(lambda: torch.cuda.synchronize(device))
        return cls()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._sync is not None:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
