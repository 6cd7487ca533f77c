"""Demonstration episodes stored as rosbag2 bags (via `rosbags`, no ROS install needed)."""
