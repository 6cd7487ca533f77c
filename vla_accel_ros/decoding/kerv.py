"""KERV: kinematic-rectified speculative decoding of one action.

Two rectifications of Spec-VLA's relaxed speculative decoding:

- Kinematic threshold: the draft's token at dimension d is accepted while it lies within r(t) bins of the
  target's, compared in action units: |value_d(draft) - value_d(target)| <= r(t) * bin_width_d
  (`control.threshold_policy.bins_to_action_units`). r(t) comes per call: the controller's ThresholdPolicy
  computes it from the executed motion and sends it in AccelConfig (`Policy.act(threshold=...)`).
- Kalman fill: at the first rejection the target's own token is kept there (it is free), and the remaining
  dimensions are filled from the Kalman one-step prediction of the executed actions (`kalman_action`)
  instead of re-inference. Dimensions masked out (default: the last one, the gripper, as
  `kinematics.kalman.KalmanCompensator`) and dimensions whose prediction is NaN are decided by the target
  instead (`masked`: one more pass each, or the choice of the verify pass already made).

Where the cool-down lives: with the Kalman filter, on the kinematics side (`KalmanCompensator`, n = 4
steps). The decoder is stateless: it fills whenever it is given a `kalman_action`, and reports the filled
dimensions (`DecodeOutput.kalman_filled` -> `ActionResult` -> `VlaAction.kalman_filled`). The kinematics
node replays each reported fill on its compensator and publishes an invalid prediction while cooling down,
so the inference node passes no `kalman_action`; offline, `control.accel_loop.AccelLoop` chains the same
compensator the same way (`vla-accel bench-decoding` feeds it each step's executed action and reported fill).
One state, one place, the same in the graph and offline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vla_accel_ros.control.threshold_policy import bins_to_action_units
from vla_accel_ros.decoding.common import StageTimer
from vla_accel_ros.decoding.draft import Draft
from vla_accel_ros.decoding.speculative import (
    Acceptance,
    SpecOutput,
    check_threshold,
    speculate,
)
from vla_accel_ros.policy.model import Step, VlaModel
from vla_accel_ros.policy.tokenizer import ActionTokenizer

# Bins are multiples of the bin width apart; decoded values are float32: accept up to r + 1e-3 bins.
_TOL_BINS = 1e-3


def default_mask(action_dim: int) -> np.ndarray:
    """Every dimension but the last (the gripper) may be filled."""
    return np.arange(action_dim) < action_dim - 1


class ActionUnitAcceptance:
    """Acceptance in action units: |value_d(draft) - value_d(target)| <= r * bin_width_d.

    Values come from the tokenizer's own decode, so any id <-> bin convention works (OpenVLA's runs
    backwards).
    """

    def __init__(self, tokenizer: ActionTokenizer) -> None:
        self.tokenizer = tokenizer
        self.first = int(tokenizer.first_id)
        ids = np.repeat(
            np.arange(self.first, self.first + tokenizer.n_bins)[:, None], tokenizer.action_dim, 1
        )
        self.values = tokenizer.decode(ids).astype(np.float64)  # values[id - first, d]

    def criterion(self, r_bins: float) -> Acceptance | None:
        r = check_threshold(r_bins)
        if r == 0:
            return None
        width = np.asarray(self.tokenizer.bin_width, dtype=np.float64)
        limit = bins_to_action_units(r, width) + _TOL_BINS * width
        first, values = self.first, self.values

        def accept(dim: int, draft_id: int, target_id: int) -> bool:
            return bool(abs(values[draft_id - first, dim] - values[target_id - first, dim]) <= limit[dim])

        return accept


def fill_ids(
    tokenizer: ActionTokenizer,
    kalman_action: np.ndarray | None,
    mask: Sequence[bool] | np.ndarray | None = None,
) -> dict[int, int]:
    """Token ids of the predicted action for the dimensions that may be filled (dim -> id)."""
    if kalman_action is None:
        return {}
    a = np.asarray(kalman_action, dtype=np.float64)
    dim = tokenizer.action_dim
    if a.shape != (dim,):
        raise ValueError(f"kalman_action must have shape ({dim},), got {a.shape}")
    m = default_mask(dim) if mask is None else np.asarray(mask, dtype=bool)
    if m.shape != (dim,):
        raise ValueError(f"mask must have {dim} entries, got {m.shape}")
    ok = m & np.isfinite(a)
    ids = tokenizer.encode(np.where(np.isfinite(a), a, 0.0))
    return {int(d): int(ids[d]) for d in np.flatnonzero(ok)}


def decode_kerv(
    model: VlaModel,
    prefill: Step,
    draft: Draft,
    timer: StageTimer,
    tokenizer: ActionTokenizer,
    threshold: float = 0.0,
    kalman_action: np.ndarray | None = None,
    mask: Sequence[bool] | np.ndarray | None = None,
    masked: str = "target",
    acceptance: ActionUnitAcceptance | None = None,
) -> SpecOutput:
    """One action with KERV; the runtime executes kalman_action[d] for every d in `kalman_filled`.

    `acceptance`: the tokenizer's value table, built once by the caller (else per call).
    """
    r = check_threshold(threshold)
    fill = fill_ids(tokenizer, kalman_action, mask)
    acceptance = acceptance if acceptance is not None else ActionUnitAcceptance(tokenizer)
    accept = acceptance.criterion(r)
    return speculate(
        model,
        prefill,
        tokenizer.action_dim,
        draft,
        timer,
        accept=accept,
        fill=fill or None,
        masked=masked,
        threshold=r,
    )
