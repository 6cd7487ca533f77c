"""Speculative decoding of one action: strict ("spec") and Spec-VLA relaxed acceptance ("specvla").

One round, with tokens a_0..a_{p-1} decided (a_0 comes from the prefill's last logits) and the target cache
holding the prefix and a_0..a_{p-2}:

    draft   d_p .. d_{A-2}          k = A-1-p tokens, from (target hidden, a_{p-1}) then its own states
    verify  [a_{p-1}, d_p .. d_{A-2}] in ONE target `extend` pass -> the target's choices t_p .. t_{A-1}
    accept  the longest prefix of drafts with accept(d_i, t_i); then append t at the first rejection, or
            the bonus t_{A-1} when all were accepted: the target's own token there costs nothing
    rollback the cache to the prefix + the kept tokens

The last token is never drafted: the verify pass yields the target's own choice for it. Strict acceptance
is d_i == t_i, so the result equals greedy autoregressive decoding token for token (in fp32); a rejection
leads to another round (re-inference: draft again, one more target pass). Spec-VLA accepts while
|d_i - t_i| <= r bins in the first round and continues strictly after the first rejection
(`relax_all_rounds` relaxes every round instead, as Spec-VLA's code does). KERV (`decoding.kerv`) replaces
the re-inference by a Kalman fill of the remaining dimensions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from vla_accel_ros.decoding.autoregressive import DecodeOutput
from vla_accel_ros.decoding.common import StageTimer, action_argmax
from vla_accel_ros.decoding.draft import Draft, DraftContext, DraftError
from vla_accel_ros.policy.model import Step, VlaModel

SPECVLA_DEFAULT_R = 9.0
MASKED_DIMS = ("target", "verify")

# accept(token index, draft id, target id) -> keep the draft's token although it differs from the target's
Acceptance = Callable[[int, int, int], bool]


@dataclass
class SpecOutput(DecodeOutput):
    """DecodeOutput plus the relaxed threshold actually used, which ActionResult reports per step."""

    threshold: float = 0.0  # relaxed threshold actually used, in bins (0 = strict)


def check_threshold(threshold: float) -> float:
    try:
        r = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"threshold must be a number of bins, got {threshold!r}") from None
    if not np.isfinite(r) or r < 0:
        raise ValueError(f"threshold must be finite and >= 0 bins, got {threshold!r}")
    return r


def bins_within(r: float) -> Acceptance:
    """Spec-VLA: ids (hence bins) at most r apart."""
    return lambda _i, d, t: abs(d - t) <= r


def _propose(draft: Draft, ctx: DraftContext, n: int, first_id: int, vocab: int) -> list[int]:
    try:
        out = draft.propose(ctx, n)
    except Exception as err:  # whatever broke inside the draft, the runtime falls back to AR
        raise DraftError(f"draft failed: {type(err).__name__}: {err}") from err
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n) or out.dtype != torch.long:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DraftError(f"draft returned {shape}, expected a (1, {n}) long tensor")
    ids = out[0].tolist()
    if any(i < first_id or i >= vocab for i in ids):
        raise DraftError(f"draft proposed ids outside the action range [{first_id}, {vocab}): {ids}")
    return ids


def speculate(
    model: VlaModel,
    prefill: Step,
    n_tokens: int,
    draft: Draft,
    timer: StageTimer,
    accept: Acceptance | None = None,
    relax_all_rounds: bool = False,
    fill: Mapping[int, int] | None = None,
    masked: str = "target",
    threshold: float = 0.0,
) -> SpecOutput:
    """Decode one action of n_tokens ids speculatively (module doc); batch 1.

    fill: KERV's token ids per dimension that may be filled after a rejection (others are decided by the
    target: one more pass each with masked="target", or the latest verify pass's choice with "verify").
    """
    if prefill.logits.shape[0] != 1:
        raise ValueError("speculative decoding runs one observation at a time (batch 1)")
    if masked not in MASKED_DIMS:
        raise ValueError(f"masked must be one of {MASKED_DIMS}, got {masked!r}")
    first, vocab = model.action_first_id, model.config.vocab_size
    cache = prefill.cache
    tokens = [int(action_argmax(prefill.logits[0, -1], first))]
    feats = [prefill.hidden[:, -1:]]  # feats[i] predicted tokens[i]
    dev = prefill.hidden.device  # token tensors go where the model runs (a CUDA one too)
    in_cache = 0  # action tokens in the target cache: all decided ones but the last
    passes = drafted = accepted = 0
    filled: list[int] = []
    try:
        draft.reset()
    except Exception as err:
        raise DraftError(f"draft failed: {type(err).__name__}: {err}") from err
    while len(tokens) < n_tokens:
        k = n_tokens - len(tokens) - 1
        proposal: list[int] = []
        if k:
            with timer.stage("draft"):
                ctx = DraftContext(
                    torch.tensor([tokens], device=dev),
                    torch.cat(feats, 1),
                    cache,
                    prefill.length + in_cache,
                    prefill.hidden,
                )
                proposal = _propose(draft, ctx, k, first, vocab)
            drafted += k
        base = len(tokens)
        with timer.stage("verify"):
            step = model.extend(cache, torch.tensor([[tokens[-1], *proposal]], device=dev))
            choice = action_argmax(step.logits[0], first).tolist()  # target's ids for tokens base .. base+k
            n_acc = 0
            while n_acc < k and (
                proposal[n_acc] == choice[n_acc]
                or (accept is not None and accept(base + n_acc, proposal[n_acc], choice[n_acc]))
            ):
                n_acc += 1
            in_cache = len(tokens) + n_acc
            VlaModel.rollback(cache, prefill.length + in_cache)
        passes += 1
        accepted += n_acc
        tokens += proposal[:n_acc] + [choice[n_acc]]
        feats.append(step.hidden[:, : n_acc + 1])
        if n_acc == k:
            continue  # all accepted: the bonus token completed the action
        rest = range(len(tokens), n_tokens)
        if fill and any(d in fill for d in rest):
            with timer.stage("fill"):
                for d in rest:
                    if d in fill:
                        tokens.append(int(fill[d]))
                        filled.append(d)
                    elif masked == "verify":
                        tokens.append(choice[d - base])
                    else:  # the target decides this dimension after the filled ones: one pass
                        step = model.extend(cache, torch.tensor([tokens[in_cache:]], device=dev))
                        passes += 1
                        in_cache = len(tokens)
                        tokens.append(int(action_argmax(step.logits[0, -1], first)))
            break
        if not relax_all_rounds:
            accept = None
    return SpecOutput(
        torch.tensor([tokens]),
        target_passes=passes,
        draft_tokens=drafted,
        accepted_tokens=accepted,
        kalman_filled=tuple(filled),
        threshold=threshold,
    )


def decode_strict(
    model: VlaModel, prefill: Step, n_tokens: int, draft: Draft, timer: StageTimer
) -> SpecOutput:
    """Lossless speculative decoding: equals greedy autoregressive decoding."""
    return speculate(model, prefill, n_tokens, draft, timer)


def decode_specvla(
    model: VlaModel,
    prefill: Step,
    n_tokens: int,
    draft: Draft,
    timer: StageTimer,
    r: float = SPECVLA_DEFAULT_R,
    relax_all_rounds: bool = False,
) -> SpecOutput:
    r = check_threshold(r)
    return speculate(
        model,
        prefill,
        n_tokens,
        draft,
        timer,
        accept=bins_within(r) if r > 0 else None,
        relax_all_rounds=relax_all_rounds,
        threshold=r,
    )
