"""Replay graph: the three nodes on sim time (/clock), dry run, fed by a recorded bag.

    ros2 launch vla_accel_ros replay.launch.py bag:=data/demos/reach-v3 [rate:=1.0]

With `bag` set, the bag player (vla_accel_ros/ros/bag_player.py, `ros2 run vla_accel_ros bag_player`)
publishes the bag onto the live topics at bag rate x `rate`, with /clock, once the inference node has
loaded its model; it reads the bag the way `vla-accel replay` does (same topic mapping and checks). Without
`bag`, only the nodes start: play a bag yourself (`ros2 bag play BAG --clock`). Without a ROS install,
`vla-accel up --replay BAG` starts the same nodes and player (vla_accel_ros/ros/launcher.py). The bag
holds /camera/image_raw, /wrist_camera/image_raw, /joint_states and /instruction (the layout written by
`vla-accel record` and the demonstration tools). The controller stays in dry run: a replayed action must
never reach an arm; compare /vla/action_safe with the recorded /expert_action.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import LaunchConfigurationNotEquals
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
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
        DeclareLaunchArgument(
            "bag",
            default_value="",
            description="rosbag2 bag to play into the graph (empty: play it yourself)",
        ),
        DeclareLaunchArgument("rate", default_value="1.0", description="Playback speed x bag time"),
    ]
    robot = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "robot.launch.py"])),
        launch_arguments={
            "params_file": LaunchConfiguration("params_file"),
            "namespace": LaunchConfiguration("namespace"),
            "use_sim_time": "true",
            "dry_run": "true",
            "use_sim_episode": "true",
        }.items(),
    )
    player = Node(
        package=PACKAGE,
        executable="bag_player",
        name="bag_player",
        namespace=LaunchConfiguration("namespace"),
        arguments=[
            LaunchConfiguration("bag"),
            "--rate",
            LaunchConfiguration("rate"),
            "--wait-node",
            "inference_node",
        ],
        output="screen",
        condition=LaunchConfigurationNotEquals("bag", ""),
    )
    return LaunchDescription([*arguments, robot, player])
