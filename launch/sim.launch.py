"""Simulated graph: the robot graph plus the simulated Meta-World arm, with config/sim.yaml on top.

    ros2 launch vla_accel_ros sim.launch.py
    ros2 launch vla_accel_ros sim.launch.py task:=push

The arm steps in lockstep with the commands (sim.yaml), so the loop runs as fast as inference allows.
Without a ROS install, `vla-accel up --sim` (or `vla-accel demo`) starts the same graph.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "vla_accel_ros"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    params_file = LaunchConfiguration("params_file")
    sim_params_file = LaunchConfiguration("sim_params_file")
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "vla_accel.yaml"]),
            description="Parameters of every node (one section per node)",
        ),
        DeclareLaunchArgument(
            "calibration_file",
            default_value=LaunchConfiguration("params_file"),
            description="Calibration from `vla-accel calibrate` (config/calibration.yaml), after params_file",
        ),
        DeclareLaunchArgument(
            "sim_params_file",
            default_value=PathJoinSubstitution([share, "config", "sim.yaml"]),
            description="Overrides for the simulated arm, applied after params_file",
        ),
        DeclareLaunchArgument(
            "dry_run", default_value="false", description="true: the controller never commands the arm"
        ),
        DeclareLaunchArgument("task", default_value="reach", description="Meta-World task(s), or 'all'"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes and topics"),
    ]
    # The robot graph reads both files: a node takes the last value of each parameter.
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "robot.launch.py"])),
        launch_arguments={
            "params_file": params_file,
            "calibration_file": LaunchConfiguration("calibration_file"),
            "overrides_file": sim_params_file,
            "dry_run": LaunchConfiguration("dry_run"),
            "use_sim_episode": "true",
            "namespace": LaunchConfiguration("namespace"),
        }.items(),
    )
    sim_arm = Node(
        package=PACKAGE,
        executable="sim_arm_node",
        name="sim_arm_node",
        namespace=LaunchConfiguration("namespace"),
        parameters=[params_file, sim_params_file, {"task": LaunchConfiguration("task")}],
        output="screen",
    )
    return LaunchDescription([*arguments, robot, sim_arm])
