"""Point the ROS wheels' exported CMake files at this interpreter's include dirs.

The Kilted wheels on PyPI were built in a manylinux container and their exported
CMake targets hard-code that container's Python and numpy include directories,
so a rosidl build against them fails until the paths are rewritten.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

PY_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
NP_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include")


def fix(prefix: Path) -> int:
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text()
        new = NP_INCLUDE.sub(numpy.get_include(), text)
        new = PY_INCLUDE.sub(sysconfig.get_paths()["include"], new)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    print(f"fixed {fix(Path(sys.argv[1]))} CMake files")
