"""Pieces every decoder shares: constrained argmax and per-stage timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def action_argmax(logits: torch.Tensor, first_action_id: int) -> torch.Tensor:
    """Greedy choice restricted to the action ids (>= first_action_id), whatever the weights.

    Only the action slice takes part in the argmax, so no other id can ever be emitted.
    """
    return logits[..., first_action_id:].argmax(dim=-1) + first_action_id


class StageTimer:
    """Wall-clock milliseconds per named stage of one control step."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - t0) * 1e3
