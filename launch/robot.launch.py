"""Robot graph: inference, kinematics and controller nodes, from one params file; dry run by default.

    ros2 launch vla_accel_ros robot.launch.py
    ros2 launch vla_accel_ros robot.launch.py params_file:=/path/to/my.yaml dry_run:=false \
        calibration_file:=/path/to/calibration.yaml \
        camera_topic:=/head_camera/image_raw command_topic:=/servo_node/delta_twist_cmds
    ros2 launch vla_accel_ros robot.launch.py params_file:=/path/to/joint_space.yaml \
        command_topic:=/joint_trajectory_controller/joint_trajectory ee_pose_topic:=/my_arm/ee_pose

Each node reads params_file, then calibration_file, then overrides_file (the last value wins); the
two later ones default to params_file itself, i.e. nothing extra.
Without a ROS install (pip), `vla-accel up` starts the same graph from the same YAML.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "vla_accel_ros"


def generate_launch_description() -> LaunchDescription:
    params_file = LaunchConfiguration("params_file")
    calibration_file = LaunchConfiguration("calibration_file")
    overrides_file = LaunchConfiguration("overrides_file")
    namespace = LaunchConfiguration("namespace")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    arguments = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "vla_accel.yaml"]),
            description="Parameters of every node (one section per node)",
        ),
        DeclareLaunchArgument(
            "calibration_file",
            default_value=params_file,
            description="Calibration from `vla-accel calibrate` (config/calibration.yaml), after params_file",
        ),
        DeclareLaunchArgument(
            "overrides_file",
            default_value=params_file,
            description="A params file applied last (e.g. config/sim.yaml)",
        ),
        DeclareLaunchArgument(
            "dry_run",
            default_value="true",
            description="true: the controller never commands the arm (it still publishes /vla/action_safe)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the nodes and topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (bag replay)"),
        DeclareLaunchArgument(
            "use_sim_episode",
            default_value="false",
            description="true (simulation, replay only): the controller follows sim/episode start events",
        ),
        DeclareLaunchArgument(
            "camera_topic", default_value="camera/image_raw", description="Scene camera (sensor_msgs/Image)"
        ),
        DeclareLaunchArgument(
            "wrist_camera_topic",
            default_value="wrist_camera/image_raw",
            description="Wrist camera (sensor_msgs/Image)",
        ),
        DeclareLaunchArgument(
            "joint_states_topic", default_value="joint_states", description="sensor_msgs/JointState"
        ),
        DeclareLaunchArgument(
            "command_topic",
            default_value="arm/command",
            description="Arm command: VlaAction, TwistStamped (output_type twist) or JointTrajectory "
            "(output_type joint_trajectory)",
        ),
        DeclareLaunchArgument(
            "ee_pose_topic",
            default_value="ee_pose",
            description="End-effector pose (geometry_msgs/PoseStamped in action_frame) for the controller's "
            "workspace box (read only when workspace_min/max are set)",
        ),
        DeclareLaunchArgument(
            "executed_action_topic",
            default_value="arm/executed_action",
            description="Executed actions reported by the arm driver (VlaAction)",
        ),
    ]
    remappings = [
        ("camera/image_raw", LaunchConfiguration("camera_topic")),
        ("wrist_camera/image_raw", LaunchConfiguration("wrist_camera_topic")),
        ("joint_states", LaunchConfiguration("joint_states_topic")),
        ("arm/command", LaunchConfiguration("command_topic")),
        ("ee_pose", LaunchConfiguration("ee_pose_topic")),
        ("arm/executed_action", LaunchConfiguration("executed_action_topic")),
    ]
    common = {"package": PACKAGE, "namespace": namespace, "remappings": remappings, "output": "screen"}
    nodes = [
        Node(
            executable="inference_node",
            name="inference_node",
            parameters=[params_file, calibration_file, overrides_file, {"use_sim_time": use_sim_time}],
            **common,
        ),
        Node(
            executable="kinematics_node",
            name="kinematics_node",
            parameters=[params_file, calibration_file, overrides_file, {"use_sim_time": use_sim_time}],
            **common,
        ),
        Node(
            executable="controller_node",
            name="controller_node",
            parameters=[
                params_file,
                calibration_file,
                overrides_file,
                {
                    "dry_run": ParameterValue(LaunchConfiguration("dry_run"), value_type=bool),
                    "use_sim_episode": ParameterValue(
                        LaunchConfiguration("use_sim_episode"), value_type=bool
                    ),
                    "use_sim_time": use_sim_time,
                },
            ],
            **common,
        ),
    ]
    return LaunchDescription([*arguments, *nodes])
