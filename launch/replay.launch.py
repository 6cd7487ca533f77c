"""Replay graph: the three nodes on sim time (/clock), dry run, fed by a recorded bag.

    ros2 launch vla_accel_ros replay.launch.py
    ros2 bag play BAG --clock          # in a second terminal, on a machine with ros2cli

The bag holds /camera/image_raw, /wrist_camera/image_raw, /joint_states and /instruction (the layout
written by `vla-accel record` and the demonstration tools). Without a ROS install, `vla-accel up --replay
BAG` starts the same nodes and plays the bag itself (the player is the `replay_process` hook in
vla_accel_ros/ros/launcher.py). The controller stays in dry run: a replayed action must never reach an arm;
compare /vla/action_safe with the recorded /expert_action.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "vla_accel_ros"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "vla_accel.yaml"]),
            description="Parameters of every node (one section per node)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes and topics"),
    ]
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "robot.launch.py"])),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "namespace": LaunchConfiguration("namespace"),
            "use_sim_time": "true",
            "dry_run": "true",
        }.items(),
    )
    return LaunchDescription([*arguments, robot])
