"""pip path of vla_accel_ros (machines without a ROS install; colcon uses CMakeLists.txt)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "vla_accel_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={package_name: ["assets/*/*/*", "assets/*/*", "assets/*", "quant/csrc/*.c"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*")),
        ("share/" + package_name + "/msg", glob("msg/*.msg")),
    ],
    install_requires=[],
    zip_safe=False,
    maintainer="vla_accel_ros developers",
    description="Kinematics-accelerated token-domain VLA policies for ROS 2 arms.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "vla-accel = vla_accel_ros.cli:console_main",
            "inference_node = vla_accel_ros.ros.inference_node:main",
            "kinematics_node = vla_accel_ros.ros.kinematics_node:main",
            "controller_node = vla_accel_ros.ros.controller_node:main",
            "sim_arm_node = vla_accel_ros.ros.sim_arm_node:main",
            "bag_player = vla_accel_ros.ros.bag_player:main",
        ],
    },
)
