"""The range of actions a token decoder can emit, per dimension, and what to do with values beyond it.

Why: every action the policy emits is a de-normalized bin value, so it lies inside the range spanned by
the tokenizer's bins. Two paths put other values into an action: the KERV Kalman fill (the runtime
executes the prediction of `vla/kalman_prediction` as is for the filled dims) and any peer publishing on
`vla/action_raw`. A fill is clipped into the range here before it becomes an action (the inference node);
a finite action beyond the range cannot come from the decoder, so the controller's guard refuses it
instead of clipping it to something plausible (`SafetyLimits.decoder_min/max`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


class TokenizerLike(Protocol):
    """What the range needs of `policy.tokenizer.ActionTokenizer` (or OpenVLA's): ids and their values."""

    first_id: int
    n_bins: int
    action_dim: int

    def decode(self, ids: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class DecoderRange:
    """Per-dimension [low, high] of the values the decoder can emit."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def from_tokenizer(cls, tokenizer: TokenizerLike) -> DecoderRange:
        """The smallest and largest decoded value of every action id, per dim (any id <-> bin order)."""
        first, n = int(tokenizer.first_id), int(tokenizer.n_bins)
        ids = np.repeat(np.arange(first, first + n)[:, None], int(tokenizer.action_dim), 1)
        values = np.asarray(tokenizer.decode(ids), dtype=np.float64)
        return cls(values.min(axis=0), values.max(axis=0))

    @classmethod
    def of_policy(cls, policy: Any) -> DecoderRange | None:
        """The range of a policy's action tokenizer (`Policy.actions`); None when it has none to ask."""
        tokenizer = getattr(policy, "actions", None)
        if tokenizer is None or not hasattr(tokenizer, "decode"):
            return None
        return cls.from_tokenizer(tokenizer)

    def clip(self, action: np.ndarray) -> np.ndarray:
        """The action clipped into the range; NaN stays NaN (the decoder decides those dims itself)."""
        a = np.asarray(action, dtype=np.float64)
        return np.where(np.isnan(a), a, np.clip(a, self.low, self.high)).astype(np.float32)
