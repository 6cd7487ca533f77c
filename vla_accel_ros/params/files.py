"""Where the package's data folders are: one finder for config/ and msg/, from a checkout or an install.

A source checkout (editable install included) has them beside the `vla_accel_ros/` folder; a pip install
puts them under `<prefix>/share/vla_accel_ros/` (setup.py's data_files), and a colcon install under the
`share/` of a prefix in AMENT_PREFIX_PATH. Every reader of config files and message definitions asks
here, so a pip-installed `vla-accel` reads the same files as the checkout it was built from.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

PACKAGE = "vla_accel_ros"
CHECKOUT = Path(__file__).resolve().parents[2]


def _prefixes() -> list[Path]:
    prefixes = [sys.prefix, sysconfig.get_path("data")]
    prefixes += [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    return [Path(p) for p in dict.fromkeys(prefixes)]


def data_dir(name: str, marker: str) -> Path:
    """The package's `name` folder (e.g. "config"), the first candidate that holds `marker` (a file name
    or a glob); FileNotFoundError listing every place looked in."""
    candidates = [CHECKOUT / name, *(p / "share" / PACKAGE / name for p in _prefixes())]
    for path in candidates:
        if any(path.glob(marker)):
            return path
    raise FileNotFoundError(f"no {PACKAGE} {name}/{marker} in any of {[str(c) for c in candidates]}")


def config_dir() -> Path:
    """config/ with vla_accel.yaml (the graph's parameters), calibration.yaml, dyq.yaml, sim.yaml."""
    return data_dir("config", "vla_accel.yaml")


def msg_dir() -> Path:
    """msg/ with the package's .msg definitions (for rosbags' typestore)."""
    return data_dir("msg", "*.msg")
