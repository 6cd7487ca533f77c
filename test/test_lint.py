"""The code base stays ruff-clean (configuration in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def undocumented_public_classes() -> list[str]:
    """`path:line: Name` of every public class (no leading underscore, at any depth) without a docstring."""
    import ast

    package = ROOT / "vla_accel_ros"
    out = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.ClassDef)
                and not node.name.startswith("_")
                and not ast.get_docstring(node)
            ):
                out.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name}")
    return out


def test_public_classes_say_why_they_exist():
    missing = undocumented_public_classes()
    assert not missing, f"public classes without a docstring ({len(missing)}):\n  " + "\n  ".join(missing)
