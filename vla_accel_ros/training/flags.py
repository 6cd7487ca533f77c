"""The JSON-overrides flag of the training commands (`train --model`, `train-draft --draft`).

An argparse `type`, so a malformed value is refused while parsing (exit 2, with the flag named) before
any data or checkpoint is loaded. argparse and json only: importing it costs a command nothing.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def json_object(text: str) -> dict[str, Any]:
    """`'{"hidden_size": 192}'` -> a dict of config overrides; anything but a JSON object is refused."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object of overrides, got {text!r}")
    return value
