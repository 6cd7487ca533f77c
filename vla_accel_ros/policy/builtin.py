"""The checkpoint packaged with vla_accel_ros: its name on the command line and its folder, in one place.

Every `--checkpoint` flag, `model_path` parameter and loader accepts `builtin` (or nothing) for the
packaged model. The test of that name used to be spelled in each loader and command; it lives here, in a
module light enough (no torch) for the format sniffer, the loaders and the policy builder to share.
"""

from __future__ import annotations

from pathlib import Path

from vla_accel_ros.params.tables import BUILTIN_CHECKPOINT

# The packaged checkpoint's folder (model.safetensors, config.json, card.md, draft/).
BUILTIN = Path(__file__).resolve().parent.parent / "assets" / "builtin"


def is_builtin(checkpoint: str | Path | None) -> bool:
    """Whether `checkpoint` names the packaged checkpoint (`builtin`, empty, or nothing)."""
    return checkpoint is None or str(checkpoint) in ("", BUILTIN_CHECKPOINT)


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """The folder of `checkpoint`: the packaged one for `builtin` (see `is_builtin`), else the path."""
    return BUILTIN if is_builtin(checkpoint) else Path(checkpoint)  # type: ignore[arg-type]
