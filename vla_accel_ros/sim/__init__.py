"""Simulated arm (Meta-World Sawyer) and scripted demonstrations; ROS-free."""
