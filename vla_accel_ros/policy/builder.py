"""One policy builder: what the inference node loads is what every offline run loads.

A run's policy is decided by a handful of settings: the checkpoint (`builtin` or a folder), the device,
the robot's own statistics, the precision ladder with its group size, the draft, and the full-precision
format (fp32 as stored, or a bf16 cast for the bf16 baseline). They are the inference node's parameters
(`vla_accel_ros.params.InferenceParams`); `PolicySpec` carries them, `build_policy` applies them in one
order, and the node, eval, replay, calibrate-dyq and every benchmark call it, so a benchmark row runs
the model the graph runs (same group size, same ladder, same draft).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT, QUANT_GROUP_SIZE, InferenceParams
from vla_accel_ros.policy.builtin import is_builtin

LADDERS = ("none", "int4", "int4-whole")
FORMATS = ("fp32", "bf16")


class PolicyBuildError(RuntimeError):
    """A policy that cannot be built as asked (bad statistics file, no kernel for the ladder, ...)."""


@dataclass(frozen=True)
class PolicySpec:
    """Which policy a run gets; the fields are the inference node's parameters of the same names."""

    checkpoint: str = BUILTIN_CHECKPOINT
    device: str = "auto"
    allow_pickle: bool = False
    unnorm_key: str = ""  # OpenVLA: the dataset's statistics ('' = its only one)
    dtype: str = "auto"  # OpenVLA: the load dtype ('auto' = bfloat16)
    norm_stats_file: str = ""
    precision_ladder: str = "none"
    quant_group_size: int = QUANT_GROUP_SIZE
    draft: str = ""  # a draft folder to use instead of <checkpoint>/draft ('' = the checkpoint's own)
    full_format: str = "fp32"  # the full-precision format: fp32 as stored, or bf16 (cast at load)
    compile_decoder: bool = False  # torch.compile the decoder (policy/compiled.py)

    def __post_init__(self) -> None:
        if self.precision_ladder not in LADDERS:
            raise PolicyBuildError(f"precision_ladder {self.precision_ladder!r}: one of {', '.join(LADDERS)}")
        if self.full_format not in FORMATS:
            raise PolicyBuildError(f"full_format {self.full_format!r}: one of {', '.join(FORMATS)}")
        if self.full_format == "bf16" and self.precision_ladder != "none":
            raise PolicyBuildError("a bf16 cast and an int4 ladder exclude each other (the ladder has bf16)")

    @classmethod
    def from_params(cls, params: InferenceParams, **changes: Any) -> PolicySpec:
        """The spec of the inference node's parameters (the fields of the same names), then `changes`."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in params.to_mapping().items() if k in names}
        values["checkpoint"] = params.model_path
        return cls(**{**values, **changes})

    def with_ladder(self, ladder: str = "int4") -> PolicySpec:
        return replace(self, precision_ladder=ladder, full_format="fp32")

    def describe(self) -> str:
        parts = [str(self.checkpoint)]
        if self.precision_ladder != "none":
            parts.append(f"{self.precision_ladder} ladder, group {self.quant_group_size}")
        if self.full_format != "fp32":
            parts.append(self.full_format)
        if self.compile_decoder:
            parts.append("compiled")
        return ", ".join(parts)


def _cuda_device(device: str) -> Any:
    """torch.device(device), refused with a reason when it names CUDA and there is none."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise PolicyBuildError(f"device '{device}': CUDA is not available on this machine")
    return dev


def _load(spec: PolicySpec, path: Path | None) -> Any:
    """The checkpoint's policy on spec.device, with the options its format takes; others are refused."""
    from vla_accel_ros.policy.formats import is_openvla_checkpoint
    from vla_accel_ros.policy.loading import policy_from_checkpoint

    if is_openvla_checkpoint(path):
        options: dict[str, Any] = {"unnorm_key": spec.unnorm_key or None}
        if spec.dtype != "auto":
            options["dtype"] = spec.dtype
        if spec.device != "auto":
            options["device"] = _cuda_device(spec.device)
        return policy_from_checkpoint(path, allow_pickle=spec.allow_pickle, **options)
    if spec.unnorm_key:
        raise PolicyBuildError(
            f"unnorm_key {spec.unnorm_key!r} applies to OpenVLA checkpoints only; {spec.checkpoint} has its "
            "own statistics (norm_stats_file replaces them)"
        )
    if spec.dtype not in ("auto", "float32"):
        raise PolicyBuildError(
            f"dtype {spec.dtype!r} applies to OpenVLA checkpoints only; {spec.checkpoint} runs as stored "
            "(fp32): use full_format 'bf16' for its bf16 cast"
        )
    policy = policy_from_checkpoint(path, allow_pickle=spec.allow_pickle)
    device = _cuda_device("cpu" if spec.device == "auto" else spec.device)
    if device.type != "cpu":
        policy.model.to(device)  # before the ladder and the draft: both are built beside the model
        if policy.draft is not None:
            policy.draft.to(device)
    return policy


def build_policy(spec: PolicySpec) -> Any:
    """The policy `spec` describes: loaded on its device, with the robot's statistics, its draft, the bf16
    cast or the precision ladder (quantized once, here, at the spec's group size, on the device's int4
    kernel). PolicyBuildError says why not; a CheckpointError (a ValueError) names a checkpoint problem
    such as an unknown unnorm_key."""
    path = None if is_builtin(spec.checkpoint) else Path(spec.checkpoint)
    policy = _load(spec, path)
    if spec.full_format == "bf16":  # first: the cast builds a new Policy over the model
        from vla_accel_ros.policy.bf16 import cast_bf16

        try:
            policy = cast_bf16(policy)
        except ValueError as err:
            raise PolicyBuildError(str(err)) from err
    if spec.norm_stats_file:
        _use_statistics(policy, spec.norm_stats_file)
    if spec.draft and spec.full_format == "fp32":
        _attach_draft(policy, Path(spec.draft))
    if spec.precision_ladder != "none":
        from vla_accel_ros.quant import quantize_policy

        try:
            quantize_policy(policy, group=spec.quant_group_size, vocab=spec.precision_ladder == "int4-whole")
        except (ValueError, RuntimeError, NotImplementedError, AttributeError) as err:
            raise PolicyBuildError(
                f"cannot put {spec.checkpoint} on the {spec.precision_ladder} ladder "
                f"(group {spec.quant_group_size}): {type(err).__name__}: {err}"
            ) from err
    if spec.compile_decoder:  # last: it compiles the model in its final format
        from vla_accel_ros.policy.compiled import compile_decoder

        if not hasattr(policy.model, "llama"):
            raise PolicyBuildError(f"compile_decoder: {spec.checkpoint} has no Llama decoder to compile")
        compile_decoder(policy.model)
    return policy


def _use_statistics(policy: Any, stats_file: str) -> None:
    try:
        stats = json.loads(Path(stats_file).read_text())
        policy.use_statistics(stats)
    except (OSError, ValueError) as err:
        raise PolicyBuildError(f"norm_stats_file {stats_file!r}: {err}") from err


def _attach_draft(policy: Any, draft: Path) -> None:
    """A draft given explicitly must load: unlike the checkpoint's own (optional) one, it was asked for."""
    from vla_accel_ros.decoding.draft import DraftLoadError, load_draft

    try:
        policy.attach_draft(load_draft(draft, policy.model))
    except DraftLoadError as err:
        raise PolicyBuildError(f"draft {draft}: {err}") from err
