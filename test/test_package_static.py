"""The package as colcon and pip see it, checked without `launch` installed.

Launch files are parsed (ast): every executable, params file, launch file, launch argument and parameter
name they reference must exist. package.xml must declare what the ROS layer imports; CMakeLists.txt must
install the node scripts; setup.py's entry points must import.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from vla_accel_ros.params import BUILTIN_PARAMETERS, NODE_PARAMS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vla_accel_ros"
NODES = ("inference_node", "kinematics_node", "controller_node", "sim_arm_node")
# Executables configured by command-line flags rather than parameters (no NODE_PARAMS section).
TOOLS = ("bag_player",)
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))

# Imported module -> (package.xml key or None, requirements/base.txt name or None).
DEPENDENCIES = {
    "rclpy": ("rclpy", "ros-rclpy"),
    "rcl_interfaces": ("rcl_interfaces", None),  # comes with ros-rclpy
    "builtin_interfaces": ("builtin_interfaces", "ros-builtin-interfaces"),
    "std_msgs": ("std_msgs", "ros-std-msgs"),
    "sensor_msgs": ("sensor_msgs", "ros-sensor-msgs"),
    "geometry_msgs": ("geometry_msgs", "ros-geometry-msgs"),
    "trajectory_msgs": ("trajectory_msgs", "ros-trajectory-msgs"),  # controller's JointTrajectory output
    "visualization_msgs": ("visualization_msgs", "ros-visualization-msgs"),
    "diagnostic_msgs": ("diagnostic_msgs", "ros-diagnostic-msgs"),
    "launch": ("launch", None),  # launch files only; not on PyPI
    "launch_ros": ("launch_ros", None),
    "numpy": ("python3-numpy", "numpy"),
    "yaml": ("python3-yaml", "PyYAML"),
    "PIL": ("python3-pil", "pillow"),
    "torch": ("python3-torch", "torch"),  # pinned by requirements/robot.txt (test_robot_install)
    "rosgraph_msgs": ("rosgraph_msgs", None),  # /clock of the bag player; comes with ros-rclpy
    "rosbags": ("python3-rosbags-pip", "rosbags"),  # recorder
    "foxglove": (None, "foxglove-sdk"),  # Foxglove bridge: pip only
}


def _package_xml_deps() -> set[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    tags = ("depend", "exec_depend", "build_depend", "build_export_depend")
    return {el.text.strip() for tag in tags for el in root.iter(tag) if el.text}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _ros_layer_files() -> list[Path]:
    return [
        *sorted((ROOT / PACKAGE / "ros").glob("*.py")),
        *LAUNCH_FILES,
        ROOT / PACKAGE / "commands" / "up.py",
        ROOT / PACKAGE / "commands" / "demo.py",
    ]


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entry_points = ast.literal_eval(node.value)
            return dict(re.split(r"\s*=\s*", line, maxsplit=1) for line in entry_points["console_scripts"])
    raise AssertionError("setup.py has no entry_points")


def test_package_xml_declares_every_import_of_the_ros_layer():
    declared = _package_xml_deps()
    requirements = (ROOT / "requirements" / "base.txt").read_text().lower()
    missing, unmapped, not_pinned = [], [], []
    for path in _ros_layer_files():
        for module in sorted(_imports(path)):
            if module in sys.stdlib_module_names or module in ("__future__", PACKAGE):
                continue
            if module not in DEPENDENCIES:
                unmapped.append(f"{path.name}: {module}")
                continue
            key, pip_name = DEPENDENCIES[module]
            if key is not None and key not in declared:
                missing.append(f"{path.name} imports {module}: add <exec_depend>{key}</exec_depend>")
            if pip_name and not re.search(rf"^{re.escape(pip_name.lower())}\b", requirements, re.M):
                not_pinned.append(f"{path.name} imports {module}: add {pip_name} to requirements/base.txt")
    assert not unmapped, f"imports with no known rosdep key (extend DEPENDENCIES): {unmapped}"
    assert not missing, "\n".join(sorted(set(missing)))
    assert not not_pinned, "\n".join(sorted(set(not_pinned)))


def test_setup_entry_points_import_and_scripts_match():
    scripts = _console_scripts()
    for node in NODES:
        assert scripts[node] == f"{PACKAGE}.ros.{node}:main"
    for name, target in scripts.items():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), name
    for node in (*NODES, *TOOLS):
        assert scripts[node] == f"{PACKAGE}.ros.{node}:main"
        script = ROOT / "scripts" / node
        assert script.is_file() and os.access(script, os.X_OK), f"scripts/{node} missing or not executable"
        assert f"from {PACKAGE}.ros.{node} import main" in script.read_text()


def test_pip_install_ships_the_ros_layer():
    from setuptools import find_packages

    assert f"{PACKAGE}.ros" in find_packages(str(ROOT), exclude=["test", "test.*"])


def test_cmake_installs_the_node_scripts_launch_and_config():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    loop = re.search(r"foreach\(node ([^)]*)\)", cmake)
    assert loop, "CMakeLists.txt has no foreach over the node scripts"
    assert set(loop.group(1).split()) == set(NODES)
    assert "install(PROGRAMS scripts/${node} DESTINATION lib/${PROJECT_NAME})" in cmake
    for tool in TOOLS:
        assert f"install(PROGRAMS scripts/{tool} DESTINATION lib/${{PROJECT_NAME}})" in cmake
    assert re.search(r"install\(DIRECTORY[^)]*\blaunch\b[^)]*\bconfig\b", cmake)


def test_every_node_module_has_the_standard_main():
    spin = (ROOT / PACKAGE / "ros" / "spin.py").read_text()
    # The nodes own SIGINT/SIGTERM (a clean stop may still publish: test/test_output_faults.py).
    assert "with stop_on_signals() as stop, rclpy.init(" in spin and "SignalHandlerOptions.NO" in spin
    for node in NODES:
        source = (ROOT / PACKAGE / "ros" / f"{node}.py").read_text()
        assert "def main(args: list[str] | None = None) -> None:" in source
        assert "run_node(" in source and f'"{node}", args)' in source
        assert 'if __name__ == "__main__":' in source


# --- launch files -------------------------------------------------------------------------------------


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _call_name(n) == name]


def _declared_arguments(tree: ast.AST) -> dict[str, ast.Call]:
    return {_str(c.args[0]): c for c in _calls(tree, "DeclareLaunchArgument")}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_references_exist(path):
    tree = ast.parse(path.read_text(), str(path))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    scripts = _console_scripts()
    declared = _declared_arguments(tree)
    for name, call in declared.items():
        description = _str(_kw(call, "description"))
        assert description and description.strip(), f"{path.name}: argument {name} has no description"
    # Every LaunchConfiguration used is declared here.
    used = {_str(c.args[0]) for c in _calls(tree, "LaunchConfiguration")}
    assert used <= set(declared), f"{path.name}: undeclared launch arguments {used - set(declared)}"
    # Files named by PathJoinSubstitution([... , "config" | "launch", "<file>"]) exist in the package.
    for call in _calls(tree, "PathJoinSubstitution"):
        parts = [_str(e) for e in call.args[0].elts]
        if len(parts) >= 2 and parts[-2] in ("config", "launch"):
            assert (ROOT / parts[-2] / parts[-1]).is_file(), f"{path.name}: {parts[-2]}/{parts[-1]} missing"
    # Nodes: executables exist, names are ours, inline parameters are declared by that node.
    for call in _calls(tree, "Node"):
        executable, name = _str(_kw(call, "executable")), _str(_kw(call, "name"))
        package = _str(_kw(call, "package"))
        assert package in (PACKAGE, None), f"{path.name}: package {package}"
        assert executable in scripts and (ROOT / "scripts" / executable).is_file(), executable
        assert name == executable and (name in NODE_PARAMS or name in TOOLS), name
        params = _kw(call, "parameters")
        for element in params.elts if params is not None else []:
            if isinstance(element, ast.Dict):
                keys = {_str(k) for k in element.keys}
                unknown = keys - set(NODE_PARAMS[name].names()) - BUILTIN_PARAMETERS
                assert not unknown, f"{path.name}: {name} has no parameter(s) {unknown}"
    # Included launch files accept the arguments passed to them.
    for call in _calls(tree, "IncludeLaunchDescription"):
        source = call.args[0]
        target = [_str(e) for e in _calls(source, "PathJoinSubstitution")[0].args[0].elts][-1]
        included = _declared_arguments(ast.parse((ROOT / "launch" / target).read_text()))
        passed = _kw(call, "launch_arguments")
        keys = {_str(k) for k in passed.func.value.keys} if passed is not None else set()
        assert keys <= set(included), f"{path.name}: {target} does not declare {keys - set(included)}"


def test_launch_defaults_keep_the_robot_safe():
    robot = _declared_arguments(ast.parse((ROOT / "launch" / "robot.launch.py").read_text()))
    assert _str(_kw(robot["dry_run"], "default_value")) == "true"
    replay = (ROOT / "launch" / "replay.launch.py").read_text()
    assert '"dry_run": "true"' in replay and '"use_sim_time": "true"' in replay
    assert "vla-accel up --replay" in replay  # how the bag is played is documented


def test_replay_launch_starts_the_bag_player_when_given_a_bag():
    tree = ast.parse((ROOT / "launch" / "replay.launch.py").read_text())
    (player,) = [c for c in _calls(tree, "Node") if _str(_kw(c, "executable")) == "bag_player"]
    args = _kw(player, "arguments").elts
    assert _str(args[0].args[0]) == "bag" and "--wait-node" in [_str(a) for a in args]
    condition = _kw(player, "condition")
    assert _call_name(condition) == "LaunchConfigurationNotEquals" and _str(condition.args[0]) == "bag"
    assert _str(_kw(player, "namespace").args[0]) == "namespace"  # topics meet the nodes' namespace


def test_launch_files_are_all_there():
    assert {p.name for p in LAUNCH_FILES} == {"robot.launch.py", "sim.launch.py", "replay.launch.py"}


def test_rviz_config_shows_what_the_nodes_publish():
    data = yaml.safe_load((ROOT / "config" / "vla_accel.rviz").read_text())
    displays = data["Visualization Manager"]["Displays"]
    topics = {d["Topic"]["Value"] for d in displays if isinstance(d.get("Topic"), dict)}
    assert {"/vla/markers", "/camera/image_raw", "/wrist_camera/image_raw"} <= topics
    kinds = {d["Class"] for d in displays}
    assert {"rviz_default_plugins/MarkerArray", "rviz_default_plugins/Image"} <= kinds


def test_cli_lists_up_and_demo(capsys):
    from vla_accel_ros import cli

    assert cli.main([]) == 0
    text = capsys.readouterr().out
    assert "up" in text and "demo" in text
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["up", "--help"])
    assert exit_info.value.code == 0
    assert "--restart-on-failure" in capsys.readouterr().out
