"""The layers of docs/ARCHITECTURE.md, checked on the source: a static walk of every module's imports.

Every `import` counts, at module level or inside a function (a late import runs too, and an import cycle
hidden in a function is still a cycle); only imports under `if TYPE_CHECKING:` are left out, as they never
run. Rules:
- rclpy and the ROS message packages it needs at run time are imported only under `vla_accel_ros/ros/`,
  and the ROS-free layers never import `vla_accel_ros.ros` (that would pull rclpy in through it). The
  `rosbags` library is not rclpy: ROS-free code may read and write bags with it.
- `vla_accel_ros.commands` is imported only by `vla_accel_ros/cli.py`; commands do not import each other.
- No module imports another module's private (`_name`) names, neither `from x import _y` nor `x._y`.
- No import cycles among the package's modules.
Each failure lists every offending module with the import (file:line) that breaks the rule.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "vla_accel_ros"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
ROS_LAYER = f"{PACKAGE}.ros"
COMMANDS = f"{PACKAGE}.commands"
CLI = f"{PACKAGE}.cli"
# rclpy and the message packages a node needs at run time; importable only where rclpy is.
ROS_ONLY = (
    "rclpy",
    "rcl_interfaces",
    "rosgraph_msgs",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "trajectory_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "builtin_interfaces",
    "rosidl_runtime_py",
    "launch",
    "launch_ros",
    f"{PACKAGE}.msg",
)
# Layers that may use the ROS layer: the CLI and its commands sit above it.
ABOVE_ROS = (CLI, COMMANDS)


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # the module imported (for `from m import n`: m.n when that is a module, else m)
    names: tuple[str, ...]  # `from m import a, b` -> ("a", "b"); () for `import m`
    line: int

    def where(self) -> str:
        path = module_paths()[self.importer].relative_to(ROOT.parent)
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{path}:{self.line}: {self.importer} imports {self.target}{names}"


@cache
def module_paths() -> dict[str, Path]:
    """Every module of the package, dotted name -> file (a package is its __init__.py)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (never executed)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _base(importer: str, node: ast.ImportFrom) -> str:
    """The absolute module of a `from ... import`, relative forms resolved against the importer."""
    if not node.level:
        return node.module or ""
    is_package = module_paths()[importer].name == "__init__.py"
    parts = importer.split(".")
    parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
    return ".".join(parts + ([node.module] if node.module else []))


@cache
def parsed(name: str) -> ast.Module:
    return ast.parse(module_paths()[name].read_text(), filename=str(module_paths()[name]))


@cache
def imports_of(name: str) -> tuple[Import, ...]:
    tree = parsed(name)
    skipped = _type_checking_nodes(tree)
    known = module_paths()
    out = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out += [Import(name, alias.name, (), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, node)
            plain = tuple(a.name for a in node.names if f"{base}.{a.name}" not in known)
            if plain or base not in known:
                out.append(Import(name, base, plain, node.lineno))
            out += [
                Import(name, f"{base}.{a.name}", (), node.lineno)
                for a in node.names
                if f"{base}.{a.name}" in known
            ]
    return tuple(sorted(out, key=lambda i: (i.line, i.target)))


def all_imports() -> list[Import]:
    return [imp for name in module_paths() for imp in imports_of(name)]


def report(title: str, offending: list[str]) -> str:
    return f"{title} ({len(offending)}):\n  " + "\n  ".join(offending)


def test_the_walk_sees_the_package_and_late_imports():
    names = module_paths()
    assert {CLI, f"{PACKAGE}.policy.runtime", f"{ROS_LAYER}.inference_node"} <= set(names)
    assert any(within(n, COMMANDS) for n in names)
    # a function-level import is seen: the inference node imports the policy runtime on its loading thread
    late = {i.target for i in imports_of(f"{ROS_LAYER}.inference_node")}
    assert f"{PACKAGE}.policy.runtime" in late
    assert any(within(i.target, "rclpy") for i in imports_of(f"{ROS_LAYER}.inference_node"))


def test_rclpy_and_ros_messages_are_imported_only_under_ros():
    bad = [
        imp.where()
        for imp in all_imports()
        if not within(imp.importer, ROS_LAYER) and any(within(imp.target, p) for p in ROS_ONLY)
    ]
    bad += [
        imp.where() + " (the ROS layer, hence rclpy)"
        for imp in all_imports()
        if within(imp.target, ROS_LAYER)
        and not within(imp.importer, ROS_LAYER)
        and not any(within(imp.importer, p) for p in ABOVE_ROS)
    ]
    assert not bad, report("ROS-only imports outside vla_accel_ros/ros/", bad)


def test_commands_are_imported_only_by_the_cli():
    bad = [
        imp.where()
        for imp in all_imports()
        if within(imp.target, COMMANDS) and imp.target != COMMANDS and imp.importer != CLI
    ]
    bad += [
        imp.where()
        for imp in all_imports()
        if imp.target == COMMANDS and imp.importer not in (CLI, COMMANDS) and imp.names
    ]
    assert not bad, report("imports of vla_accel_ros.commands outside cli.py (or between commands)", bad)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_aliases(name: str) -> dict[str, str]:
    """Local names bound to a package module by `import m as x` / `from p import m` (any scope)."""
    known = module_paths()
    aliases = {}
    for node in ast.walk(parsed(name)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known or within(a.name, PACKAGE):
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _base(name, node)
            for a in node.names:
                if f"{base}.{a.name}" in known:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
    return aliases


def _dotted(node: ast.AST) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def private_uses(name: str) -> list[str]:
    """`from m import _y` (m a package module other than this one) and `x._y` with x a package module."""
    known = module_paths()
    path = module_paths()[name].relative_to(ROOT.parent)
    out = [
        f"{imp.where()}: private {', '.join(n for n in imp.names if _private(n))}"
        for imp in imports_of(name)
        if within(imp.target, PACKAGE) and imp.target != name and any(_private(n) for n in imp.names)
    ]
    aliases = _module_aliases(name)
    for node in ast.walk(parsed(name)):
        if not isinstance(node, ast.Attribute) or not _private(node.attr):
            continue
        chain = _dotted(node)
        if not chain or chain[0] not in aliases:
            continue
        owner = ".".join([aliases[chain[0]], *chain[1:-1]])
        if owner in known and owner != name:
            out.append(f"{path}:{node.lineno}: {name} uses {owner}.{node.attr}: private")
    return out


def test_no_module_imports_another_modules_private_names():
    bad = [use for name in module_paths() for use in private_uses(name)]
    assert not bad, report("private names used from another module", bad)


def import_cycles() -> list[list[str]]:
    """Strongly connected components (Tarjan) of the package's import graph with more than one module,
    or a module importing itself."""
    graph: dict[str, set[str]] = {n: set() for n in module_paths()}
    for imp in all_imports():
        if imp.target in graph and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the package's ~150 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    bad = []
    for component in import_cycles():
        members = set(component)
        edges = [imp.where() for name in component for imp in imports_of(name) if imp.target in members]
        bad.append(" <-> ".join(component) + ":\n    " + "\n    ".join(edges))
    assert not bad, report("import cycles", bad)


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """Each rule fires on a planted violation: a passing run means a clean tree, not a blind walk."""
    pkg = tmp_path / PACKAGE
    for sub in ("", "ros", "commands", "policy"):
        (pkg / sub).mkdir(exist_ok=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "cli.py").write_text("from vla_accel_ros.commands import a\n")
    (pkg / "commands" / "a.py").write_text("from vla_accel_ros.commands import b\n")
    (pkg / "commands" / "b.py").write_text("")
    (pkg / "policy" / "x.py").write_text(
        "def f():\n    import rclpy\n    from vla_accel_ros.policy import y\n    return y._hidden\n"
    )
    (pkg / "policy" / "y.py").write_text("from .x import f as _f\nfrom vla_accel_ros.policy.x import _g\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    for fn in (module_paths, parsed, imports_of):
        fn.cache_clear()
    try:
        ros_bad = [
            i for i in all_imports() if within(i.target, "rclpy") and not within(i.importer, ROS_LAYER)
        ]
        assert [i.importer for i in ros_bad] == [f"{PACKAGE}.policy.x"]
        between = [i for i in all_imports() if within(i.target, COMMANDS) and i.importer != CLI]
        assert [(i.importer, i.target) for i in between] == [
            (f"{PACKAGE}.commands.a", f"{PACKAGE}.commands.b")
        ]
        assert any("private _g" in u for u in private_uses(f"{PACKAGE}.policy.y"))
        assert any("policy.y._hidden" in u for u in private_uses(f"{PACKAGE}.policy.x"))
        assert import_cycles() == [[f"{PACKAGE}.policy.x", f"{PACKAGE}.policy.y"]]
    finally:
        for fn in (module_paths, parsed, imports_of):
            fn.cache_clear()
