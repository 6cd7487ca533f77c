"""Greedy autoregressive decoding: one target pass per action token after the prefill."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vla_accel_ros.decoding.common import StageTimer, action_argmax
from vla_accel_ros.policy.model import Step, VlaModel


@dataclass
class DecodeOutput:
    """What every decoder returns: the action ids and the work it took (passes, draft, fill).

    One shape for all decoders, so the runtime and the benchmarks report any of them the same way.
    """

    token_ids: torch.Tensor  # (B, A)
    target_passes: int  # forward passes of the target after the prefill
    draft_tokens: int = 0
    accepted_tokens: int = 0
    kalman_filled: tuple[int, ...] = ()


def decode_autoregressive(model: VlaModel, prefill: Step, n_tokens: int, timer: StageTimer) -> DecodeOutput:
    first = model.action_first_id
    tokens = [action_argmax(prefill.logits[:, -1], first)]
    step = prefill
    for i in range(1, n_tokens):
        with timer.stage(f"decode_{i}"):
            step = model.extend(step.cache, tokens[-1].unsqueeze(1))
            tokens.append(action_argmax(step.logits[:, -1], first))
    return DecodeOutput(torch.stack(tokens, dim=1), target_passes=n_tokens - 1)
