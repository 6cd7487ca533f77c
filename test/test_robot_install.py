"""The README's robot install, checked as far as a machine without apt ROS allows.

On a robot computer ROS 2 comes from apt: rosdep installs package.xml's keys, requirements/robot.txt adds
the pip-only libraries in a venv that sees apt's packages, and colcon builds the ament_cmake package.
Here: every python key of package.xml resolves to apt or to a robot.txt pin, robot.txt re-installs no
ROS wheel and no numpy, its pins agree with requirements/base.txt, the README's commands are these, and
CMake configures the package with the colcon-path options (the Python package installed beside the
generated messages), using the venv's ament_cmake wheels as tools/setup_env.sh does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
README = (ROOT / "README.md").read_text(encoding="utf-8")

# package.xml python keys that apt resolves (rosdep/python.yaml maps them to python3-* debs): nothing of
# them may be in robot.txt, or pip would install a second copy over apt's.
APT_KEYS = {
    "python3-numpy": "numpy",
    "python3-yaml": "pyyaml",
    "python3-tqdm": "tqdm",
    "python3-matplotlib": "matplotlib",
    "python3-pil": "pillow",
    "python3-pytest": "pytest",
    "python3-hypothesis": "hypothesis",
}
# Keys whose package robot.txt pins in the venv (the README's rosdep command skips them): key -> pip name.
# python3-torch is apt's torch in rosdep, older than the pin; the *-pip keys install unpinned with pip.
PINNED_KEYS = {
    "python3-torch": "torch",
    "python3-transformers-pip": "transformers",
    "python3-rosbags-pip": "rosbags",
}


def _pins(path: Path) -> dict[str, str]:
    """name (lower case) -> version of each `name==version` line (comments and options ignored)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;]+)", line)
        assert m, f"{path.name}: {line!r} is not pinned as name==version"
        pins[m.group(1).lower()] = m.group(2)
    return pins


def _exec_keys() -> list[str]:
    root = ET.parse(ROOT / "package.xml").getroot()
    return [el.text.strip() for tag in ("depend", "exec_depend") for el in root.iter(tag) if el.text]


ROBOT = _pins(REQUIREMENTS / "robot.txt")


def test_every_python_key_resolves_to_apt_or_a_robot_pin():
    problems = []
    for key in _exec_keys():
        if not key.startswith("python3-"):
            continue  # a ROS package (rclpy, sensor_msgs, ...): apt's ROS, never a wheel (next test)
        if key in PINNED_KEYS:
            if PINNED_KEYS[key] not in ROBOT:
                problems.append(f"{key}: {PINNED_KEYS[key]} is not pinned in requirements/robot.txt")
        elif key in APT_KEYS:
            if APT_KEYS[key] in ROBOT:
                problems.append(f"{key} is apt's: {APT_KEYS[key]} must not be in requirements/robot.txt")
        else:
            problems.append(f"{key}: unknown python key (add it to APT_KEYS or PINNED_KEYS, and robot.txt)")
    assert not problems, "\n".join(problems)
    assert set(PINNED_KEYS) <= set(_exec_keys()), "package.xml lacks a key robot.txt pins"


def test_robot_txt_installs_no_ros_wheels_and_no_numpy():
    bad = [n for n in ROBOT if n.startswith("ros-") or n in ("catkin_pkg", "catkin-pkg", "numpy")]
    assert not bad, f"requirements/robot.txt would override apt's ROS / numpy: {bad}"
    text = (REQUIREMENTS / "robot.txt").read_text()
    assert not re.search(r"^\s*-[rc]\s", text, re.M), "robot.txt must not pull in base.txt or constraints"


def test_robot_pins_agree_with_base():
    base = _pins(REQUIREMENTS / "base.txt")
    assert ROBOT, "requirements/robot.txt pins nothing"
    differ = {n: (v, base.get(n)) for n, v in ROBOT.items() if base.get(n) != v}
    assert not differ, f"robot.txt vs base.txt versions (robot, base): {differ}"
    # What the nodes import from pip on a robot is there.
    assert {"torch", "transformers", "safetensors", "rosbags"} <= set(ROBOT)


def test_readme_robot_section_uses_robot_txt_and_rosdep():
    section = README.split("## On a robot", 1)[1].split("\n## ", 1)[0]
    assert "pip install -r src/vla_accel_ros/requirements/robot.txt" in section
    installs = re.findall(r"^pip install .*$", section, re.M)
    assert installs and all("base.txt" not in line for line in installs), "robot path: no ROS wheels"
    m = re.search(r'rosdep install --from-paths src -y --ignore-src --skip-keys "([^"]+)"', section)
    assert m, "README robot section: no rosdep install command"
    assert set(m.group(1).split()) == set(PINNED_KEYS), "rosdep must skip exactly the keys robot.txt pins"
    assert "python3 -m venv --system-site-packages" in section
    assert "colcon build --packages-select vla_accel_ros" in section


@pytest.mark.timeout(300)
def test_cmake_configures_the_package_as_colcon_would(tmp_path):
    """The colcon path: messages generated AND the Python package installed (VLA_ACCEL_INSTALL_PYTHON, on by
    default), in a workspace layout outside this checkout (src/vla_accel_ros, build/)."""
    cmake = shutil.which("cmake")
    prefix = Path(sys.prefix)
    if cmake is None or not (prefix / "share" / "ament_cmake_core").is_dir():
        pytest.skip("needs cmake and the venv's ament_cmake wheels (tools/setup_env.sh)")
    src = tmp_path / "src" / "vla_accel_ros"
    src.mkdir(parents=True)
    for name in ("CMakeLists.txt", "package.xml", "msg", "vla_accel_ros", "scripts", "launch", "config"):
        (src / name).symlink_to(ROOT / name)
    build = tmp_path / "build"
    build.mkdir()
    env = {**os.environ, "AMENT_PREFIX_PATH": str(prefix), "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [
            cmake,
            str(src),
            f"-DCMAKE_PREFIX_PATH={prefix}",
            f"-DCMAKE_INSTALL_PREFIX={tmp_path / 'install'}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=build,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, f"cmake configure failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    rules = (build / "cmake_install.cmake").read_text()
    # The sources go into the same site-packages directory as the generated messages, after them.
    generated = rules.find("rosidl_generator_py/vla_accel_ros/")
    sources = rules.find(f'FILES "{src}/vla_accel_ros/"')
    assert generated != -1 and sources > generated, "Python sources not installed after the messages"
    assert "share/vla_accel_ros" in rules and "lib/vla_accel_ros" in rules
