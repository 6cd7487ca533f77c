"""Which checkpoint format a directory holds, read from its config.json without loading anything.

Its own module, below every loader, so `runtime.Policy.load` (the built-in format), `openvla` and
`loading` (the dispatch over both) can all ask without importing one another.
"""

from __future__ import annotations

import json
from pathlib import Path

from vla_accel_ros.policy.builtin import is_builtin

OPENVLA_MODEL_TYPE = "openvla"


def is_openvla_checkpoint(path: Path | str | None) -> bool:
    """True for a directory whose config.json says model_type 'openvla'."""
    if is_builtin(path) or not Path(path).is_dir():
        return False
    try:
        return json.loads((Path(path) / "config.json").read_text()).get("model_type") == OPENVLA_MODEL_TYPE
    except (OSError, ValueError, AttributeError):
        return False
