"""The ROS 2 layer: the only code that imports rclpy (nodes, conversions, QoS, parameters, launcher).

Nodes: inference_node, kinematics_node, controller_node, sim_arm_node (each `python -m
vla_accel_ros.ros.<node>` or `ros2 run vla_accel_ros <node>`). Parameters: params.py and
config/vla_accel.yaml. Topics and QoS: qos.py and the node modules' docstrings.
"""
