"""Checkpoint directories: model.safetensors + config.json (+ card.md).

Only non-executable formats load by default: a pickle-based file (.bin, .pt, .pth,
.pkl, .ckpt) can run arbitrary code when unpickled, so it is refused unless the
caller explicitly allows it.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vla_accel_ros.policy.builtin import BUILTIN, resolve_checkpoint  # noqa: F401 (BUILTIN re-exported)
from vla_accel_ros.policy.config import VlaConfig
from vla_accel_ros.policy.model import VlaModel

log = logging.getLogger(__name__)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says why."""


def stored_weights(model: VlaModel, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint holds: a head tied to the embeddings is stored once (safetensors refuses
    two names for one memory, and the second copy would be 114 MB at the realistic size)."""
    state = model.state_dict()
    if model.config.tie_head:
        state.pop("lm_head.weight")
    return {k: v.detach().to(dtype).contiguous() for k, v in state.items()}


def load_weights(model: VlaModel, state: dict[str, torch.Tensor]) -> None:
    """Load what `stored_weights` wrote, as strictly as a plain load: only a tied head may be absent
    (loading the embeddings restores it)."""
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    absent = set(missing) - ({"lm_head.weight"} if model.config.tie_head else set())
    if absent or unexpected:
        raise CheckpointError(
            f"weights do not match the model: missing {sorted(absent)}, unexpected {unexpected}"
        )


def save_checkpoint(model: VlaModel, directory: Path, card: str | None = None, dtype=torch.float32) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file(
        stored_weights(model, dtype),
        str(directory / "model.safetensors"),
        metadata={"format": "vla_accel_ros"},
    )
    (directory / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
    if card is not None:
        (directory / "card.md").write_text(card)


SIZE_SLACK = 10_000_000  # parameters (40 MB in fp32) a config may declare beyond twice what the file holds


def held_parameters(files: list[Path]) -> int | None:
    """How many parameters the safetensors files hold, from their headers (no tensor is read); None when
    a file is not safetensors (a pickle's count is not known before it is unpickled)."""
    held = 0
    for path in files:
        if path.suffix != ".safetensors":
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                held += sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({err})") from err
    return held


def check_declared_size(declared: int, files: list[Path], where: Path) -> None:
    """Refuse a config.json that declares far more parameters than the weight files hold, before the
    model gets storage (why: the model is allocated from the config, so a corrupt or hostile one could ask
    for far more memory than the machine has). `declared` is counted on a meta-device model (no memory)."""
    held = held_parameters(files)
    if held is not None and declared > 2 * held + SIZE_SLACK:  # a small mismatch: the shape check's
        raise CheckpointError(
            f"{where}: config.json declares {declared:,} parameters, the weights hold {held:,}"
        )


def load_checkpoint(directory: Path | str | None = None, allow_pickle: bool = False) -> VlaModel:
    directory = resolve_checkpoint(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{directory} has no config.json")
    try:
        config = VlaConfig.from_dict(json.loads(config_path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path}: invalid config ({err})") from err
    weights = directory / "model.safetensors"
    if weights.is_file():
        with torch.device("meta"):
            declared = sum(v.numel() for v in stored_weights(VlaModel(config)).values())
        check_declared_size(declared, [weights], directory)
    model = VlaModel(config)
    if weights.is_file():
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{weights}: unreadable or truncated safetensors file ({err})") from err
    else:
        pickled = [p for p in directory.iterdir() if p.suffix in PICKLE_SUFFIXES]
        if not pickled:
            raise CheckpointError(f"{directory} has no model.safetensors")
        if not allow_pickle:
            raise CheckpointError(
                f"{pickled[0]} is a pickle-based file, which can execute code when loaded; convert it to "
                "safetensors, or pass allow_pickle=True if you trust its source"
            )
        log.warning("loading pickle-based checkpoint %s (allowed explicitly)", pickled[0])
        state = torch.load(pickled[0], map_location="cpu", weights_only=True)
    expected = stored_weights(model)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match config.json "
            f"({len(missing)} missing, e.g. {missing[:2]}; "
            f"{len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    bad = [k for k, v in state.items() if v.shape != expected[k].shape]
    if bad:
        raise CheckpointError(
            f"{directory}: tensor {bad[0]} has shape {tuple(state[bad[0]].shape)}, config expects "
            f"{tuple(expected[bad[0]].shape)}"
        )
    load_weights(model, state)
    return model.eval()
