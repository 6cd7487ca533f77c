"""One entry point that loads a policy from any checkpoint format the package reads.

Why a module of its own: `openvla.OpenVlaPolicy` subclasses `runtime.Policy`, so the base class cannot
dispatch to its subclass's loader without an import cycle (runtime -> openvla -> runtime). The dispatch
lives here, above both: `runtime.Policy.load` loads the built-in format only, `openvla.load_policy` loads
an OpenVLA directory, and `policy_from_checkpoint` picks between them from config.json
(`formats.is_openvla_checkpoint`). Nodes, evaluation, replay and the benchmarks call this function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla_accel_ros.policy.formats import is_openvla_checkpoint
from vla_accel_ros.policy.openvla import load_policy as load_openvla_policy
from vla_accel_ros.policy.runtime import Policy


def policy_from_checkpoint(
    path: Path | str | None = None, allow_pickle: bool = False, **options: Any
) -> Policy:
    """The policy of `path` (None, "" or "builtin": the built-in checkpoint), with its draft if it has one.

    options (unnorm_key, dtype, device, camera, center_crop_scale, attn_implementation) apply to OpenVLA
    checkpoints only (`openvla.load_policy`); given for another checkpoint they raise TypeError.
    """
    if is_openvla_checkpoint(path):
        return load_openvla_policy(path, allow_pickle=allow_pickle, **options)
    if options:
        raise TypeError(f"options {sorted(options)} apply to OpenVLA checkpoints only")
    return Policy.load(path, allow_pickle=allow_pickle)
