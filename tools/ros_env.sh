# Sourced by run.sh and .ci/run: every ROS process started here keeps DDS discovery on
# loopback and gets a domain of its own. On a robot, discovery is the user's setting.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 90) + 10 ))}"
export ROS_LOG_DIR="${ROS_LOG_DIR:-${TMPDIR:-/tmp}/vla-accel-ros-log-$ROS_DOMAIN_ID}"
export MUJOCO_GL="${MUJOCO_GL:-egl}"
