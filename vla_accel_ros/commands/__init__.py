"""Sub-commands of `vla-accel` (one module each; see vla_accel_ros/cli.py)."""
