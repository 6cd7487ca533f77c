"""Speculative decoding at the realistic size, with the built-in policy's acceptance replayed.

What a speculative decoder gains depends on two things: how often the draft is accepted, and what a
target pass, a verify pass and a draft round cost. The built-in policy knows the first (its draft is
trained against it) but is too small to show the second; the realistic-size model (policy.realistic) has
the cost but is untrained, so a draft trained against it would agree for meaningless reasons.

So the two are combined, frame by frame. While the built-in policy decodes the open-loop frames,
`ProposalLog` records where its draft was rejected (`rejected_positions`). The realistic-size model then
decodes the same frame with the same method, threshold, precision and Kalman fill, through a draft of its
own shape that runs its whole computation (`ScriptedDraft` over an untrained `EagleDraft`: the cost is
real) but whose proposals are replaced by the realistic target's own greedy tokens, wrong exactly where
the built-in draft was rejected. The acceptance is therefore an emulation, named so in every report; the
number of target passes, draft rounds and fills per action is the built-in's (checked per frame), and
every millisecond is the realistic model's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from vla_accel_ros.decoding.draft import Draft, DraftContext

SCRIPTED_LABEL = "acceptance replayed from the built-in policy (emulated), costs measured at this size"


class ProposalLog:
    """Records each proposal of a draft: (position of its first token, proposed ids).

    It wraps the draft's `propose` on the instance, so decoders already built over that draft log too.
    """

    def __init__(self, draft: Draft) -> None:
        self.calls: list[tuple[int, list[int]]] = []
        inner = draft.propose

        def propose(ctx: DraftContext, n: int) -> torch.Tensor:
            out = inner(ctx, n)
            if isinstance(out, torch.Tensor) and out.ndim == 2:
                self.calls.append((int(ctx.tokens.shape[1]), out[0].tolist()))
            return out

        draft.propose = propose  # type: ignore[method-assign]

    def take(self) -> list[tuple[int, list[int]]]:
        calls, self.calls = self.calls, []
        return calls

    def rejected(self, final_ids: Sequence[int]) -> list[int]:
        """Rejected positions of the proposals logged since the last take (then forgets them)."""
        return rejected_positions(self.take(), final_ids)


def rejected_positions(calls: Sequence[tuple[int, Sequence[int]]], final_ids: Sequence[int]) -> list[int]:
    """Token positions where a proposal was rejected.

    An accepted draft token is kept as proposed; at the first rejection the target's own (different)
    token is kept. So each round's accepted prefix is where the proposal equals the final action, and
    its first mismatch is the rejection (a round with no mismatch was accepted whole).
    """
    out = []
    for start, ids in calls:
        for i, tok in enumerate(ids):
            if start + i >= len(final_ids) or int(final_ids[start + i]) != int(tok):
                out.append(start + i)
                break
    return out


class ScriptedDraft:
    """A draft whose proposals follow a script: the target's greedy tokens, wrong at given positions.

    `inner` (a draft of the target's shape, e.g. an untrained EagleDraft) runs in full on every call, so
    the time spent drafting is real; its tokens are discarded. A wrong token is half the bins away from
    the right one, beyond any relaxed threshold (KERV's r_max is 15 bins).
    """

    def __init__(self, inner: Draft, first_id: int, n_bins: int) -> None:
        self.inner, self.first_id, self.n_bins = inner, first_id, n_bins
        self.greedy: list[int] = []
        self.rejected: frozenset[int] = frozenset()

    def plan(self, greedy: Sequence[int], rejected: Sequence[int]) -> None:
        self.greedy, self.rejected = [int(t) for t in greedy], frozenset(int(p) for p in rejected)

    def reset(self) -> None:
        self.inner.reset()

    def propose(self, ctx: DraftContext, n: int) -> torch.Tensor:
        self.inner.propose(ctx, n)
        start = int(ctx.tokens.shape[1])
        out = []
        for pos in range(start, start + n):
            tok = self.greedy[pos]
            if pos in self.rejected:
                b = (tok - self.first_id + self.n_bins // 2) % self.n_bins
                tok = self.first_id + b
            out.append(tok)
        return torch.tensor([out], dtype=torch.long)


@dataclass
class ScaledRow:
    """One benchmark row at the realistic size: the policy variant it runs on and its scripted draft."""

    name: str
    policy: object  # runtime.Policy (fp32, bf16 or on the int4 ladder)
    draft: ScriptedDraft | None
    greedy: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # (frame, precision) -> ids


def attach_scripted_draft(policy, make_inner: Callable[[object], Draft], **options) -> ScriptedDraft:
    """Register the speculative decoders of `policy` over a ScriptedDraft (plus "kerv-verify")."""
    from vla_accel_ros.evaluation.methods import add_kerv_verify

    cfg = policy.model.config
    scripted = ScriptedDraft(make_inner(policy.model), policy.model.action_first_id, cfg.n_bins)
    policy.attach_draft(scripted, **options)
    add_kerv_verify(policy)
    return scripted


def replay_record(row: ScaledRow, frame: int, inp, rec: dict):
    """Decode one frame as the built-in row did (`rec`: its record); returns (ActionResult, ms).

    The script's greedy tokens are the realistic target's own at that precision, computed once, untimed.
    """
    precision = rec["precision"]
    key = (frame, precision)
    if key not in row.greedy:
        row.greedy[key] = row.policy.act(inp, precision=precision).token_ids.tolist()
    greedy = row.greedy[key]
    kalman = None
    if rec["filled"]:  # the built-in filled here: give a prediction (the target's own values)
        kalman = row.policy.actions.decode(np.asarray(greedy)).astype(np.float64)
    if row.draft is not None:
        row.draft.plan(greedy, rec.get("rejected", []))
    t0 = time.perf_counter()
    res = row.policy.act(
        inp, precision=precision, decoding=rec["decoding"], threshold=rec["threshold"], kalman_action=kalman
    )
    return res, (time.perf_counter() - t0) * 1e3


def same_pattern(res, rec: dict) -> bool:
    """The realistic decode made the built-in's passes, drafts, acceptances and fills."""
    return (
        res.target_passes == rec["passes"]
        and res.draft_tokens == rec["drafted"]
        and res.accepted_tokens == rec["accepted"]
        and list(res.kalman_filled) == list(rec["filled"])
    )
