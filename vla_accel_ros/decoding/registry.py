"""The runtime's speculative decoders by name ("spec", "specvla", "kerv") over one draft.

Its own module because it knows every speculative decoder: `decoding.speculative` is the base that
`decoding.kerv` builds on, so the registry cannot live in the base without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vla_accel_ros.decoding.autoregressive import DecodeOutput
from vla_accel_ros.decoding.common import StageTimer
from vla_accel_ros.decoding.draft import Draft
from vla_accel_ros.decoding.kerv import ActionUnitAcceptance, decode_kerv
from vla_accel_ros.decoding.speculative import (
    SPECVLA_DEFAULT_R,
    check_threshold,
    decode_specvla,
    decode_strict,
)
from vla_accel_ros.policy.model import Step, VlaModel
from vla_accel_ros.policy.tokenizer import ActionTokenizer

DecoderFn = Callable[..., DecodeOutput]


def speculative_decoders(
    model: VlaModel,
    tokenizer: ActionTokenizer,
    draft: Draft,
    specvla_r: float = SPECVLA_DEFAULT_R,
    mask: list[bool] | None = None,
    masked: str = "target",
) -> dict[str, DecoderFn]:
    """The runtime's decoders "spec", "specvla", "kerv" over one draft (`Policy.decoders` signature).

    specvla uses the per-call threshold when it is > 0, else its fixed r (9 by default); kerv uses the
    per-call threshold r(t) as is and fills from `kalman_action` when one is given.
    """
    n = tokenizer.action_dim
    specvla_r = check_threshold(specvla_r)
    acceptance = ActionUnitAcceptance(tokenizer)

    def spec(prefill: Step, timer: StageTimer, **_: object) -> DecodeOutput:
        return decode_strict(model, prefill, n, draft, timer)

    def specvla(prefill: Step, timer: StageTimer, threshold: float = 0.0, **_: object) -> DecodeOutput:
        r = check_threshold(threshold)
        return decode_specvla(model, prefill, n, draft, timer, r if r > 0 else specvla_r)

    def kerv(
        prefill: Step,
        timer: StageTimer,
        threshold: float = 0.0,
        kalman_action: np.ndarray | None = None,
        **_: object,
    ) -> DecodeOutput:
        return decode_kerv(
            model, prefill, draft, timer, tokenizer, threshold, kalman_action, mask, masked, acceptance
        )

    return {"spec": spec, "specvla": specvla, "kerv": kerv}
