"""The vocabulary side of the ladder: int4 token embeddings and an output head over the action bins only.

Quantizing the decoder linears alone leaves the token table at full precision, and in a small LM that
table is a large share of the weights (SmolLM2-135M: 49408 x 576, tied to lm_head, 21 % of the bf16
decoder). Two facts make the rest cheap to quantize:
- an embedding lookup only gathers rows, so the table can stay int4 and dequantize just the rows read;
- every decoder here reads only the action-bin logits (`decoding.common.action_argmax`), so the head
  never needs to score the text vocabulary; its 256 action rows are one more int4 linear of the ladder.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_accel_ros.quant.int4 import quantize_groups

_MID = 8


class Int4Embedding(nn.Module):
    """nn.Embedding over group-wise int4 rows: two codes per byte, a bf16 (scale, zero) per group."""

    def __init__(self, embedding: nn.Embedding, group: int) -> None:
        super().__init__()
        weight = embedding.weight.detach()
        self.num_embeddings, self.embedding_dim = weight.shape
        self.group, self.dtype = group, weight.dtype
        q = quantize_groups(weight, group)
        codes = q.codes
        self.register_buffer("packed", (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous())
        self.register_buffer("scales_and_zeros", torch.stack([q.scales, q.zeros], -1).to(torch.bfloat16))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        p = self.packed[ids]
        codes = torch.stack((p & 15, p >> 4), dim=-1).reshape(*ids.shape, -1, self.group)
        sz = self.scales_and_zeros[ids].float()
        rows = (codes.float() - _MID) * sz[..., :1] + sz[..., 1:]
        return rows.reshape(*ids.shape, self.embedding_dim).to(self.dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The whole dequantized table (a fresh tensor: for code that folds it once, not per step)."""
        return self.forward(torch.arange(self.num_embeddings, device=self.packed.device))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, group={self.group}"


class ActionHead(nn.Module):
    """lm_head that scores only the action bins (ids first .. first + bins - 1); other ids (text, and an
    OpenVLA head's padding rows after the bins) get the lowest logit.

    The output keeps the full vocabulary width so every decoder reads it unchanged.
    """

    def __init__(self, bins: nn.Module, first: int, vocab_size: int) -> None:
        super().__init__()
        self.bins, self.first, self.vocab_size = bins, first, vocab_size

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        scores = self.bins(hidden)
        logits = hidden.new_full((*hidden.shape[:-1], self.vocab_size), torch.finfo(scores.dtype).min)
        logits[..., self.first : self.first + scores.shape[-1]] = scores
        return logits


def action_rows(head: nn.Linear, first: int, n_bins: int | None = None) -> nn.Linear:
    """A dense nn.Linear holding a copy of the head's action-bin rows only (rows first .. first+n_bins-1;
    n_bins None: to the end of the head)."""
    stop = head.out_features if n_bins is None else first + n_bins
    rows = nn.Linear(head.in_features, stop - first, bias=False)
    with torch.no_grad():
        rows.weight.copy_(head.weight[first:stop])
    return rows.to(head.weight.dtype)


def restrict_head(model: nn.Module) -> None:
    """Replace a model's lm_head by a dense ActionHead (the baseline the int4 one is timed against)."""
    head, first = model.lm_head, model.action_first_id
    model.lm_head = ActionHead(action_rows(head, first, model.config.n_bins), first, head.out_features)
