"""vla_accel_ros: kinematics-accelerated token-domain VLA policies for ROS 2 arms."""

# The message classes generated from msg/ are installed as a separate portion of this
# package (rosidl output); merge it into __path__ so `vla_accel_ros.msg` imports.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
